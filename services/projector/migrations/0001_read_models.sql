-- Read models built by ct-projector from ct.events.v1. Every column is a deterministic function
-- of the log, so a rebuild from offset 0 gives the same content.

CREATE TABLE events (
    event_id        TEXT PRIMARY KEY,
    type            TEXT NOT NULL,
    source          TEXT NOT NULL,
    ts              TIMESTAMPTZ NOT NULL,
    correlation_id  TEXT,
    payload         JSONB NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL,
    trace_id        TEXT,
    topic           TEXT NOT NULL,
    "partition"     INT NOT NULL,
    "offset"        BIGINT NOT NULL
);
CREATE INDEX events_ts ON events (ts DESC, event_id DESC);
CREATE INDEX events_source_ts ON events (source, ts DESC, event_id DESC);
CREATE INDEX events_type_ts ON events (type, ts DESC, event_id DESC);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    trigger           TEXT,
    initiator         TEXT,
    inputs            JSONB,
    started_at        TIMESTAMPTZ,
    completed_status  TEXT,
    duration_ms       BIGINT,
    metrics           JSONB,
    ended_at          TIMESTAMPTZ
);

CREATE TABLE systems (
    system_id        TEXT PRIMARY KEY,
    events_total     BIGINT NOT NULL DEFAULT 0,
    last_event_at    TIMESTAMPTZ,
    last_event_id    TEXT,
    last_event_type  TEXT,
    last_heartbeat   TIMESTAMPTZ
);

CREATE TABLE type_counts (
    type          TEXT PRIMARY KEY,
    events_total  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS consumer_progress (
    consumer     TEXT NOT NULL,
    topic        TEXT NOT NULL,
    "partition"  INT NOT NULL,
    next_offset  BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, "partition")
);
