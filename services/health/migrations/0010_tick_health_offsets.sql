-- Ticks also carry the end offsets of the status-change topic (ct.health.v1), for the digest;
-- the platform's clock consumer stores every tick the same way. The evaluator does not read them.
ALTER TABLE pending_ticks ADD COLUMN health_end BIGINT[] NOT NULL DEFAULT '{}';
