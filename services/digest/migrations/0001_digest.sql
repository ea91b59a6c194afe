-- The daily digest's read model (schema ct_digest). Everything here comes from the log:
-- ct.events.v1 (what happened) and ct.clock.v1 (time), so `ct rebuild digest` gives the same
-- digests, byte for byte.

-- (The progress table is the platform's: migration 0, `ct_platform::postgres::PROGRESS_TABLE_SQL`.)

-- What an event adds to its local day, kept until the first clock tick whose offsets cover it
-- folds it into `day_counts`: a digest sees exactly the events below its tick's offsets.
CREATE TABLE pending_facts (
    "partition" INT NOT NULL,
    "offset"    BIGINT NOT NULL,
    event_id    TEXT NOT NULL,
    day         DATE NOT NULL,
    metric      TEXT NOT NULL,
    dimension   TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    PRIMARY KEY ("partition", "offset", metric, dimension)
);

-- Ticks read and not yet applied (waiting for the events they name to be stored).
CREATE TABLE pending_ticks (
    clock_offset BIGINT PRIMARY KEY,
    minute       TIMESTAMPTZ NOT NULL,
    events_end   BIGINT[] NOT NULL,
    written_at   TIMESTAMPTZ NOT NULL,
    -- The audit offsets ticks carry (this model reads no audit topic; the platform's clock
    -- consumer writes every tick the same way).
    audit_end    BIGINT[] NOT NULL DEFAULT '{}'
);

-- The last applied minute and the next day whose digest is due (one row).
CREATE TABLE clock (
    id       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    minute   TIMESTAMPTZ NOT NULL,
    next_day DATE NOT NULL
);

-- Events already counted (a second copy of an event in the log counts once), by local day.
CREATE TABLE counted (
    event_id TEXT PRIMARY KEY,
    day      DATE NOT NULL
);
CREATE INDEX counted_day ON counted (day);

-- Per local day, metric and dimension: how many, and the sum of the amounts (minor units).
CREATE TABLE day_counts (
    day       DATE NOT NULL,
    metric    TEXT NOT NULL,
    dimension TEXT NOT NULL,
    count     BIGINT NOT NULL,
    amount    BIGINT NOT NULL,
    PRIMARY KEY (day, metric, dimension)
);

-- One digest per local day, decided at the first tick at or after its due time. The content
-- columns are decisions (a rebuild compares them); the delivery columns are what the publisher
-- did with them (when it was published, whether late, archived).
CREATE TABLE digests (
    day            DATE PRIMARY KEY,
    time_zone      TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    json           TEXT NOT NULL,
    markdown       TEXT NOT NULL,
    due_at         TIMESTAMPTZ NOT NULL,
    decided_minute TIMESTAMPTZ NOT NULL,
    published_at   TIMESTAMPTZ,
    late           BOOLEAN,
    archived       TEXT
);
CREATE INDEX digests_unpublished ON digests (day) WHERE published_at IS NULL;
