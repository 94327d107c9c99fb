-- Attempts declined because the provider showed no capture for them when asked
-- (failure_code 'NOT_CAPTURED'): the provider never refused them, so a capture may still
-- land. At start-up every event with a recent one is activated to look for it, which asks
-- for these rows by their last change; this partial index keeps that a short scan.
CREATE INDEX payments_not_captured ON payments (updated_at) WHERE failure_code = 'NOT_CAPTURED';
