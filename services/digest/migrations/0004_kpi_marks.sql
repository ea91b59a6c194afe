-- What each event says for the KPIs (ct_core::kpi::mark): the two ends of the lead times and each
-- completed run. The read API pairs and summarises them (GET /metrics/kpi); both are functions of
-- the set of marks, so a rebuild gives the same KPIs.
CREATE TABLE kpi_marks (
    event_id  TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,             -- contract | invoice | run
    key       TEXT NOT NULL,             -- contract id, correlation id, run id
    edge      TEXT NOT NULL,             -- start | end
    subsystem TEXT NOT NULL,             -- the event's source
    outcome   TEXT NOT NULL,             -- a run's status; '' for lead times
    at        TIMESTAMPTZ NOT NULL       -- the event's ts
);
CREATE INDEX kpi_marks_pairs ON kpi_marks (kind, key, edge, at);
CREATE INDEX kpi_marks_by_time ON kpi_marks (kind, at);
