-- Switchyard's own tables on SQLite. Outbox tables are per service and created from the
-- templates in outbox/ (one ledger row per table and template version).

-- Handler state: one key-value space per service, written only in consume transactions.
CREATE TABLE IF NOT EXISTS switchyard_state (
    service    TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    value      BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (service, state_key)
);

-- Which outbox-table templates were applied to which table.
CREATE TABLE IF NOT EXISTS switchyard_outbox_migrations (
    table_name TEXT NOT NULL,
    version    INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (table_name, version)
);
