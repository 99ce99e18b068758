//! SmartFlow's `memory` service as a Switchyard handler component, on SmartFlow's
//! `memory_jobs` table (DDL in `examples/smartflow/schema/`; the route grants
//! `memory_jobs = "rw"`).
//!
//! `memory.extract.requested` (v1): `user_id > 0`, non-empty `conversation_id` (at most 128
//! bytes), `source_role` (at most 32), `source_text` and `idempotency_key` (at most 256 bytes),
//! `occurred_at` RFC 3339 when given; anything else is dead. A valid request records one
//! `pending` job per idempotency key, holding the extraction payload as received and the event
//! id; the same key again (a second request for the same source) is a success that records
//! nothing (the table's unique key on `idempotency_key` says so, even between two hosts). It
//! never runs the extraction itself (SmartFlow's memory worker claims pending jobs) and never
//! emits.

use serde::Deserialize;
use smartflow_kit::db::{self, Insert};
use smartflow_kit::{Step, check_v1, dead, max_len, parse_payload, parse_time, positive, required};
use switchyard_sdk::{Event, Handler, HandlerResult, log};

/// Longest idempotency key accepted, bytes (`memory_jobs.idempotency_key VARCHAR(256)`).
const MAX_KEY_BYTES: usize = 256;

struct Component;
switchyard_sdk::handler!(Component);

#[derive(Deserialize)]
struct ExtractRequest {
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    conversation_id: String,
    #[serde(default)]
    source_role: String,
    #[serde(default)]
    source_text: String,
    occurred_at: Option<String>,
    #[serde(default)]
    idempotency_key: String,
}

impl Handler for Component {
    fn handle(event: &Event) -> HandlerResult {
        check_v1(&event.event_type, &event.event_version).and_then(|()| {
            match event.event_type.as_str() {
                "memory.extract.requested" => extract(event),
                other => dead(format!("the memory handler does not handle {other}")),
            }
        })
    }
}

fn extract(event: &Event) -> Step<()> {
    let req: ExtractRequest = parse_payload(&event.event_type, &event.payload)?;
    positive("user_id", req.user_id)?;
    let conversation_id = max_len(
        "conversation_id",
        required("conversation_id", &req.conversation_id)?,
        128,
    )?;
    let source_role = max_len(
        "source_role",
        required("source_role", &req.source_role)?,
        32,
    )?;
    required("source_text", &req.source_text)?;
    let key = max_len(
        "idempotency_key",
        required("idempotency_key", &req.idempotency_key)?,
        MAX_KEY_BYTES,
    )?;
    let occurred_at = match req.occurred_at.as_deref() {
        Some(t) => Some(parse_time("occurred_at", t)?),
        None => None,
    };
    let now = smartflow_kit::now();
    let payload = String::from_utf8_lossy(&event.payload);
    let inserted = db::insert(
        "INSERT INTO memory_jobs (idempotency_key, status, user_id, conversation_id, source_role, \
         source_text, occurred_at, payload_json, event_id, created_at, updated_at) \
         VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            key.into(),
            req.user_id.into(),
            conversation_id.into(),
            source_role.into(),
            req.source_text.as_str().into(),
            occurred_at.into(),
            payload.as_ref().into(),
            event.event_id.as_str().into(),
            now.into(),
            now.into(),
        ],
    )?;
    if let Insert::Conflict(_) = inserted {
        // One job per idempotency key: the source was already recorded.
        log::info(&format!("memory job {key:?} already recorded: nothing new"));
    }
    Ok(())
}
