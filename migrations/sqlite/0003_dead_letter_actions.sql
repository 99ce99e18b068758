-- What operators did to dead rows (`switchyard dead requeue` / `dead purge`, issue 16): one row
-- per outbox row acted on, written in the transaction that changed it, with who, when, why and
-- the row's attempts and last error as they were (a requeue clears them on the row itself).
CREATE TABLE IF NOT EXISTS switchyard_dead_letter_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    action      TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    table_name  TEXT    NOT NULL,
    row_id      INTEGER NOT NULL,
    biz_type    TEXT    NOT NULL,
    retry_count INTEGER NOT NULL,
    last_error  TEXT    NULL,
    actor       TEXT    NOT NULL,
    note        TEXT    NOT NULL,
    acted_at    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_switchyard_dead_letter_actions_row
    ON switchyard_dead_letter_actions (table_name, row_id);
