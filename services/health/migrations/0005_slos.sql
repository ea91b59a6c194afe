-- SLOs: runs and the (good, total) counts each SLO's indicator gives per clock minute, summed
-- over the windows the objectives and the burn-rate conditions read.

ALTER TABLE pending_facts
    ADD COLUMN run_id TEXT,
    ADD COLUMN job TEXT,
    ADD COLUMN run_status TEXT;

-- Runs of the catalogued systems, from ct.run.started / ct.run.completed of their owner. The
-- first completion counts; a run still without one past its SLA is an alert.
CREATE TABLE runs (
    system_id    TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    job          TEXT,
    started_at   TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    status       TEXT,
    PRIMARY KEY (system_id, run_id)
);
CREATE INDEX runs_open ON runs (started_at) WHERE completed_at IS NULL;

-- Good and total per SLO, system, job ('' for the whole system) and tick minute; kept as long as
-- the longest window.
CREATE TABLE slo_minutes (
    slo       TEXT NOT NULL,
    system_id TEXT NOT NULL,
    job       TEXT NOT NULL,
    minute    TIMESTAMPTZ NOT NULL,
    good      BIGINT NOT NULL,
    total     BIGINT NOT NULL,
    PRIMARY KEY (slo, system_id, job, minute)
);
CREATE INDEX slo_minutes_by_minute ON slo_minutes (minute);

-- Running sums of slo_minutes over each window length (seconds): each tick adds its minute and
-- takes away the minutes that left the window, so a tick costs what changed, not 30 days.
CREATE TABLE slo_sums (
    slo       TEXT NOT NULL,
    system_id TEXT NOT NULL,
    job       TEXT NOT NULL,
    seconds   BIGINT NOT NULL,
    good      BIGINT NOT NULL,
    total     BIGINT NOT NULL,
    PRIMARY KEY (slo, system_id, job, seconds)
);

-- Each SLO as of the last tick: its budget over its window and the burn-rate condition that
-- holds, if any.
CREATE TABLE slo_status (
    slo              TEXT NOT NULL,
    system_id        TEXT NOT NULL,
    job              TEXT NOT NULL,
    budgeting        TEXT NOT NULL,
    objective        DOUBLE PRECISION NOT NULL,
    window_days      INT NOT NULL,
    good             BIGINT NOT NULL,
    total            BIGINT NOT NULL,
    sli              DOUBLE PRECISION,
    budget_remaining DOUBLE PRECISION,
    judged           BOOLEAN NOT NULL,
    burning          TEXT,
    evaluated_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (slo, system_id, job)
);
