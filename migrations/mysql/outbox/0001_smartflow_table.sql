-- SmartFlow's outbox table, column for column, with its two indexes. On a database where
-- SmartFlow already created the table this is a no-op: the table is adopted as it is.
CREATE TABLE IF NOT EXISTS {table} (
    id            BIGINT       NOT NULL AUTO_INCREMENT,
    biz_type      VARCHAR(64)  NOT NULL,
    service_name  VARCHAR(64)  NOT NULL DEFAULT '',
    topic         VARCHAR(128) NOT NULL,
    message_key   VARCHAR(128) NOT NULL DEFAULT '',
    payload       LONGTEXT     NOT NULL,
    status        VARCHAR(32)  NOT NULL,
    retry_count   INT          NOT NULL DEFAULT 0,
    max_retry     INT          NOT NULL DEFAULT 20,
    next_retry_at DATETIME(3)  NULL,
    last_error    TEXT         NULL,
    published_at  DATETIME(3)  NULL,
    consumed_at   DATETIME(3)  NULL,
    created_at    DATETIME(3)  NULL,
    updated_at    DATETIME(3)  NULL,
    PRIMARY KEY (id),
    KEY idx_status_next_retry_biz (status, next_retry_at, biz_type),
    KEY idx_service_name (service_name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
