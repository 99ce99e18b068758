-- Switchyard additions. Each statement runs only if what it adds is missing (columns checked in
-- information_schema, indexes by their column list in pg_index), so an adopted SmartFlow table
-- that already has one of them is left as it is.
-- The index the claim order needs: SmartFlow's (status, next_retry_at, biz_type) does not serve
-- `ORDER BY next_retry_at, id`, so every claim sorted all pending rows.
CREATE INDEX idx_{table}_claim ON {table} (status, next_retry_at, id);
-- The content hash of the handler version that consumed the row.
ALTER TABLE {table} ADD COLUMN handler_version VARCHAR(64) NULL;
-- How many times a relay published the row (more than 1: a retry or a visibility-timeout
-- republish), so double publishes can be counted.
ALTER TABLE {table} ADD COLUMN publish_count INT NOT NULL DEFAULT 0;
