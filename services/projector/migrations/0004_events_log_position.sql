-- The dashboards' live tail reads new events by log position: after the last offset it saw, per
-- topic and partition (and finds the partitions by a skip scan of this index).
CREATE INDEX IF NOT EXISTS events_log_position ON events (topic, "partition", "offset");
