//! Chat history and token usage: SmartFlow's conversation and message tables.
//!
//! State layout:
//! - `chat/<conversation_id>` → [`Conversation`]: owner, message count, last message time,
//!   tokens used.
//! - `chat/<conversation_id>/message/<seq, 8 digits>` → [`Message`], seq = 1, 2, ... per
//!   conversation in arrival order (zero-padded so keys sort in order).
//! - `chat/<conversation_id>/event/<event_id>` → the seq stored for that event, so the same
//!   event enqueued twice stores one message.
//!
//! Ids are key segments encoded with [`seg`]. It never touches the timeline or snapshots.

use crate::bindings::switchyard::handler::emit::{FollowUp, emit};
use crate::bindings::switchyard::handler::types::Event;
use crate::kv;
use serde::{Deserialize, Serialize};
use smartflow_kit::{Failure, Step, dead, parse_payload, parse_time, positive, required, seg};

#[derive(Serialize, Deserialize, Default)]
pub struct Conversation {
    pub user_id: i64,
    pub message_count: u64,
    /// RFC 3339 `created_at` of the latest message that carried one.
    pub last_message_at: Option<String>,
    pub tokens_used: i64,
}

#[derive(Serialize, Deserialize)]
pub struct Message {
    pub seq: u64,
    pub event_id: String,
    pub user_id: i64,
    pub role: String,
    pub message: String,
    pub reasoning_content: Option<String>,
    pub reasoning_duration_seconds: Option<i64>,
    pub tokens_consumed: i64,
    pub created_at: Option<String>,
}

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
    /// Optional RFC 3339 time of the message; becomes the conversation's last message time.
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

pub fn conversation_key(conversation_id: &str) -> String {
    format!("chat/{}", seg(conversation_id))
}

pub fn persist_history(event: &Event) -> Step<()> {
    let req: HistoryRequest = parse_payload(&event.event_type, &event.payload)?;
    positive("user_id", req.user_id)?;
    let conversation_id = required("conversation_id", &req.conversation_id)?;
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
    if let Some(t) = req.created_at.as_deref() {
        parse_time("created_at", t)?;
    }
    let conv_key = conversation_key(conversation_id);
    let event_key = format!("{conv_key}/event/{}", seg(&event.event_id));
    if kv::get::<u64>(&event_key)?.is_some() {
        // The same event enqueued twice: the message is already stored (and its follow-up sent).
        return Ok(());
    }
    let mut conv: Conversation = kv::get(&conv_key)?.unwrap_or_default();
    if conv.message_count > 0 && conv.user_id != req.user_id {
        return dead(format!(
            "conversation {conversation_id:?} belongs to user {}, not {}",
            conv.user_id, req.user_id
        ));
    }
    conv.user_id = req.user_id;
    conv.message_count += 1;
    if req.created_at.is_some() {
        conv.last_message_at.clone_from(&req.created_at);
    }
    let seq = conv.message_count;
    let message = Message {
        seq,
        event_id: event.event_id.clone(),
        user_id: req.user_id,
        role: req.role.clone(),
        message: req.message.clone(),
        reasoning_content: req.reasoning_content,
        reasoning_duration_seconds: req.reasoning_duration_seconds,
        tokens_consumed: req.tokens_consumed,
        created_at: req.created_at.clone(),
    };
    kv::put(&format!("{conv_key}/message/{seq:08}"), &message)?;
    kv::put(&event_key, &seq)?;
    kv::put(&conv_key, &conv)?;
    if req.role == "user" {
        // SmartFlow's older chain: a user's words are a source for long-term memory.
        let payload = serde_json::json!({
            "user_id": req.user_id,
            "conversation_id": conversation_id,
            "source_role": "user",
            "source_text": req.message,
            "occurred_at": req.created_at,
            "idempotency_key": format!("chat:{conversation_id}:{}", event.event_id),
        });
        emit(&FollowUp {
            event_type: "memory.extract.requested".into(),
            event_version: String::new(),
            aggregate_id: conversation_id.to_owned(),
            message_key: req.user_id.to_string(),
            payload: payload.to_string().into_bytes(),
        })
        .map_err(|e| Failure::Retry(format!("emitting memory.extract.requested: {e}")))?;
    }
    Ok(())
}

pub fn adjust_usage(event: &Event) -> Step<()> {
    let req: UsageRequest = parse_payload(&event.event_type, &event.payload)?;
    positive("user_id", req.user_id)?;
    let conversation_id = required("conversation_id", &req.conversation_id)?;
    positive("tokens_delta", req.tokens_delta)?;
    let key = conversation_key(conversation_id);
    let mut conv: Conversation = kv::get(&key)?.unwrap_or_default();
    if conv.user_id == 0 {
        conv.user_id = req.user_id;
    }
    conv.tokens_used = conv.tokens_used.saturating_add(req.tokens_delta);
    kv::put(&key, &conv)
}
