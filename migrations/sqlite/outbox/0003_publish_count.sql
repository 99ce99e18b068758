-- How many times the relay published the row (more than 1: a retry or a visibility-timeout
-- republish), so double publishes can be counted.
ALTER TABLE {table} ADD COLUMN publish_count INTEGER NOT NULL DEFAULT 0;
