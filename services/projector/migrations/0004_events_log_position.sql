-- The dashboards' live tail reads new events by log position: after the last offset it saw, per
-- topic and partition (and finds the partitions by a skip scan of this index).
CREATE INDEX IF NOT EXISTS events_log_position ON events (topic, "partition", "offset");

-- The finance page reads the invoice and payment events of a window by time, index-only.
CREATE INDEX IF NOT EXISTS events_finance ON events (ts) INCLUDE (type, payload)
    WHERE type IN ('finance.invoice.generated', 'finance.payment.webhook');
