-- Seat status is derived, no longer stored per seat.
--
-- Measured on a 16,384-seat-change batch (benches/benches/persistence.rs, PostgreSQL's
-- statement log): with a stored status every hold rewrote its seat rows (UPDATE seats,
-- 260-300 ms, none of them HOT because status was indexed), and inserting the reservation's
-- seats paid a foreign-key check per row (~160 ms) plus a join to copy seat_id. A hold now
-- only inserts: its reservation and its reservation_items rows.
--
-- `seats` stays readable exactly as before: it is now a view over `event_seats` (the
-- layout plus an admin's `blocked` flag) and the live reservation items. The invariant
-- "no seat in two live reservations" is still the partial unique index
-- one_live_reservation_per_seat; that a seat index exists is guaranteed by the engine's
-- seat map, which only ever names seats of the event's own layout.

ALTER TABLE reservation_items DROP CONSTRAINT reservation_items_event_id_seat_index_fkey;
ALTER TABLE reservation_items DROP COLUMN seat_id;

ALTER TABLE seats RENAME TO event_seats;
ALTER TABLE event_seats ADD COLUMN blocked boolean NOT NULL DEFAULT false;
UPDATE event_seats SET blocked = (status = 'blocked');
DROP INDEX seats_blocked;
ALTER TABLE event_seats DROP COLUMN status;
CREATE INDEX event_seats_blocked ON event_seats (event_id) WHERE blocked;

CREATE VIEW seats AS
SELECT s.event_id, s.seat_index, s.seat_id, s.section, s.row_label, s.number, s.price,
       CASE WHEN s.blocked THEN 'blocked'
            WHEN r.status = 'confirmed' THEN 'sold'
            WHEN r.status = 'held' THEN 'held'
            ELSE 'available' END AS status,
       r.id AS reservation_id
FROM event_seats s
LEFT JOIN reservation_items i ON i.event_id = s.event_id AND i.seat_index = s.seat_index AND i.live
LEFT JOIN reservations r ON r.id = i.reservation_id;

-- A reservation's seats with their public ids, for operators.
CREATE VIEW reservation_seats AS
SELECT i.reservation_id, i.event_id, i.seat_index, s.seat_id, s.section, s.row_label, s.number, i.live
FROM reservation_items i
JOIN event_seats s ON s.event_id = i.event_id AND s.seat_index = i.seat_index;
