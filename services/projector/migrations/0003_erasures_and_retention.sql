-- Erasures (ct.v1.Erasure on ct.audit.v1, written by `ct erase`): the events of `source` whose ts
-- is before `before` keep their row, with the payload replaced by {"erased": true}. Applied in
-- whichever order the two arrive: an erasure updates the rows already there, an insert looks at
-- the erasures already there (under the schema's swap lock, taken exclusively by the erasure).
CREATE TABLE erasures (
    erasure_id  TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    before      TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX erasures_source ON erasures (source, before);

-- Retention prunes runs and systems by their latest time.
CREATE INDEX runs_latest ON runs ((COALESCE(ended_at, started_at, listed_at)));
CREATE INDEX systems_latest ON systems ((COALESCE(last_event_at, last_heartbeat)));

-- The ids of events deleted by the retention: a late copy of one stays a duplicate.
CREATE TABLE pruned_events (
    event_id  TEXT PRIMARY KEY
);
