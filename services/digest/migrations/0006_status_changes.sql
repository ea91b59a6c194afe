-- Status changes in the digest, from ct.health.v1 (the health evaluator's outbox), which ticks
-- bound too (health_end): each change waits in pending_changes until the first tick whose offsets
-- cover it, then joins status_changes (one row per system and transition time: the outbox
-- delivers at least once).
ALTER TABLE pending_ticks ADD COLUMN health_end BIGINT[] NOT NULL DEFAULT '{}';

CREATE TABLE pending_changes (
    "partition" INT NOT NULL,
    "offset"    BIGINT NOT NULL,
    system_id   TEXT NOT NULL,
    status      TEXT NOT NULL,                 -- green | amber | red | unknown
    at          TIMESTAMPTZ NOT NULL,          -- last_transition_time
    PRIMARY KEY ("partition", "offset")
);

CREATE TABLE status_changes (
    system_id TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    status    TEXT NOT NULL,
    PRIMARY KEY (system_id, at)
);
