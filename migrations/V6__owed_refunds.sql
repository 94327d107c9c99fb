-- Captures the payment provider made for an order that no longer sold anything (a
-- reconciliation had declined the attempt when no capture showed up in time, or the hold
-- had ended): the money is owed back. Written by the event's journal like every other
-- change; `refunded_at` is set once the provider has refunded. Until then the event's
-- actor asks for the refund again, after a restart too.
CREATE TABLE owed_refunds (
    payment_key text PRIMARY KEY,
    order_id    text NOT NULL,
    event_id    uuid NOT NULL REFERENCES events (id),
    captured_at timestamptz NOT NULL,
    since       timestamptz NOT NULL,
    refunded_at timestamptz
);
CREATE INDEX owed_refunds_unpaid ON owed_refunds (event_id) WHERE refunded_at IS NULL;
