-- Tiketi's schema. Append-only: change it with a new V<n>__*.sql file, never by editing
-- this one. Applied by `tiketi migrate` and at start-up (refinery records what ran).
--
-- PostgreSQL is the system of record behind the event actors. The actors decide; this
-- schema refuses anything that would break the invariants anyway (SPEC section 7): a seat
-- in two live reservations, GA counters past capacity, dangling references.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,          -- normalised to lower case by the facade
    password_hash text NOT NULL,                 -- argon2id, PHC string
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('user', 'admin')),
    created_at    timestamptz NOT NULL
);

-- Refresh tokens are kept only as SHA-256 hashes, and each is used once.
CREATE TABLE refresh_tokens (
    hash       text PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);

-- Reusable seat layouts; `spec` is the layout as JSON (tiers, sections, rows).
CREATE TABLE layouts (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    spec       jsonb NOT NULL,
    seat_count integer NOT NULL CHECK (seat_count >= 0),
    created_at timestamptz NOT NULL
);

-- Events carry their own copy of the layout (templates may change; an event's seats may not).
-- `seq` is the sequence number of the last change set the journal applied, `serial` the
-- highest reservation serial: an actor continues from both after a restart.
CREATE TABLE events (
    id                  uuid PRIMARY KEY,
    title               text NOT NULL,
    description         text NOT NULL,
    venue               text NOT NULL,
    artist              text NOT NULL,
    event_date          timestamptz NOT NULL,
    sale_start          timestamptz NOT NULL,
    sale_end            timestamptz NOT NULL CHECK (sale_end > sale_start),
    layout              jsonb,
    layout_id           uuid REFERENCES layouts (id),
    per_user_limit      integer NOT NULL CHECK (per_user_limit >= 0),
    hold_ttl_ms         bigint NOT NULL CHECK (hold_ttl_ms > 0),
    max_per_reservation integer NOT NULL CHECK (max_per_reservation > 0),
    status              text NOT NULL
                        CHECK (status IN ('upcoming', 'on_sale', 'sold_out', 'ended', 'cancelled')),
    seq                 bigint NOT NULL DEFAULT 0,
    serial              integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX events_by_date ON events (event_date, id);

-- General-admission ticket types; the counters can never exceed capacity.
CREATE TABLE ticket_types (
    id         uuid PRIMARY KEY,
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    position   integer NOT NULL,
    name       text NOT NULL,
    price      bigint NOT NULL CHECK (price >= 0),
    capacity   integer NOT NULL CHECK (capacity > 0),
    held       integer NOT NULL DEFAULT 0 CHECK (held >= 0),
    sold       integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    CHECK (held + sold <= capacity)
);
CREATE INDEX ticket_types_by_event ON ticket_types (event_id, position);

-- One row per seat, so operators can read the seat map with plain SQL. `seat_index` is the
-- engine's compact index; `seat_id` the public id (e.g. VIP-A-12).
CREATE TABLE seats (
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    seat_index integer NOT NULL,
    seat_id    text NOT NULL,
    section    text NOT NULL,
    row_label  text NOT NULL,
    number     integer NOT NULL,
    price      bigint NOT NULL,
    status     text NOT NULL DEFAULT 'available'
               CHECK (status IN ('available', 'held', 'sold', 'blocked')),
    PRIMARY KEY (event_id, seat_index),
    UNIQUE (event_id, seat_id)
);
CREATE INDEX seats_blocked ON seats (event_id) WHERE status = 'blocked';

-- Reservations: the hold and the order are one resource.
CREATE TABLE reservations (
    id             uuid PRIMARY KEY,
    event_id       uuid NOT NULL REFERENCES events (id),
    user_id        uuid NOT NULL REFERENCES users (id),
    number         text NOT NULL,               -- TKT-YYYYMMDD-NNNNN
    serial         integer NOT NULL,
    status         text NOT NULL CHECK (status IN ('held', 'confirmed', 'expired', 'cancelled')),
    amount         bigint NOT NULL CHECK (amount >= 0),
    ticket_type_id uuid REFERENCES ticket_types (id),
    quantity       integer NOT NULL CHECK (quantity > 0),
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    UNIQUE (event_id, serial)
);
CREATE INDEX reservations_live ON reservations (event_id) WHERE status IN ('held', 'confirmed');
CREATE INDEX reservations_by_user ON reservations (user_id, created_at DESC);

-- The seats of a seated reservation. `live` is true while the reservation holds or owns
-- the seat; the partial unique index is the database's own guarantee that no seat is in
-- two live reservations, whatever the application does.
CREATE TABLE reservation_items (
    reservation_id uuid NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
    event_id       uuid NOT NULL,
    seat_index     integer NOT NULL,
    seat_id        text NOT NULL,
    live           boolean NOT NULL,
    PRIMARY KEY (reservation_id, seat_index),
    FOREIGN KEY (event_id, seat_index) REFERENCES seats (event_id, seat_index)
);
CREATE UNIQUE INDEX one_live_reservation_per_seat ON reservation_items (event_id, seat_index) WHERE live;

-- Idempotency keys, scoped per user, written in the same transaction as the change they
-- describe; `outcome` is the stored answer.
CREATE TABLE idempotency_keys (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    event_id    uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    outcome     jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_by_event ON idempotency_keys (event_id, created_at);
