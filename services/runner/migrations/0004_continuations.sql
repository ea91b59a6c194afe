-- A target that answers 202 finishes the attempt later through POST /api/v1/webhooks/continue.
ALTER TABLE trigger_runs ADD COLUMN awaiting_continue_since timestamptz;
