-- Alerts decided at the evaluator's clock ticks, and the notifications they send (an outbox).

-- One row per alert: one incident (dedup key) from firing to resolved.
CREATE TABLE alerts (
    id               TEXT PRIMARY KEY,          -- <key>@<fired minute>
    key              TEXT NOT NULL,             -- dedup key, e.g. fn-errors:backend
    rule             TEXT NOT NULL,
    system_id        TEXT NOT NULL,
    state            TEXT NOT NULL,             -- firing | acknowledged | resolved
    summary          TEXT NOT NULL,
    fired_at         TIMESTAMPTZ NOT NULL,
    last_notified_at TIMESTAMPTZ NOT NULL,
    escalated_at     TIMESTAMPTZ,
    acknowledged_at  TIMESTAMPTZ,
    resolved_at      TIMESTAMPTZ
);
-- At most one open alert per key.
CREATE UNIQUE INDEX alerts_open_key ON alerts (key) WHERE state <> 'resolved';

-- One row per transition and channel. `state`, `attempts`, `next_attempt_at`, `delivered_at` and
-- `last_error` are delivery, not decision: they are left out of the rebuild checksums, and a
-- rebuild writes its rows `suppressed` (decided again, never sent again).
CREATE TABLE notifications (
    id              BIGSERIAL PRIMARY KEY,
    alert_id        TEXT NOT NULL REFERENCES alerts (id),
    transition      TEXT NOT NULL,              -- firing | repeat | escalated | resolved
    channel         TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,       -- the clock tick that decided it
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,              -- pending | delivered | suppressed
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT,
    UNIQUE (alert_id, transition, channel, at)
);
CREATE INDEX notifications_due ON notifications (id) WHERE state = 'pending';
