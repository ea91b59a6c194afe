-- The read API pages runs on (listed_at, run_id): a key that never changes once the row exists,
-- so a run cannot repeat or vanish between pages when its start or completion arrives later.
-- listed_at is the time of the first event of the run in log order (a run's events share their
-- source, hence the partition, so a rebuild gives the same value).
ALTER TABLE runs ADD COLUMN listed_at TIMESTAMPTZ;
UPDATE runs SET listed_at = COALESCE(started_at, ended_at);
ALTER TABLE runs ALTER COLUMN listed_at SET NOT NULL;
CREATE INDEX runs_listed_order ON runs (listed_at DESC, run_id DESC);
