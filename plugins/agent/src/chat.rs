//! Chat history and token usage: SmartFlow's `chat_histories` (one row per message) and
//! `agent_chats` (one row per conversation: owner, message count, last message time, tokens
//! used). It never touches the timeline or snapshots.
//!
//! A message row carries the id of the event that stored it, unique per conversation, so the
//! same event enqueued twice stores one message and emits one memory request.

use serde::Deserialize;
use smartflow_kit::db::{self, Insert};
use smartflow_kit::{Step, dead, max_len, parse_payload, parse_time, positive, required};
use switchyard_sdk::{Event, emit};
use time::OffsetDateTime;

#[derive(Deserialize)]
struct HistoryRequest {
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    conversation_id: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    message: String,
    reasoning_content: Option<String>,
    reasoning_duration_seconds: Option<i64>,
    #[serde(default)]
    tokens_consumed: i64,
    /// Optional RFC 3339 time of the message (else the consume-time clock); becomes the
    /// conversation's last message time.
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct UsageRequest {
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    conversation_id: String,
    #[serde(default)]
    tokens_delta: i64,
}

/// Roles a stored chat message may have.
const ROLES: [&str; 3] = ["user", "assistant", "system"];

/// Conversation ids fit `chat_id VARCHAR(128)`.
pub const MAX_CHAT_ID: usize = 128;

pub fn persist_history(event: &Event) -> Step<()> {
    let req: HistoryRequest = parse_payload(&event.event_type, &event.payload)?;
    positive("user_id", req.user_id)?;
    let chat_id = max_len(
        "conversation_id",
        required("conversation_id", &req.conversation_id)?,
        MAX_CHAT_ID,
    )?;
    if !ROLES.contains(&req.role.as_str()) {
        return dead(format!(
            "role must be one of user, assistant, system; got {:?}",
            req.role
        ));
    }
    required("message", &req.message)?;
    if req.tokens_consumed < 0 {
        return dead(format!(
            "tokens_consumed must not be negative, got {}",
            req.tokens_consumed
        ));
    }
    if let Some(secs) = req.reasoning_duration_seconds
        && secs < 0
    {
        return dead(format!(
            "reasoning_duration_seconds must not be negative, got {secs}"
        ));
    }
    let now = smartflow_kit::now();
    let created_at = match req.created_at.as_deref() {
        Some(t) => parse_time("created_at", t)?,
        None => now,
    };
    if let Some(owner) = owner_with_messages(chat_id)?
        && owner != req.user_id
    {
        return dead(format!(
            "conversation {chat_id:?} belongs to user {owner}, not {}",
            req.user_id
        ));
    }
    let stored = db::insert(
        "INSERT INTO chat_histories (user_id, chat_id, event_id, role, message, \
         reasoning_content, reasoning_duration_seconds, tokens_consumed, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            req.user_id.into(),
            chat_id.into(),
            event.event_id.as_str().into(),
            req.role.as_str().into(),
            req.message.as_str().into(),
            req.reasoning_content.as_deref().into(),
            req.reasoning_duration_seconds.into(),
            req.tokens_consumed.into(),
            created_at.into(),
        ],
    )?;
    if let Insert::Conflict(_) = stored {
        // The same event enqueued twice: the message is already stored (and its follow-up sent).
        return Ok(());
    }
    count_message(chat_id, req.user_id, created_at, now)?;
    if req.role == "user" {
        // SmartFlow's older chain: a user's words are a source for long-term memory.
        let payload = serde_json::json!({
            "user_id": req.user_id,
            "conversation_id": chat_id,
            "source_role": "user",
            "source_text": req.message,
            "occurred_at": req.created_at,
            "idempotency_key": format!("chat:{chat_id}:{}", event.event_id),
        });
        emit::event("memory.extract.requested", &payload)
            .aggregate(chat_id)
            .key(req.user_id)
            .send()?;
    }
    Ok(())
}

/// The owner of a conversation that already has messages (one created by a token adjustment
/// alone has no messages and belongs to whoever writes first).
fn owner_with_messages(chat_id: &str) -> Step<Option<i64>> {
    let rows = db::query(
        "SELECT user_id, message_count FROM agent_chats WHERE chat_id = ?",
        &[chat_id.into()],
    )?;
    match rows.first() {
        Some(row) if row.i64("message_count")? > 0 => Ok(Some(row.i64("user_id")?)),
        _ => Ok(None),
    }
}

/// The conversation's row, created when it is the first thing heard of it.
fn ensure_chat(chat_id: &str, user_id: i64, now: OffsetDateTime) -> Step<()> {
    let exists = !db::query(
        "SELECT chat_id FROM agent_chats WHERE chat_id = ?",
        &[chat_id.into()],
    )?
    .is_empty();
    if !exists {
        // A conflict means another writer created it meanwhile: the row is there either way.
        db::insert(
            "INSERT INTO agent_chats (chat_id, user_id, message_count, tokens_used, \
             created_at, updated_at) VALUES (?, ?, 0, 0, ?, ?)",
            &[chat_id.into(), user_id.into(), now.into(), now.into()],
        )?;
    }
    Ok(())
}

/// SmartFlow's counters: one more message, and the conversation's last message time.
fn count_message(
    chat_id: &str,
    user_id: i64,
    created_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Step<()> {
    ensure_chat(chat_id, user_id, now)?;
    db::execute(
        "UPDATE agent_chats SET user_id = ?, message_count = message_count + 1, \
         last_message_at = ?, updated_at = ? WHERE chat_id = ?",
        &[
            user_id.into(),
            created_at.into(),
            now.into(),
            chat_id.into(),
        ],
    )
    .map(drop)
}

pub fn adjust_usage(event: &Event) -> Step<()> {
    let req: UsageRequest = parse_payload(&event.event_type, &event.payload)?;
    positive("user_id", req.user_id)?;
    let chat_id = max_len(
        "conversation_id",
        required("conversation_id", &req.conversation_id)?,
        MAX_CHAT_ID,
    )?;
    positive("tokens_delta", req.tokens_delta)?;
    let now = smartflow_kit::now();
    ensure_chat(chat_id, req.user_id, now)?;
    db::execute(
        "UPDATE agent_chats SET tokens_used = tokens_used + ?, updated_at = ? WHERE chat_id = ?",
        &[req.tokens_delta.into(), now.into(), chat_id.into()],
    )
    .map(drop)
}
