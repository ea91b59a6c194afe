-- The DLQ categoriser's depth reports (ct.v1.DlqDepth on the audit topic), waiting like alert
-- actions for the tick whose audit offsets cover them; the last one applied, and since which
-- tick the depth has been over the alert's threshold.
CREATE TABLE pending_depths (
    "partition" INT NOT NULL,
    "offset"    BIGINT NOT NULL,
    parked      BIGINT NOT NULL,
    written_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY ("partition", "offset")
);

CREATE TABLE dlq_depth (
    id          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    parked      BIGINT NOT NULL,
    reported_at TIMESTAMPTZ NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL,
    over_since  TIMESTAMPTZ
);
