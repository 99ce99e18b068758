-- Switchyard additions: the index the claim order needs (SmartFlow's index does not serve
-- `ORDER BY next_retry_at, id`), and the content hash of the handler version that consumed
-- the row.
CREATE INDEX IF NOT EXISTS idx_{table}_claim ON {table} (status, next_retry_at, id);
ALTER TABLE {table} ADD COLUMN handler_version TEXT NULL;
