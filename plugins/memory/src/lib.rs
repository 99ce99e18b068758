//! SmartFlow's `memory` service as a Switchyard handler component.
//!
//! Owns the memory extraction job table, kept in the service's private state store:
//! - `job/<idempotency_key>` → [`Job`]: one pending extraction job per idempotency key; the same
//!   key again (a second request for the same source) is a success that stores nothing.
//!
//! `memory.extract.requested` (v1): `user_id > 0`, non-empty `conversation_id`, `source_role`,
//! `source_text` and `idempotency_key` (at most 256 bytes), `occurred_at` RFC 3339 when given;
//! anything else is dead. It never runs the extraction itself (SmartFlow's LLM worker picks up
//! pending jobs) and never emits.

mod bindings {
    wit_bindgen::generate!({ world: "service-handler", path: "../../wit" });
}

use bindings::exports::switchyard::handler::handler::Guest;
use bindings::switchyard::handler::state;
use bindings::switchyard::handler::types::{Event, Outcome, RetryRequest};
use serde::{Deserialize, Serialize};
use smartflow_kit::{
    Failure, Step, check_v1, dead, parse_payload, parse_time, positive, required, seg,
};

/// Longest idempotency key accepted, bytes (it becomes part of a state key).
const MAX_KEY_BYTES: usize = 256;

struct Component;
bindings::export!(Component with_types_in bindings);

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

/// A stored extraction job; `status` is `pending` until SmartFlow's worker takes it.
#[derive(Serialize, Deserialize)]
struct Job {
    status: String,
    user_id: i64,
    conversation_id: String,
    source_role: String,
    source_text: String,
    occurred_at: Option<String>,
    /// The event that created the job.
    event_id: String,
}

impl Guest for Component {
    fn handle(event: Event) -> Outcome {
        let result = check_v1(&event.event_type, &event.event_version).and_then(|()| {
            match event.event_type.as_str() {
                "memory.extract.requested" => extract(&event),
                other => dead(format!("the memory handler does not handle {other}")),
            }
        });
        match result {
            Ok(()) => Outcome::Ack,
            Err(Failure::Dead(reason)) => Outcome::Dead(reason),
            Err(Failure::Retry(reason)) => Outcome::Retry(RetryRequest {
                reason,
                delay_ms: None,
            }),
        }
    }
}

fn extract(event: &Event) -> Step<()> {
    let req: ExtractRequest = parse_payload(&event.event_type, &event.payload)?;
    positive("user_id", req.user_id)?;
    let conversation_id = required("conversation_id", &req.conversation_id)?;
    let source_role = required("source_role", &req.source_role)?;
    required("source_text", &req.source_text)?;
    let key = required("idempotency_key", &req.idempotency_key)?;
    if key.len() > MAX_KEY_BYTES {
        return dead(format!(
            "idempotency_key is {} bytes, at most {MAX_KEY_BYTES} are accepted",
            key.len()
        ));
    }
    if let Some(t) = req.occurred_at.as_deref() {
        parse_time("occurred_at", t)?;
    }
    let job_key = format!("job/{}", seg(key));
    if state::get(&job_key).map_err(Failure::Retry)?.is_some() {
        // One job per idempotency key: the source was already recorded.
        return Ok(());
    }
    let job = Job {
        status: "pending".into(),
        user_id: req.user_id,
        conversation_id: conversation_id.to_owned(),
        source_role: source_role.to_owned(),
        source_text: req.source_text,
        occurred_at: req.occurred_at,
        event_id: event.event_id.clone(),
    };
    let bytes = serde_json::to_vec(&job).map_err(|e| Failure::Dead(e.to_string()))?;
    state::set(&job_key, &bytes).map_err(Failure::Retry)
}
