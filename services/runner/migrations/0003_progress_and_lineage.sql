-- What running jobs report: the latest report per run, and the lineage edges (OpenLineage
-- naming: datasets as namespace + name) each job's reports add or withdraw. Adds and removals
-- merge by their record time (the later wins), so the order partitions are read in never matters:
-- an edge holds when added_at IS NOT NULL AND (removed_at IS NULL OR added_at > removed_at).
ALTER TABLE trigger_runs ADD COLUMN progress text;

CREATE TABLE lineage_edges (
    job text NOT NULL,
    source_namespace text NOT NULL,
    source_name text NOT NULL,
    target_namespace text NOT NULL,
    target_name text NOT NULL,
    -- Null until an add is seen (a removal read first leaves its time here alone).
    first_seen_at timestamptz,
    added_at timestamptz,
    last_run_id text,
    removed_at timestamptz,
    PRIMARY KEY (job, source_namespace, source_name, target_namespace, target_name)
);
