-- `GET /dlq` pages on (first_failure_at, id): both are fixed when an item is first parked, so a
-- later failure of the same record (which moves last_failure_at) cannot make it repeat or vanish
-- while a client pages.
CREATE INDEX IF NOT EXISTS dlq_items_first_failure ON dlq_items (first_failure_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS dlq_items_category_first_failure ON dlq_items (category, first_failure_at DESC, id DESC);
DROP INDEX IF EXISTS dlq_items_recent;
DROP INDEX IF EXISTS dlq_items_category;
