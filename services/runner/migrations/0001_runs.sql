-- Triggered runs, folded from ct.runs.v1 (ct_core::runs::fold). Every column comes from the log.
CREATE TABLE trigger_runs (
    run_id text PRIMARY KEY,
    trigger text NOT NULL,
    status text NOT NULL,
    initiator text NOT NULL,
    reason text,
    inputs text,
    request_hash text,
    correlation_id text,
    attempt integer NOT NULL,
    requested_at timestamptz NOT NULL,
    decided_by text,
    decided_at timestamptz,
    started_at timestamptz,
    completed_at timestamptz,
    cancel_requested_by text,
    sla_breached boolean NOT NULL,
    error_class text,
    error text,
    result text
);
CREATE INDEX trigger_runs_open ON trigger_runs (requested_at) WHERE status IN ('awaiting_approval', 'queued', 'running');
CREATE INDEX trigger_runs_listed ON trigger_runs (requested_at DESC, run_id DESC);

-- Every record of a run, applied or not (and why not): the run's audit trail.
CREATE TABLE run_transitions (
    "partition" integer NOT NULL,
    "offset" bigint NOT NULL,
    run_id text NOT NULL,
    kind text NOT NULL,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    attempt integer NOT NULL,
    reason text,
    error_class text,
    http_status integer,
    duration_ms bigint,
    ignored_because text,
    PRIMARY KEY ("partition", "offset")
);
CREATE INDEX run_transitions_run ON run_transitions (run_id, "offset");
