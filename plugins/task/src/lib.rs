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
//! - `task.upsert.requested` (v1, Switchyard addition, the start of SmartFlow's trigger chain):
//!   record or update a task as seen at `checked_at`, applying the same promotion when its
//!   threshold has passed; when the task thereby becomes important and urgent (priority 1, not
//!   done, and it was not priority 1 before), emit `active_schedule.triggered` (version `"1"`,
//!   `important_urgent_task` / `worker_due_job` / `task_item`) in the same transaction. A task
//!   that stays urgent triggers nothing new, so a repeated upsert is harmless.

mod bindings {
    wit_bindgen::generate!({ world: "service-handler", path: "../../wit" });
}

use bindings::exports::switchyard::handler::handler::Guest;
use bindings::switchyard::handler::emit::{FollowUp, emit};
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
    /// A done task never triggers the scheduler.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    done: bool,
    /// The assistant conversation the task belongs to; the scheduler opens its preview there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation_id: Option<String>,
}

#[derive(Deserialize)]
struct UpsertRequest {
    #[serde(flatten)]
    task: Task,
    #[serde(default)]
    checked_at: Option<String>,
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
            "task.upsert.requested" => upsert(&event.payload),
            other => Err(Failure::Dead(format!(
                "task handler does not handle {other}"
            ))),
        };
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
    let req: PromoteRequest = serde_json::from_slice(payload).map_err(|e| {
        Failure::Dead(format!(
            "invalid task.urgency.promote.requested payload: {e}"
        ))
    })?;
    if req.user_id <= 0 {
        return Err(Failure::Dead(format!(
            "user_id must be positive, got {}",
            req.user_id
        )));
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
        let Some(mut task) = load_task(&key)? else {
            continue;
        };
        let Some(threshold) = task.urgency_threshold_at.as_deref() else {
            continue;
        };
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
    log(
        Level::Info,
        &format!("promoted {promoted} task(s) of user {}", req.user_id),
    );
    Ok(())
}

fn record(payload: &[u8]) -> Result<(), Failure> {
    let task: Task = serde_json::from_slice(payload)
        .map_err(|e| Failure::Dead(format!("invalid task.record.requested payload: {e}")))?;
    check_task(&task)?;
    store_task(&task_key(task.user_id, task.id), &task)
}

fn check_task(task: &Task) -> Result<(), Failure> {
    if task.user_id <= 0 || task.id <= 0 {
        return Err(Failure::Dead("task id and user_id must be positive".into()));
    }
    if !(1..=4).contains(&task.priority) {
        return Err(Failure::Dead(format!(
            "priority must be 1..=4, got {}",
            task.priority
        )));
    }
    if let Some(t) = task.urgency_threshold_at.as_deref() {
        parse_time("urgency_threshold_at", t)?;
    }
    Ok(())
}

fn upsert(payload: &[u8]) -> Result<(), Failure> {
    let req: UpsertRequest = serde_json::from_slice(payload)
        .map_err(|e| Failure::Dead(format!("invalid task.upsert.requested payload: {e}")))?;
    let mut task = req.task;
    check_task(&task)?;
    let checked_at = match req.checked_at.as_deref() {
        Some(t) if !t.is_empty() => parse_time("checked_at", t)?,
        _ => {
            return Err(Failure::Dead(
                "checked_at is required (an RFC 3339 time)".into(),
            ));
        }
    };
    let key = task_key(task.user_id, task.id);
    let was_urgent = load_task(&key)?.is_some_and(|t| t.priority == 1 && !t.done);
    if let Some(threshold) = task.urgency_threshold_at.as_deref()
        && parse_time("urgency_threshold_at", threshold)? <= checked_at
    {
        task.priority = match task.priority {
            2 => 1,
            4 => 3,
            p => p,
        };
    }
    let is_urgent = task.priority == 1 && !task.done;
    if is_urgent && !was_urgent {
        let requested_at = checked_at
            .format(&Rfc3339)
            .map_err(|e| Failure::Dead(e.to_string()))?;
        let trigger = serde_json::json!({
            "trigger_id": format!("task-{}-{}-{}", task.user_id, task.id, checked_at.unix_timestamp()),
            "user_id": task.user_id,
            "trigger_type": "important_urgent_task",
            "source": "worker_due_job",
            "target_type": "task_item",
            "target_id": task.id,
            "requested_at": requested_at,
            "conversation_id": task.conversation_id.clone().unwrap_or_default(),
            "title": task.title,
        });
        emit(&FollowUp {
            event_type: "active_schedule.triggered".into(),
            event_version: "1".into(),
            aggregate_id: task.id.to_string(),
            message_key: task.user_id.to_string(),
            payload: trigger.to_string().into_bytes(),
        })
        .map_err(|e| Failure::Retry(format!("emitting active_schedule.triggered: {e}")))?;
        log(
            Level::Info,
            &format!("task {} of user {} became urgent", task.id, task.user_id),
        );
    }
    store_task(&key, &task)
}
