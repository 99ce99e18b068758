-- How many emits separate the row from its producer's event (0: written by a producer), so
-- `limits.max_hops` can stop a chain of emits that never ends. Runs only if the column is
-- missing.
ALTER TABLE {table} ADD COLUMN chain_depth INT NOT NULL DEFAULT 0;
