-- SmartFlow's outbox table, column for column, with its two indexes.
CREATE TABLE IF NOT EXISTS {table} (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    biz_type      TEXT NOT NULL,
    service_name  TEXT NOT NULL DEFAULT '',
    topic         TEXT NOT NULL,
    message_key   TEXT NOT NULL DEFAULT '',
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL,
    retry_count   INTEGER NOT NULL DEFAULT 0,
    max_retry     INTEGER NOT NULL DEFAULT 20,
    next_retry_at TEXT NULL,
    last_error    TEXT NULL,
    published_at  TEXT NULL,
    consumed_at   TEXT NULL,
    created_at    TEXT NULL,
    updated_at    TEXT NULL
);
CREATE INDEX IF NOT EXISTS idx_{table}_status_next_retry_biz ON {table} (status, next_retry_at, biz_type);
CREATE INDEX IF NOT EXISTS idx_{table}_service_name ON {table} (service_name);
