-- The admission queue (virtual waiting room) of each event, persisted write-behind like the
-- seats so that it survives a restart of the event's actor.
--
-- Settings live on the event; an admin changes them live. `queue_seed` is the secret the
-- pre-queue's order is drawn from at opening (ascending SHA-256(seed || user id)); its hash
-- is published before opening and the seed itself after, so anyone can check the order.

ALTER TABLE events
    ADD COLUMN queue_enabled          boolean NOT NULL DEFAULT false,
    ADD COLUMN queue_rate             integer NOT NULL DEFAULT 100 CHECK (queue_rate >= 0),
    ADD COLUMN queue_max_active       integer NOT NULL DEFAULT 0 CHECK (queue_max_active >= 0),
    ADD COLUMN queue_admission_ttl_ms bigint  NOT NULL DEFAULT 600000 CHECK (queue_admission_ttl_ms > 0),
    ADD COLUMN queue_heartbeat_ttl_ms bigint  NOT NULL DEFAULT 60000 CHECK (queue_heartbeat_ttl_ms > 0),
    -- Events that predate the queue get a random seed (two MD5s of random() make 32 bytes).
    ADD COLUMN queue_seed             bytea   NOT NULL
        DEFAULT decode(md5(random()::text) || md5(random()::text), 'hex')
        CHECK (length(queue_seed) = 32),
    ADD COLUMN queue_opened           boolean NOT NULL DEFAULT false;

-- Who is in line. `ticket` orders first-come joiners; NULL is the pre-queue, ordered by the
-- seed at opening. `admitted_until` is set while a buyer is admitted. Heartbeats are not
-- stored: after a restart every waiting buyer's last heartbeat counts as the restart.
CREATE TABLE queue_members (
    event_id       uuid        NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ticket         bigint      CHECK (ticket > 0),
    joined_at      timestamptz NOT NULL,
    admitted_until timestamptz,
    PRIMARY KEY (event_id, user_id)
);
