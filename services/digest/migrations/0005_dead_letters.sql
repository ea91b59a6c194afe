-- Dead letters in the digest, from the audit topic (ct.audit.v1), which ticks also bound: the
-- categoriser's depth reports (ct.v1.DlqDepth) and people's actions (ct.v1.DlqAudit) wait here
-- until the first tick whose audit offsets cover them.
CREATE TABLE pending_audit (
    "partition"  INT NOT NULL,
    "offset"     BIGINT NOT NULL,
    kind         TEXT NOT NULL,                -- resolved | depth
    audit_id     TEXT,                         -- resolved: the audit record's id
    outcome      TEXT,                         -- resolved: replayed | reparked | skipped
    day          DATE NOT NULL,                -- the local day of the action or the report
    written_at   TIMESTAMPTZ NOT NULL,         -- the action's `at`, or the report's `written_at`
    by_category  JSONB,                        -- depth: parked per category
    PRIMARY KEY ("partition", "offset")
);

-- The last depth report of each local day (by its written_at).
CREATE TABLE dlq_depth (
    day         DATE PRIMARY KEY,
    written_at  TIMESTAMPTZ NOT NULL,
    by_category JSONB NOT NULL
);
