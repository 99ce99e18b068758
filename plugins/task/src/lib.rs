//! SmartFlow's `task` service as a Switchyard handler component, on SmartFlow's `tasks` table
//! (DDL in `examples/smartflow/schema/`; the route grants `tasks = "rw"`).
//!
//! A task's priority is its quadrant: 1 important+urgent, 2 important, 3 urgent, 4 neither;
//! `urgency_threshold_at` is the instant after which it counts as urgent; a completed task is
//! never promoted and never triggers the scheduler.
//!
//! Events (every one v1: `""`, `"v1"` or `"1"`):
//! - `task.urgency.promote.requested`: SmartFlow's rule: clean the ids (positive, unique); none
//!   left or `user_id <= 0` → dead; promote priority 2 → 1 and 4 → 3 for the user's tasks whose
//!   urgency threshold has passed on the consume-time clock (SmartFlow's `time.Now()`; the
//!   payload's `triggered_at`, optional, is checked and logged but decides nothing). Ids that
//!   are not the user's tasks are left alone.
//! - `task.record.requested` (Switchyard addition): create or update a task row.
//! - `task.upsert.requested` (Switchyard addition, the start of SmartFlow's trigger chain):
//!   record or update a task as seen at `checked_at`, applying the same promotion when its
//!   threshold has passed at `checked_at`; when the task thereby becomes important and urgent
//!   (priority 1, not completed, and it was not before), emit `active_schedule.triggered`
//!   (version `"1"`, `important_urgent_task` / `worker_due_job` / `task_pool`, as SmartFlow's
//!   scanner writes a due task's trigger) in the same transaction. A task that stays urgent
//!   triggers nothing new, so a repeated upsert is harmless.

mod promotion;
mod store;

use serde::Deserialize;
use smartflow_kit::{Step, check_v1, dead, max_len, parse_payload, parse_time, rfc3339};
use store::Task;
use switchyard_sdk::{Event, Handler, HandlerResult, emit, log};

struct Component;
switchyard_sdk::handler!(Component);

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

impl Handler for Component {
    fn handle(event: &Event) -> HandlerResult {
        check_v1(&event.event_type, &event.event_version).and_then(|()| {
            match event.event_type.as_str() {
                "task.urgency.promote.requested" => promote(event),
                "task.record.requested" => record(event),
                "task.upsert.requested" => upsert(event),
                other => dead(format!("task handler does not handle {other}")),
            }
        })
    }
}

fn promote(event: &Event) -> Step<()> {
    let req: PromoteRequest = parse_payload(&event.event_type, &event.payload)?;
    if req.user_id <= 0 {
        return dead(format!("user_id must be positive, got {}", req.user_id));
    }
    let mut ids: Vec<i64> = Vec::with_capacity(req.task_ids.len());
    for id in req.task_ids {
        if id > 0 && !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return dead("task_ids has no positive task id");
    }
    if let Some(t) = req.triggered_at.as_deref().filter(|t| !t.is_empty()) {
        parse_time("triggered_at", t)?;
    }
    let now = smartflow_kit::now();
    let promoted = store::promote_due(req.user_id, &ids, now)?;
    log::info(&format!(
        "promoted {promoted} of {} task(s) of user {} at {} (triggered_at {})",
        ids.len(),
        req.user_id,
        rfc3339(now),
        req.triggered_at.as_deref().unwrap_or("not given")
    ));
    Ok(())
}

fn check_task(task: &Task) -> Step<()> {
    if task.user_id <= 0 || task.id <= 0 {
        return dead("task id and user_id must be positive");
    }
    if !(1..=4).contains(&task.priority) {
        return dead(format!("priority must be 1..=4, got {}", task.priority));
    }
    max_len("title", &task.title, 255)?;
    if let Some(c) = &task.conversation_id {
        max_len("conversation_id", c, 128)?;
    }
    if let Some(t) = task.urgency_threshold_at.as_deref() {
        parse_time("urgency_threshold_at", t)?;
    }
    Ok(())
}

fn record(event: &Event) -> Step<()> {
    let task: Task = parse_payload(&event.event_type, &event.payload)?;
    check_task(&task)?;
    store::save(&task, smartflow_kit::now()).map(drop)
}

fn upsert(event: &Event) -> Step<()> {
    let req: UpsertRequest = parse_payload(&event.event_type, &event.payload)?;
    let mut task = req.task;
    check_task(&task)?;
    let checked_at = match req.checked_at.as_deref() {
        Some(t) if !t.is_empty() => parse_time("checked_at", t)?,
        _ => return dead("checked_at is required (an RFC 3339 time)"),
    };
    let threshold = match task.urgency_threshold_at.as_deref() {
        Some(t) => Some(parse_time("urgency_threshold_at", t)?),
        None => None,
    };
    if let Some(p) = promotion::promoted(task.priority, threshold, task.done, checked_at) {
        task.priority = p;
    }
    let before = store::save(&task, smartflow_kit::now())?;
    let was_urgent = before.is_some_and(|b| promotion::is_urgent(b.priority, b.completed));
    if promotion::is_urgent(task.priority, task.done) && !was_urgent {
        let trigger = serde_json::json!({
            "trigger_id": format!("task-{}-{}-{}", task.user_id, task.id, checked_at.unix_timestamp()),
            "user_id": task.user_id,
            "trigger_type": "important_urgent_task",
            "source": "worker_due_job",
            "target_type": "task_pool",
            "target_id": task.id,
            "requested_at": rfc3339(checked_at),
            "conversation_id": task.conversation_id.clone().unwrap_or_default(),
            "title": task.title,
        });
        emit::event("active_schedule.triggered", &trigger)
            .version("1")
            .aggregate(task.id)
            .key(task.user_id)
            .send()?;
        log::info(&format!(
            "task {} of user {} became urgent",
            task.id, task.user_id
        ));
    }
    Ok(())
}
