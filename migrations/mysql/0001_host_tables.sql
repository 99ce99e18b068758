-- Switchyard's own tables on MySQL/MariaDB. Outbox tables are per service and created from the
-- templates in outbox/ (one ledger row per table and template version).

-- Handler state: one key-value space per service, written only in consume transactions.
CREATE TABLE IF NOT EXISTS switchyard_state (
    service    VARCHAR(64)  NOT NULL,
    state_key  VARCHAR(512) NOT NULL,
    value      LONGBLOB     NOT NULL,
    updated_at DATETIME(3)  NOT NULL,
    PRIMARY KEY (service, state_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Which outbox-table templates were applied to which table.
CREATE TABLE IF NOT EXISTS switchyard_outbox_migrations (
    table_name VARCHAR(64) NOT NULL,
    version    BIGINT      NOT NULL,
    applied_at DATETIME(3) NOT NULL,
    PRIMARY KEY (table_name, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
