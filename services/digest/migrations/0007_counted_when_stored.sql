-- `counted` is now claimed when an event's facts are stored (counting.rs), not when a tick folds
-- them, so `pending_facts` holds only first copies of events not counted before. Facts stored by
-- the earlier version are brought to that shape: the first copy of each event (lowest partition
-- and offset) not yet counted is claimed and kept, every other pending fact is dropped, as the
-- earlier fold would have done.
WITH firsts AS (
    SELECT DISTINCT ON (event_id) event_id, day, "partition", "offset"
    FROM pending_facts
    ORDER BY event_id, "partition", "offset"
),
fresh AS (
    INSERT INTO counted (event_id, day)
    SELECT event_id, day FROM firsts
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
DELETE FROM pending_facts f
WHERE NOT EXISTS (
    SELECT 1 FROM firsts JOIN fresh USING (event_id)
    WHERE firsts."partition" = f."partition" AND firsts."offset" = f."offset"
);
