-- SmartFlow's business tables, the ones its handler components read and write through the
-- `sql` import (docs/smartflow.md says which route touches which table). SQLite.
-- Switchyard's migrations never create these: apply this file yourself, once, to the database
-- the host's database_url names (every statement is CREATE ... IF NOT EXISTS, so applying it
-- again is harmless):
--   python3 -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).executescript(open(sys.argv[2]).read())' \
--     smartflow.db examples/smartflow/schema/sqlite.sql
-- (or `sqlite3 smartflow.db < examples/smartflow/schema/sqlite.sql`). Times are DATETIME
-- columns holding RFC 3339 UTC text (what handlers bind).

-- task.urgency.promote.requested, task.record.requested, task.upsert.requested
-- priority: 1 important+urgent, 2 important, 3 urgent, 4 neither.
CREATE TABLE IF NOT EXISTS tasks (
    id                   INTEGER      NOT NULL PRIMARY KEY,
    user_id              BIGINT       NOT NULL,
    title                TEXT         NOT NULL DEFAULT '',
    priority             INTEGER      NOT NULL,
    urgency_threshold_at DATETIME     NULL,
    completed            BOOLEAN      NOT NULL DEFAULT FALSE,
    conversation_id      TEXT         NULL,
    created_at           DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at           DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_tasks_user ON tasks (user_id);

-- chat.history.persist.requested: one row per message; the same event stores one row.
CREATE TABLE IF NOT EXISTS chat_histories (
    id                         INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id                    BIGINT       NOT NULL,
    chat_id                    TEXT         NOT NULL,
    event_id                   TEXT         NOT NULL,
    role                       TEXT         NOT NULL,
    message                    TEXT         NOT NULL,
    reasoning_content          TEXT         NULL,
    reasoning_duration_seconds BIGINT       NULL,
    tokens_consumed            BIGINT       NOT NULL DEFAULT 0,
    created_at                 DATETIME     NOT NULL,
    CONSTRAINT uk_chat_histories_event UNIQUE (chat_id, event_id)
);
CREATE INDEX IF NOT EXISTS idx_chat_histories_chat ON chat_histories (user_id, chat_id);

-- chat.history.persist.requested (message count, last message time) and
-- chat.token.usage.adjust.requested (tokens_used += tokens_delta): one row per conversation.
CREATE TABLE IF NOT EXISTS agent_chats (
    chat_id         TEXT         NOT NULL PRIMARY KEY,
    user_id         BIGINT       NOT NULL,
    message_count   BIGINT       NOT NULL DEFAULT 0,
    last_message_at DATETIME     NULL,
    tokens_used     BIGINT       NOT NULL DEFAULT 0,
    created_at      DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_agent_chats_user ON agent_chats (user_id);

-- agent.state.snapshot.persist: upserted by conversation.
CREATE TABLE IF NOT EXISTS agent_state_snapshot_records (
    chat_id       TEXT         NOT NULL PRIMARY KEY,
    user_id       BIGINT       NOT NULL,
    phase         TEXT         NOT NULL,
    snapshot_json TEXT         NOT NULL,
    updated_at    DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- agent.timeline.persist.requested: unique (user_id, chat_id, seq); a row whose seq was taken
-- is stored at max + 1 and keeps the seq it asked for in requested_seq.
CREATE TABLE IF NOT EXISTS agent_timeline_events (
    id              INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id         BIGINT       NOT NULL,
    chat_id         TEXT         NOT NULL,
    seq             BIGINT       NOT NULL,
    requested_seq   BIGINT       NOT NULL,
    kind            TEXT         NOT NULL,
    role            TEXT         NULL,
    content         TEXT         NULL,
    payload_json    TEXT         NULL,
    tokens_consumed BIGINT       NOT NULL DEFAULT 0,
    created_at      DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT uk_agent_timeline_seq UNIQUE (user_id, chat_id, seq)
);
CREATE INDEX IF NOT EXISTS idx_agent_timeline_requested ON agent_timeline_events (user_id, chat_id, requested_seq);

-- memory.extract.requested: one job per idempotency key, created pending; SmartFlow's memory
-- worker claims pending jobs (status, next_retry_at) and retries one at most max_retry times.
CREATE TABLE IF NOT EXISTS memory_jobs (
    id              INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT         NOT NULL,
    status          TEXT         NOT NULL DEFAULT 'pending',
    user_id         BIGINT       NOT NULL,
    conversation_id TEXT         NOT NULL,
    source_role     TEXT         NOT NULL,
    source_text     TEXT         NOT NULL,
    occurred_at     DATETIME     NULL,
    payload_json    TEXT         NOT NULL,
    event_id        TEXT         NOT NULL,
    retry_count     INT          NOT NULL DEFAULT 0,
    max_retry       INT          NOT NULL DEFAULT 6,
    next_retry_at   DATETIME     NULL,
    last_error      TEXT         NULL,
    created_at      DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT uk_memory_jobs_key UNIQUE (idempotency_key)
);
CREATE INDEX IF NOT EXISTS idx_memory_jobs_due ON memory_jobs (status, next_retry_at);

-- active_schedule.triggered: the trigger row (written first by SmartFlow's scanner or API as
-- pending, or by the handler when the event is the first it hears of the trigger) and its
-- decision: pending -> processing -> preview_generated / closed / skipped / rejected / failed.
CREATE TABLE IF NOT EXISTS active_schedule_triggers (
    id           TEXT         NOT NULL PRIMARY KEY,
    user_id      BIGINT       NOT NULL,
    trigger_type TEXT         NOT NULL,
    source       TEXT         NOT NULL,
    target_type  TEXT         NOT NULL,
    target_id    TEXT         NOT NULL,
    status       TEXT         NOT NULL DEFAULT 'pending',
    reason       TEXT         NULL,
    preview_id   TEXT         NULL,
    dedupe_key   TEXT         NULL,
    requested_at DATETIME     NULL,
    event_id     TEXT         NULL,
    created_at   DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_active_schedule_triggers_user ON active_schedule_triggers (user_id, status);

-- active_schedule.triggered: the preview a preview_generated trigger opens in the assistant;
-- its id is the notification's preview_id.
CREATE TABLE IF NOT EXISTS active_schedule_previews (
    id              TEXT         NOT NULL PRIMARY KEY,
    trigger_id      TEXT         NOT NULL,
    user_id         BIGINT       NOT NULL,
    conversation_id TEXT         NOT NULL,
    summary_text    TEXT         NOT NULL,
    created_at      DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT uk_active_schedule_previews_trigger UNIQUE (trigger_id)
);

-- notification.feishu.requested / .retry.requested: one record per channel + dedupe key;
-- status pending -> sending -> sent / failed, dead once max_attempts sends failed.
CREATE TABLE IF NOT EXISTS notification_records (
    id            INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    channel       TEXT         NOT NULL,
    dedupe_key    TEXT         NOT NULL,
    user_id       BIGINT       NOT NULL,
    trigger_id    TEXT         NOT NULL,
    preview_id    TEXT         NOT NULL,
    target_url    TEXT         NOT NULL,
    content       TEXT         NOT NULL,
    status        TEXT         NOT NULL DEFAULT 'pending',
    attempt_count INT          NOT NULL DEFAULT 0,
    max_attempts  INT          NOT NULL DEFAULT 5,
    last_error    TEXT         NULL,
    requested_at  DATETIME     NOT NULL,
    sent_at       DATETIME     NULL,
    created_at    DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT uk_notification_records_dedupe UNIQUE (channel, dedupe_key)
);
CREATE INDEX IF NOT EXISTS idx_notification_records_user ON notification_records (user_id, status);

-- notification.channel.configure.requested (Switchyard addition): a user's Feishu webhook;
-- user_id 0 is the default for users without one.
CREATE TABLE IF NOT EXISTS notification_channels (
    user_id     BIGINT      NOT NULL PRIMARY KEY,
    webhook_url TEXT        NOT NULL,
    updated_at  DATETIME    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
