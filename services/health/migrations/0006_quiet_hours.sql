-- Quiet hours: notifications decided in them are kept `held` (a decision, in the checksums),
-- then summarised in one notification per channel at the first tick after they end. A summary
-- belongs to no single alert, so notifications no longer reference alerts.
ALTER TABLE notifications DROP CONSTRAINT notifications_alert_id_fkey;
ALTER TABLE notifications
    ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN summarised_at TIMESTAMPTZ;
CREATE INDEX notifications_held ON notifications (channel, id) WHERE held AND summarised_at IS NULL;
