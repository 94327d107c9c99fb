-- The cluster (SPEC §6, DESIGN "Cluster"): who is a member, and which node owns each
-- virtual shard of events. PostgreSQL is the authority for both, on its own clock, so no
-- node's clock decides whether a lease has lapsed.

-- One row per node. A node heartbeats every `cluster.heartbeat_ms`; one whose heartbeat is
-- older than `cluster.lease_ms` is dead. `leaving` is set on SIGTERM: the node still owns
-- its shards until it releases them, but nobody places shards on it any more.
CREATE TABLE cluster_members (
    node_id      text PRIMARY KEY CHECK (node_id <> ''),
    address      text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    leaving      boolean NOT NULL DEFAULT false,
    -- Event actors live on the node at its last heartbeat (GET /admin/cluster).
    live_events  integer NOT NULL DEFAULT 0
);

-- The owner of each virtual shard (event id -> shard is a hash, the same on every node).
-- Taking a shard increments its epoch: the fencing token. Every write-behind transaction
-- reads the epochs of the shards it writes FOR KEY SHARE and rolls back unless they are the
-- epochs its writer holds, so a node that lost a shard (a zombie) cannot write to it,
-- however late its writes arrive. `lease_until` is on the database clock; a shard whose
-- lease lapsed, or that nobody owns, may be taken.
CREATE TABLE shard_owner (
    shard       integer PRIMARY KEY CHECK (shard >= 0 AND shard < 256),
    owner       text,
    epoch       bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    lease_until timestamptz NOT NULL DEFAULT 'epoch'
);

-- The shard count is fixed (256): changing it would move every event at once.
INSERT INTO shard_owner (shard) SELECT generate_series(0, 255);
