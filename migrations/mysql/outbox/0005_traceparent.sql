-- The W3C trace context the row continues (`00-<trace id>-<span id>-<flags>`, 55 characters
-- in version 00): written by the host's enqueue and by every emit, readable and writable by
-- any other producer (e.g. SmartFlow's Go services with OpenTelemetry's propagator). NULL: no
-- trace. Runs only if the column is missing, so an adopted SmartFlow table gains it in place.
ALTER TABLE {table} ADD COLUMN traceparent VARCHAR(64) NULL;
