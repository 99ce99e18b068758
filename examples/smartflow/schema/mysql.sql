-- SmartFlow's business tables, the ones its handler components read and write through the
-- `sql` import (docs/smartflow.md says which route touches which table). MariaDB / MySQL.
-- Switchyard's migrations never create these: apply this file yourself, once, to the database
-- the host's database_url names (every statement is CREATE ... IF NOT EXISTS, so applying it
-- again is harmless):
--   mariadb -h 127.0.0.1 -u root smartflow < examples/smartflow/schema/mysql.sql
-- Times are DATETIME(3) in UTC (handlers bind RFC 3339 text). utf8mb4_bin: ids, idempotency
-- and dedupe keys compare byte for byte, so "K1" and "k1" are two keys.

-- task.urgency.promote.requested, task.record.requested, task.upsert.requested
-- priority: 1 important+urgent, 2 important, 3 urgent, 4 neither.
CREATE TABLE IF NOT EXISTS tasks (
    id                   BIGINT       NOT NULL PRIMARY KEY,
    user_id              BIGINT       NOT NULL,
    title                VARCHAR(255) NOT NULL DEFAULT '',
    priority             SMALLINT     NOT NULL,
    urgency_threshold_at DATETIME(3)  NULL,
    completed            BOOLEAN      NOT NULL DEFAULT FALSE,
    conversation_id      VARCHAR(128) NULL,
    created_at           DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at           DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY idx_tasks_user (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- chat.history.persist.requested: one row per message; the same event stores one row.
CREATE TABLE IF NOT EXISTS chat_histories (
    id                         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id                    BIGINT       NOT NULL,
    chat_id                    VARCHAR(128) NOT NULL,
    event_id                   VARCHAR(64)  NOT NULL,
    role                       VARCHAR(16)  NOT NULL,
    message                    MEDIUMTEXT   NOT NULL,
    reasoning_content          MEDIUMTEXT   NULL,
    reasoning_duration_seconds BIGINT       NULL,
    tokens_consumed            BIGINT       NOT NULL DEFAULT 0,
    created_at                 DATETIME(3)  NOT NULL,
    UNIQUE KEY uk_chat_histories_event (chat_id, event_id),
    KEY idx_chat_histories_chat (user_id, chat_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- chat.history.persist.requested (message count, last message time) and
-- chat.token.usage.adjust.requested (tokens_used += tokens_delta): one row per conversation.
CREATE TABLE IF NOT EXISTS agent_chats (
    chat_id         VARCHAR(128) NOT NULL PRIMARY KEY,
    user_id         BIGINT       NOT NULL,
    message_count   BIGINT       NOT NULL DEFAULT 0,
    last_message_at DATETIME(3)  NULL,
    tokens_used     BIGINT       NOT NULL DEFAULT 0,
    created_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY idx_agent_chats_user (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- agent.state.snapshot.persist: upserted by conversation.
CREATE TABLE IF NOT EXISTS agent_state_snapshot_records (
    chat_id       VARCHAR(128) NOT NULL PRIMARY KEY,
    user_id       BIGINT       NOT NULL,
    phase         VARCHAR(64)  NOT NULL,
    snapshot_json MEDIUMTEXT   NOT NULL,
    updated_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- agent.timeline.persist.requested: unique (user_id, chat_id, seq); a row whose seq was taken
-- is stored at max + 1 and keeps the seq it asked for in requested_seq.
CREATE TABLE IF NOT EXISTS agent_timeline_events (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id         BIGINT       NOT NULL,
    chat_id         VARCHAR(128) NOT NULL,
    seq             BIGINT       NOT NULL,
    requested_seq   BIGINT       NOT NULL,
    kind            VARCHAR(64)  NOT NULL,
    role            VARCHAR(16)  NULL,
    content         MEDIUMTEXT   NULL,
    payload_json    MEDIUMTEXT   NULL,
    tokens_consumed BIGINT       NOT NULL DEFAULT 0,
    created_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_agent_timeline_seq (user_id, chat_id, seq),
    KEY idx_agent_timeline_requested (user_id, chat_id, requested_seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- memory.extract.requested: one job per idempotency key, created pending; SmartFlow's memory
-- worker claims pending jobs (status, next_retry_at) and retries one at most max_retry times.
CREATE TABLE IF NOT EXISTS memory_jobs (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    idempotency_key VARCHAR(256) NOT NULL,
    status          VARCHAR(16)  NOT NULL DEFAULT 'pending',
    user_id         BIGINT       NOT NULL,
    conversation_id VARCHAR(128) NOT NULL,
    source_role     VARCHAR(32)  NOT NULL,
    source_text     MEDIUMTEXT   NOT NULL,
    occurred_at     DATETIME(3)  NULL,
    payload_json    MEDIUMTEXT   NOT NULL,
    event_id        VARCHAR(64)  NOT NULL,
    retry_count     INT          NOT NULL DEFAULT 0,
    max_retry       INT          NOT NULL DEFAULT 6,
    next_retry_at   DATETIME(3)  NULL,
    last_error      TEXT         NULL,
    created_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_memory_jobs_key (idempotency_key),
    KEY idx_memory_jobs_due (status, next_retry_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- active_schedule.triggered: the trigger row (written first by SmartFlow's scanner or API as
-- pending, or by the handler when the event is the first it hears of the trigger) and its
-- decision: pending -> processing -> preview_generated / closed / skipped / rejected / failed.
CREATE TABLE IF NOT EXISTS active_schedule_triggers (
    id           VARCHAR(128) NOT NULL PRIMARY KEY,
    user_id      BIGINT       NOT NULL,
    trigger_type VARCHAR(32)  NOT NULL,
    source       VARCHAR(32)  NOT NULL,
    target_type  VARCHAR(32)  NOT NULL,
    target_id    VARCHAR(64)  NOT NULL,
    status       VARCHAR(32)  NOT NULL DEFAULT 'pending',
    reason       TEXT         NULL,
    preview_id   VARCHAR(160) NULL,
    dedupe_key   VARCHAR(255) NULL,
    requested_at DATETIME(3)  NULL,
    event_id     VARCHAR(64)  NULL,
    created_at   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY idx_active_schedule_triggers_user (user_id, status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- active_schedule.triggered: the preview a preview_generated trigger opens in the assistant;
-- its id is the notification's preview_id.
CREATE TABLE IF NOT EXISTS active_schedule_previews (
    id              VARCHAR(160) NOT NULL PRIMARY KEY,
    trigger_id      VARCHAR(128) NOT NULL,
    user_id         BIGINT       NOT NULL,
    conversation_id VARCHAR(128) NOT NULL,
    summary_text    TEXT         NOT NULL,
    created_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_active_schedule_previews_trigger (trigger_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- notification.feishu.requested / .retry.requested: one record per channel + dedupe key;
-- status pending -> sending -> sent / failed, dead once max_attempts sends failed.
CREATE TABLE IF NOT EXISTS notification_records (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    channel       VARCHAR(32)  NOT NULL,
    dedupe_key    VARCHAR(255) NOT NULL,
    user_id       BIGINT       NOT NULL,
    trigger_id    VARCHAR(128) NOT NULL,
    preview_id    VARCHAR(160) NOT NULL,
    target_url    TEXT         NOT NULL,
    content       TEXT         NOT NULL,
    status        VARCHAR(16)  NOT NULL DEFAULT 'pending',
    attempt_count INT          NOT NULL DEFAULT 0,
    max_attempts  INT          NOT NULL DEFAULT 5,
    last_error    TEXT         NULL,
    requested_at  DATETIME(3)  NOT NULL,
    sent_at       DATETIME(3)  NULL,
    created_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_notification_records_dedupe (channel, dedupe_key),
    KEY idx_notification_records_user (user_id, status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- notification.channel.configure.requested (Switchyard addition): a user's Feishu webhook;
-- user_id 0 is the default for users without one.
CREATE TABLE IF NOT EXISTS notification_channels (
    user_id     BIGINT      NOT NULL PRIMARY KEY,
    webhook_url TEXT        NOT NULL,
    updated_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
