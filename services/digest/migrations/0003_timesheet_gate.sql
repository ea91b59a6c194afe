-- The timesheet gate (ct_core::timesheets): decided at the first tick at or after each week's
-- deadline, from the timesheets counted by then (`day_counts`, metric `timesheets.period`).

-- The Monday of the next week whose gate is undecided (NULL until the gate is first enabled).
ALTER TABLE clock ADD COLUMN next_gate_week DATE;

CREATE TABLE timesheet_gates (
    period         TEXT PRIMARY KEY,            -- ISO week, 2026-W47
    week           DATE NOT NULL,               -- its Monday
    deadline       TIMESTAMPTZ NOT NULL,
    expected       INT NOT NULL,
    received       INT NOT NULL,
    missing        TEXT[] NOT NULL,             -- contractor ids, sorted
    threshold      INT NOT NULL,
    blocked        BOOLEAN NOT NULL,
    decided_minute TIMESTAMPTZ NOT NULL,
    -- Delivery: when the publisher wrote `timesheet.gate.blocked` through the edge and queued the
    -- notifications (blocked gates only). Not state of the log.
    announced_at   TIMESTAMPTZ
);
CREATE INDEX timesheet_gates_unannounced ON timesheet_gates (period) WHERE blocked AND announced_at IS NULL;
