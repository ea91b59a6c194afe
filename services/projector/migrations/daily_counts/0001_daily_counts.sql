-- The daily_counts read model: events per source per UTC day of their `ts`. `seen` makes each
-- eventId count once however often the log holds it.
CREATE TABLE IF NOT EXISTS consumer_progress (
    consumer     TEXT NOT NULL,
    topic        TEXT NOT NULL,
    "partition"  INT NOT NULL,
    next_offset  BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, "partition")
);

CREATE TABLE seen (event_id TEXT PRIMARY KEY);

CREATE TABLE daily_counts (
    day     DATE NOT NULL,
    source  TEXT NOT NULL,
    events  BIGINT NOT NULL,
    PRIMARY KEY (day, source)
);
