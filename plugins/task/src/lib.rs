//! SmartFlow's `task` service as a Switchyard handler component.
//!
//! State layout (the service's private key-value store):
//! - `task/<user_id>/<task_id>` → JSON [`Task`]: the task's priority quadrant (1 important+urgent,
//!   2 important, 3 urgent, 4 neither) and the instant after which it counts as urgent.
//!
//! Events:
//! - `task.record.requested` (v1): create or update a task (Switchyard addition: SmartFlow kept
//!   tasks in its own tables; here the store is the service's state).
//! - `task.urgency.promote.requested` (v1): SmartFlow's rule: clean the ids (positive, unique);
//!   none left or `user_id <= 0` → dead; for each task whose urgency threshold has passed at
//!   `triggered_at`, promote priority 2 → 1 and 4 → 3.

mod bindings {
    wit_bindgen::generate!({ world: "service-handler", path: "../../wit" });
}

use bindings::exports::switchyard::handler::handler::Guest;
use bindings::switchyard::handler::log::{Level, log};
use bindings::switchyard::handler::state;
use bindings::switchyard::handler::types::{Event, Outcome, RetryRequest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

struct Component;
bindings::export!(Component with_types_in bindings);

#[derive(Serialize, Deserialize)]
struct Task {
    id: i64,
    user_id: i64,
    #[serde(default)]
    title: String,
    priority: u8,
    /// RFC 3339; `None` means the task never becomes urgent by time alone.
    #[serde(default)]
    urgency_threshold_at: Option<String>,
}

#[derive(Deserialize)]
struct PromoteRequest {
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    task_ids: Vec<i64>,
    #[serde(default)]
    triggered_at: Option<String>,
}

impl Guest for Component {
    fn handle(event: Event) -> Outcome {
        if !matches!(event.event_version.as_str(), "" | "v1" | "1") {
            return Outcome::Dead(format!(
                "unsupported event_version {:?} for {}",
                event.event_version, event.event_type
            ));
        }
        let result = match event.event_type.as_str() {
            "task.urgency.promote.requested" => promote(&event.payload),
            "task.record.requested" => record(&event.payload),
            other => Err(Failure::Dead(format!("task handler does not handle {other}"))),
        };
        match result {
            Ok(()) => Outcome::Ack,
            Err(Failure::Dead(reason)) => Outcome::Dead(reason),
            Err(Failure::Retry(reason)) => Outcome::Retry(RetryRequest { reason, delay_ms: None }),
        }
    }
}

enum Failure {
    /// The payload can never succeed.
    Dead(String),
    /// The host refused a state operation; trying again may work.
    Retry(String),
}

fn parse_time(field: &str, value: &str) -> Result<OffsetDateTime, Failure> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| Failure::Dead(format!("{field} is not an RFC 3339 time ({value:?}): {e}")))
}

fn task_key(user_id: i64, task_id: i64) -> String {
    format!("task/{user_id}/{task_id}")
}

fn load_task(key: &str) -> Result<Option<Task>, Failure> {
    match state::get(key).map_err(Failure::Retry)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Failure::Dead(format!("stored task {key} is corrupt: {e}"))),
    }
}

fn store_task(key: &str, task: &Task) -> Result<(), Failure> {
    let bytes = serde_json::to_vec(task).map_err(|e| Failure::Dead(e.to_string()))?;
    state::set(key, &bytes).map_err(Failure::Retry)
}

fn promote(payload: &[u8]) -> Result<(), Failure> {
    let req: PromoteRequest = serde_json::from_slice(payload)
        .map_err(|e| Failure::Dead(format!("invalid task.urgency.promote.requested payload: {e}")))?;
    if req.user_id <= 0 {
        return Err(Failure::Dead(format!("user_id must be positive, got {}", req.user_id)));
    }
    let mut ids: Vec<i64> = Vec::with_capacity(req.task_ids.len());
    for id in req.task_ids {
        if id > 0 && !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(Failure::Dead("task_ids has no positive task id".into()));
    }
    let now = match req.triggered_at.as_deref() {
        Some(t) if !t.is_empty() => parse_time("triggered_at", t)?,
        _ => return Err(Failure::Dead("triggered_at is required".into())),
    };
    let mut promoted = 0;
    for id in ids {
        let key = task_key(req.user_id, id);
        let Some(mut task) = load_task(&key)? else { continue };
        let Some(threshold) = task.urgency_threshold_at.as_deref() else { continue };
        if parse_time("urgency_threshold_at", threshold)? > now {
            continue;
        }
        let new_priority = match task.priority {
            2 => 1,
            4 => 3,
            _ => continue,
        };
        task.priority = new_priority;
        store_task(&key, &task)?;
        promoted += 1;
    }
    log(Level::Info, &format!("promoted {promoted} task(s) of user {}", req.user_id));
    Ok(())
}

fn record(payload: &[u8]) -> Result<(), Failure> {
    let task: Task = serde_json::from_slice(payload)
        .map_err(|e| Failure::Dead(format!("invalid task.record.requested payload: {e}")))?;
    if task.user_id <= 0 || task.id <= 0 {
        return Err(Failure::Dead("task id and user_id must be positive".into()));
    }
    if !(1..=4).contains(&task.priority) {
        return Err(Failure::Dead(format!("priority must be 1..=4, got {}", task.priority)));
    }
    if let Some(t) = task.urgency_threshold_at.as_deref() {
        parse_time("urgency_threshold_at", t)?;
    }
    store_task(&task_key(task.user_id, task.id), &task)
}
