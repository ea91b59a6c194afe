-- The eventId of a dead letter whose record is an event (decoded through the registry when it
-- is parked; NULL for anything else), so an event's lineage finds its dead-letter hops even when
-- it was replayed and projected from ct.retry.v1 under other coordinates.
ALTER TABLE dlq_items ADD COLUMN IF NOT EXISTS event_id TEXT;
CREATE INDEX IF NOT EXISTS dlq_items_event ON dlq_items (event_id) WHERE event_id IS NOT NULL;
