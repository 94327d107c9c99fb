-- Payments, the admin's audit trail of reservation status changes, and the queue-join
-- counter behind the conversion funnel. All written write-behind by the event actors'
-- journal, in the same transaction as the reservation changes they go with.

-- One row per payment attempt. `order_id` is what the provider knows the attempt by: the
-- reservation id (32 hex digits), a dash and the attempt number. A row reaches
-- `in_progress` (with its `payment_key`) in a commit that precedes the provider call, so
-- after a crash every capture that may have happened has a row to reconcile.
CREATE TABLE payments (
    order_id        text PRIMARY KEY,
    reservation_id  uuid NOT NULL REFERENCES reservations (id),
    event_id        uuid NOT NULL REFERENCES events (id),
    user_id         uuid NOT NULL REFERENCES users (id),
    attempt         integer NOT NULL CHECK (attempt > 0),
    amount          bigint NOT NULL CHECK (amount >= 0),
    status          text NOT NULL CHECK (status IN
                        ('ready', 'in_progress', 'done', 'failed', 'cancelling', 'cancelled', 'aborted')),
    payment_key     text,
    method          text,
    failure_code    text,
    failure_message text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    approved_at     timestamptz,
    cancelled_at    timestamptz,
    UNIQUE (reservation_id, attempt),
    CHECK (status IN ('ready', 'aborted') OR payment_key IS NOT NULL)
);
-- The database's own guard against a double charge: at most one attempt per reservation
-- is being captured, captured, or being refunded.
CREATE UNIQUE INDEX one_paid_attempt_per_reservation ON payments (reservation_id)
    WHERE status IN ('in_progress', 'done', 'cancelling');
CREATE INDEX payments_by_key ON payments (payment_key) WHERE payment_key IS NOT NULL;
CREATE INDEX payments_by_user ON payments (user_id, created_at DESC);
CREATE INDEX payments_by_event ON payments (event_id, status);

-- Who changed a reservation's status by hand, from what to what, and why.
CREATE TABLE reservation_audit (
    id             bigserial PRIMARY KEY,
    reservation_id uuid NOT NULL REFERENCES reservations (id),
    event_id       uuid NOT NULL REFERENCES events (id),
    admin_id       uuid NOT NULL REFERENCES users (id),
    from_status    text NOT NULL,
    to_status      text NOT NULL,
    reason         text NOT NULL,
    at             timestamptz NOT NULL
);
CREATE INDEX reservation_audit_by_reservation ON reservation_audit (reservation_id, at);

-- Buyers who ever joined each event's queue (the funnel's first step; queue_members only
-- holds those still in line).
ALTER TABLE events ADD COLUMN queue_joins bigint NOT NULL DEFAULT 0 CHECK (queue_joins >= 0);
