-- What operators did to dead rows (`switchyard dead requeue` / `dead purge`, issue 16): one row
-- per outbox row acted on, written in the transaction that changed it, with who, when, why and
-- the row's attempts and last error as they were (a requeue clears them on the row itself).
CREATE TABLE IF NOT EXISTS switchyard_dead_letter_actions (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    action      VARCHAR(16)  NOT NULL,
    service     VARCHAR(64)  NOT NULL,
    table_name  VARCHAR(64)  NOT NULL,
    row_id      BIGINT       NOT NULL,
    biz_type    VARCHAR(255) NOT NULL,
    retry_count INT          NOT NULL,
    last_error  TEXT         NULL,
    actor       VARCHAR(255) NOT NULL,
    note        TEXT         NOT NULL,
    acted_at    DATETIME(3)  NOT NULL,
    PRIMARY KEY (id),
    KEY idx_switchyard_dead_letter_actions_row (table_name, row_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
