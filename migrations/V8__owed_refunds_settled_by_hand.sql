-- A capture owed back that the provider will not refund (it refuses, the card's account is
-- closed) is settled by an admin by other means; the actor then stops asking the provider.
-- `refunded_at` is when it was settled, and these say who settled it and why. NULL for the
-- captures the provider refunded.
ALTER TABLE owed_refunds
    ADD COLUMN settled_by uuid REFERENCES users (id),
    ADD COLUMN settle_reason text,
    ADD CONSTRAINT settled_by_hand_with_reason
        CHECK ((settled_by IS NULL) = (settle_reason IS NULL)
               AND (settled_by IS NULL OR refunded_at IS NOT NULL));
