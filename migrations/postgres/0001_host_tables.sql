-- Switchyard's own tables on PostgreSQL. Outbox tables are per service and created from the
-- templates in outbox/ (one ledger row per table and template version).

-- Handler state: one key-value space per service, written only in consume transactions.
CREATE TABLE IF NOT EXISTS switchyard_state (
    service    VARCHAR(64)  NOT NULL,
    state_key  VARCHAR(512) NOT NULL,
    value      BYTEA        NOT NULL,
    updated_at TIMESTAMP(3) NOT NULL,
    PRIMARY KEY (service, state_key)
);

-- Which outbox-table templates were applied to which table.
CREATE TABLE IF NOT EXISTS switchyard_outbox_migrations (
    table_name VARCHAR(64)  NOT NULL,
    version    BIGINT       NOT NULL,
    applied_at TIMESTAMP(3) NOT NULL,
    PRIMARY KEY (table_name, version)
);
