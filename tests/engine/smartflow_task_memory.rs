//! SmartFlow's memory service (one extraction job per idempotency key) and the task event that
//! starts the trigger chain (`task.upsert.requested`).

use crate::support::sink::Sink;
use crate::support::smartflow::{assert_dead, publish_v, redeliver, run, start, state_json};
use serde_json::{Value, json};

const MEMORY: &str = "memory_outbox_messages";
const TASK: &str = "task_outbox_messages";
const SCHEDULER: &str = "active_scheduler_outbox_messages";

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

fn extract(key: &str, text: &str) -> Value {
    json!({"user_id": 3, "conversation_id": "conv-3", "source_role": "user", "source_text": text,
           "occurred_at": "2026-11-29T08:55:00Z", "idempotency_key": key})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pending_extraction_job_per_idempotency_key() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let ty = "memory.extract.requested";
    let first = publish_v(&h, ty, "", extract("k/1", "first")).await;
    assert_eq!(h.wait_final(MEMORY, first).await.status, "consumed");
    assert_eq!(
        run(&h, MEMORY, ty, "v1", extract("k/1", "second")).await.0,
        "consumed"
    );
    let job = state_json(&h, "memory", "job/k%2F1").await.unwrap();
    assert_eq!(job["status"], "pending");
    assert_eq!(
        job["source_text"], "first",
        "the same key again records nothing new"
    );
    assert_eq!(job["event_id"], first.to_string());
    for (payload, reason) in [
        (
            with(extract("k2", "t"), "user_id", json!(0)),
            "user_id must be positive",
        ),
        (
            with(extract("k2", "t"), "conversation_id", json!("")),
            "conversation_id must not be empty",
        ),
        (
            with(extract("k2", "t"), "source_role", json!("")),
            "source_role must not be empty",
        ),
        (extract("k2", " "), "source_text must not be empty"),
        (extract("", "t"), "idempotency_key must not be empty"),
        (
            extract(&"k".repeat(300), "t"),
            "idempotency_key is 300 bytes",
        ),
        (
            with(extract("k2", "t"), "occurred_at", json!("soon")),
            "occurred_at is not an RFC 3339 time",
        ),
    ] {
        assert_dead(&h, MEMORY, ty, "", payload, reason).await;
    }
    assert_dead(
        &h,
        MEMORY,
        ty,
        "v2",
        extract("k2", "t"),
        "unsupported event_version \"v2\"",
    )
    .await;
    assert_eq!(h.state("memory", "job/k2").await, None);
    redeliver(
        &h,
        "memory",
        MEMORY,
        first,
        (ty, "", extract("marker", "m")),
    )
    .await;
    assert_eq!(
        state_json(&h, "memory", "job/k%2F1").await.unwrap()["event_id"],
        first.to_string()
    );
    h.stop().await;
}

fn upsert(priority: u8, checked_at: &str) -> Value {
    json!({"id": 7, "user_id": 3, "title": "file taxes", "priority": priority,
           "urgency_threshold_at": "2026-11-29T09:00:00Z", "conversation_id": "conv-3",
           "checked_at": checked_at})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_becomes_urgent_triggers_the_scheduler_once() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let ty = "task.upsert.requested";
    // Before its threshold: recorded, not urgent, no trigger.
    assert_eq!(
        run(&h, TASK, ty, "", upsert(2, "2026-11-29T08:00:00Z"))
            .await
            .0,
        "consumed"
    );
    assert_eq!(
        state_json(&h, "task", "task/3/7").await.unwrap()["priority"],
        2
    );
    assert!(h.rows(SCHEDULER).await.is_empty());
    // Past it: promoted 2 -> 1 and the trigger is emitted in the same transaction.
    let urgent = publish_v(&h, ty, "", upsert(2, "2026-11-29T09:10:00Z")).await;
    assert_eq!(h.wait_final(TASK, urgent).await.status, "consumed");
    assert_eq!(
        state_json(&h, "task", "task/3/7").await.unwrap()["priority"],
        1
    );
    let triggers = h.rows(SCHEDULER).await;
    assert_eq!(triggers.len(), 1);
    let wrapper: Value = serde_json::from_str(&triggers[0].payload).unwrap();
    assert_eq!(wrapper["event_type"], "active_schedule.triggered");
    assert_eq!(wrapper["event_version"], "1");
    let p = &wrapper["payload"];
    assert_eq!(
        (
            p["trigger_type"].as_str(),
            p["source"].as_str(),
            p["target_type"].as_str()
        ),
        (
            Some("important_urgent_task"),
            Some("worker_due_job"),
            Some("task_item")
        )
    );
    assert_eq!(
        (p["target_id"].as_i64(), p["conversation_id"].as_str()),
        (Some(7), Some("conv-3"))
    );
    // Still urgent at the next check: nothing new.
    assert_eq!(
        run(&h, TASK, ty, "", upsert(1, "2026-11-29T09:20:00Z"))
            .await
            .0,
        "consumed"
    );
    redeliver(
        &h,
        "task",
        TASK,
        urgent,
        (
            ty,
            "",
            with(upsert(2, "2026-11-29T08:00:00Z"), "id", json!(99)),
        ),
    )
    .await;
    assert_eq!(
        h.rows(SCHEDULER).await.len(),
        1,
        "one trigger per becoming urgent"
    );
    for (payload, reason) in [
        (
            with(upsert(2, "2026-11-29T09:10:00Z"), "user_id", json!(0)),
            "task id and user_id must be positive",
        ),
        (
            with(upsert(2, "2026-11-29T09:10:00Z"), "priority", json!(9)),
            "priority must be 1..=4",
        ),
        (
            with(upsert(2, "x"), "checked_at", json!(null)),
            "checked_at is required",
        ),
        (upsert(2, "tomorrow"), "checked_at is not an RFC 3339 time"),
    ] {
        assert_dead(&h, TASK, ty, "", payload, reason).await;
    }
    assert_dead(
        &h,
        TASK,
        ty,
        "v3",
        upsert(2, "2026-11-29T09:10:00Z"),
        "unsupported event_version",
    )
    .await;
    h.stop().await;
}
