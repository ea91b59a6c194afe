-- Completion callbacks: where to call when the run ends, and when the call was acknowledged.
ALTER TABLE trigger_runs ADD COLUMN on_complete text, ADD COLUMN on_fail text, ADD COLUMN callback_delivered_at timestamptz;
CREATE INDEX trigger_runs_callbacks_owed ON trigger_runs (completed_at)
    WHERE callback_delivered_at IS NULL AND (on_complete IS NOT NULL OR on_fail IS NOT NULL)
      AND status IN ('success', 'failed', 'cancelled');
