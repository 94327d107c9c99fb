-- Attempts declined because the provider showed no capture for them when asked
-- (failure_code 'NOT_CAPTURED'): the provider never refused them, so a capture may still
-- land, and the event's actor keeps looking for one for a while. It finds its event's
-- declines when it is activated (by event), and start-up finds the events with a recent one
-- (by last change). Such declines are rare, so both partial indexes stay small.
--
-- Built at start-up before the node serves (migrations run first); on a large payments
-- table the build holds writes to it for as long as the table takes to scan.
CREATE INDEX payments_not_captured_by_event ON payments (event_id, updated_at)
    WHERE failure_code = 'NOT_CAPTURED';
CREATE INDEX payments_not_captured ON payments (updated_at) WHERE failure_code = 'NOT_CAPTURED';
