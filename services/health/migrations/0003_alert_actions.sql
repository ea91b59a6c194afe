-- People's actions on alerts (ct.audit.v1, ct.v1.AlertAudit), applied at the first tick whose
-- audit offsets cover them, like the facts of events.
ALTER TABLE pending_ticks ADD COLUMN audit_end BIGINT[] NOT NULL DEFAULT '{}';

CREATE TABLE pending_actions (
    "partition"  INT NOT NULL,
    "offset"     BIGINT NOT NULL,
    audit_id     TEXT NOT NULL,
    alert_id     TEXT NOT NULL,
    action       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY ("partition", "offset")
);

-- The audit trail of actions as applied: `outcome` says what it did (acknowledged, or why not).
CREATE TABLE alert_actions (
    audit_id     TEXT PRIMARY KEY,
    alert_id     TEXT NOT NULL,
    action       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    reason       TEXT NOT NULL,
    applied_at   TIMESTAMPTZ NOT NULL,
    outcome      TEXT NOT NULL
);
