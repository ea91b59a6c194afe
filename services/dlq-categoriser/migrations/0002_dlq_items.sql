-- Read model of the dead-letter topics, built by ct-dlq-categoriser from the category topics,
-- ct.retry.v1 and ct.audit.v1. Every column comes from the log (times included), so a rebuild
-- from offset 0 gives the same content.
-- Tables are created IF NOT EXISTS: databases that ran the first cut of this service applied
-- this script as version 1, before the progress table became a migration of its own.

-- One row per stage and original record: later attempts and duplicates update it.
CREATE TABLE IF NOT EXISTS dlq_items (
    id                  TEXT PRIMARY KEY,
    category            TEXT NOT NULL CHECK (category IN ('SCHEMA', 'TRANSIENT', 'CRITICAL')),
    rule                TEXT NOT NULL,
    stage               TEXT NOT NULL,
    step                TEXT NOT NULL,
    error_class         TEXT NOT NULL,
    error_message       TEXT NOT NULL,
    attempts            INT NOT NULL,
    first_failure_at    TIMESTAMPTZ NOT NULL,
    last_failure_at     TIMESTAMPTZ NOT NULL,
    original_topic      TEXT NOT NULL,
    original_partition  INT NOT NULL,
    original_offset     BIGINT NOT NULL,
    source              TEXT,
    record_key          BYTEA,
    record_value        BYTEA,
    headers             JSONB NOT NULL,
    dlq_topic           TEXT NOT NULL,
    dlq_partition       INT NOT NULL,
    dlq_offset          BIGINT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('parked', 'replayed', 'skipped')),
    state_changed_at    TIMESTAMPTZ NOT NULL,
    state_actor         TEXT,
    state_reason        TEXT
);
CREATE INDEX IF NOT EXISTS dlq_items_recent ON dlq_items (last_failure_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS dlq_items_category ON dlq_items (category, last_failure_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS dlq_items_parked ON dlq_items (category) WHERE state = 'parked';

-- Each hand-back through ct.retry.v1 (automatic retry or replay). Kept apart so that a
-- hand-back read before its item (the topics are consumed independently) still counts.
CREATE TABLE IF NOT EXISTS dlq_handbacks (
    item_id   TEXT NOT NULL,
    attempt   INT NOT NULL,
    origin    TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (item_id, attempt, origin)
);

CREATE TABLE IF NOT EXISTS dlq_audit (
    audit_id  TEXT PRIMARY KEY,
    item_id   TEXT NOT NULL,
    action    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    actor     TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    reason    TEXT NOT NULL,
    detail    TEXT,
    attempt   INT NOT NULL
);
CREATE INDEX IF NOT EXISTS dlq_audit_item ON dlq_audit (item_id, at);
