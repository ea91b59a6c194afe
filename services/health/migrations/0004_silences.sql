-- Silences (ct.v1.AlertAudit with action SILENCE), applied like acknowledgements at the tick that
-- covers them: matching alerts still fire and resolve; their notifications are not sent.
ALTER TABLE pending_actions
    ADD COLUMN rule TEXT,
    ADD COLUMN system_id TEXT,
    ADD COLUMN starts_at TIMESTAMPTZ,
    ADD COLUMN ends_at TIMESTAMPTZ;

CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    rule       TEXT,
    system_id  TEXT,
    starts_at  TIMESTAMPTZ NOT NULL,
    ends_at    TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);
