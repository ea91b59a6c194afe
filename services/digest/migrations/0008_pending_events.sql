-- What an event adds to its local day, one row per event instead of one per fact: the facts of an
-- event share its day, and each row and index entry costs WAL twice (stored, then deleted by the
-- fold). Measured at 2,000 events/s: `pending_facts` and its key wrote about 960 bytes of WAL per
-- event, the largest share of any table. The facts are kept in (metric, dimension) order, the
-- byte order `counting.rs` sorts them in, so the rows carried over here and the rows a rebuild
-- writes compare equal.
-- An earlier instance may still be storing a batch (a rolling update): wait for it, so that the
-- copy below sees its facts before the table is dropped. Its next batch fails on the missing
-- table, which pauses it as an unavailable dependency until it is replaced.
LOCK TABLE pending_facts IN EXCLUSIVE MODE;

CREATE TABLE pending_events (
    "partition" INT NOT NULL,
    "offset"    BIGINT NOT NULL,
    day         DATE NOT NULL,
    metrics     TEXT[] NOT NULL,
    dimensions  TEXT[] NOT NULL,
    amounts     BIGINT[] NOT NULL,
    PRIMARY KEY ("partition", "offset")
);

INSERT INTO pending_events ("partition", "offset", day, metrics, dimensions, amounts)
SELECT "partition", "offset", min(day),
       array_agg(metric ORDER BY metric COLLATE "C", dimension COLLATE "C"),
       array_agg(dimension ORDER BY metric COLLATE "C", dimension COLLATE "C"),
       array_agg(amount ORDER BY metric COLLATE "C", dimension COLLATE "C")
FROM pending_facts
GROUP BY "partition", "offset";

DROP TABLE pending_facts;
