-- The health evaluator's read model (schema ct_health). Everything here comes from the log:
-- ct.events.v1 (facts) and ct.clock.v1 (time), so `ct rebuild health` reproduces it exactly.

-- (The progress table is the platform's: migration 0, `ct_platform::postgres::PROGRESS_TABLE_SQL`.)

-- What an event says about a system, kept until the first clock tick whose offsets cover it
-- folds it in: a tick sees exactly the events below its offsets, however far the events
-- consumer has read.
CREATE TABLE pending_facts (
    "partition"  INT NOT NULL,
    "offset"     BIGINT NOT NULL,
    system_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           TIMESTAMPTZ NOT NULL,
    latency_s    BIGINT NOT NULL,
    heartbeat    BOOLEAN NOT NULL,
    high_error   BOOLEAN NOT NULL,
    PRIMARY KEY ("partition", "offset", system_id)
);

-- Ticks read and not yet evaluated (waiting for the events they name to be stored).
CREATE TABLE pending_ticks (
    clock_offset BIGINT PRIMARY KEY,
    minute       TIMESTAMPTZ NOT NULL,
    events_end   BIGINT[] NOT NULL,
    written_at   TIMESTAMPTZ NOT NULL
);

-- The last evaluated minute (one row).
CREATE TABLE clock (
    id          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    minute      TIMESTAMPTZ NOT NULL,
    ticks       BIGINT NOT NULL
);

CREATE TABLE last_heartbeats (
    system_id TEXT PRIMARY KEY,
    ts        TIMESTAMPTZ NOT NULL
);

-- High-severity function errors, kept while inside the 24 h window.
CREATE TABLE high_errors (
    system_id TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (system_id, event_id)
);

-- Intake latency (receivedAt - ts, whole seconds) per system and tick minute, kept 24 h.
CREATE TABLE intake (
    system_id TEXT NOT NULL,
    minute    TIMESTAMPTZ NOT NULL,
    latency_s BIGINT NOT NULL,
    events    BIGINT NOT NULL,
    PRIMARY KEY (system_id, minute, latency_s)
);

-- Records the evaluator ignored (a heartbeat for an unknown system, or for a system another
-- source owns), counted.
CREATE TABLE ignored (
    reason    TEXT NOT NULL,
    system_id TEXT NOT NULL,
    source    TEXT NOT NULL,
    records   BIGINT NOT NULL,
    PRIMARY KEY (reason, system_id, source)
);

-- Each catalogued system's status as of the last evaluated tick, like a Kubernetes condition.
CREATE TABLE statuses (
    system_id            TEXT PRIMARY KEY,
    status               TEXT NOT NULL,
    reason               TEXT NOT NULL,
    message              TEXT NOT NULL,
    last_transition_time TIMESTAMPTZ NOT NULL,
    evaluated_at         TIMESTAMPTZ NOT NULL
);

-- Every status change.
CREATE TABLE history (
    system_id TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    status    TEXT NOT NULL,
    previous  TEXT,
    reason    TEXT NOT NULL,
    message   TEXT NOT NULL,
    PRIMARY KEY (system_id, at)
);

-- Changes written in the same transaction as the status, waiting to be produced to ct.health.v1
-- (the value is the record in the Confluent wire format). Not part of the checksums: a rebuild
-- writes none.
CREATE TABLE outbox (
    id        BIGSERIAL PRIMARY KEY,
    system_id TEXT NOT NULL,
    value     BYTEA NOT NULL
);
