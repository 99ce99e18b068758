//! SmartFlow's task service (the promotion rule on the `tasks` table, and the task event that
//! starts the trigger chain) and its memory service (one extraction job per idempotency key in
//! `memory_jobs`), each rule on every backend: the handlers' SQL is written once.

use crate::support::Backend;
use crate::support::sink::Sink;
use crate::support::smartflow::{
    assert_dead, instant, publish_v, redeliver, row_json, rows_json, run, run_ok, start_on,
    wait_consumed,
};
use serde_json::{Value, json};

const MEMORY: &str = "memory_outbox_messages";
const TASK: &str = "task_outbox_messages";
const SCHEDULER: &str = "active_scheduler_outbox_messages";

crate::backend_suite!(
    promotion_follows_smartflows_rule_on_the_consume_time_clock,
    one_pending_extraction_job_per_idempotency_key,
    a_task_that_becomes_urgent_triggers_the_scheduler_once,
);

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

/// The priorities of tasks 1..=9, by id.
async fn priorities(h: &crate::support::Harness) -> Vec<(i64, i64)> {
    rows_json(&h.db, "SELECT id, priority FROM tasks ORDER BY id")
        .await
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["priority"].as_i64().unwrap()))
        .collect()
}

async fn promotion_follows_smartflows_rule_on_the_consume_time_clock(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    // SmartFlow's own rows, written by its application before the event (the thresholds are
    // far in the past or the future of the consume-time clock).
    h.db.exec(
        "INSERT INTO tasks (id, user_id, title, priority, urgency_threshold_at, completed) VALUES \
         (1, 3, 'important, due', 2, '2020-01-01 00:00:00', FALSE), \
         (2, 3, 'neither, due', 4, '2020-01-01 00:00:00', FALSE), \
         (3, 3, 'urgent already', 3, '2020-01-01 00:00:00', FALSE), \
         (4, 3, 'important, not yet due', 2, '2100-01-01 00:00:00', FALSE), \
         (5, 3, 'important, due, completed', 2, '2020-01-01 00:00:00', TRUE), \
         (6, 3, 'important, no threshold', 2, NULL, FALSE), \
         (7, 4, 'another user''s', 2, '2020-01-01 00:00:00', FALSE), \
         (8, 3, 'important and urgent', 1, '2020-01-01 00:00:00', FALSE), \
         (9, 3, 'neither, due, later event', 4, '2020-01-01 00:00:00', FALSE)",
    )
    .await;
    // triggered_at lies before every threshold: a rule on triggered_at would promote nothing.
    let (status, error) = run(
        &h,
        TASK,
        "task.urgency.promote.requested",
        "",
        json!({"user_id": 3, "task_ids": [1, 2, 3, 4, 5, 6, 7, 8, 1, -1, 0, 99],
               "triggered_at": "2000-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, "consumed", "{error}");
    assert_eq!(
        priorities(&h).await,
        vec![
            (1, 1),
            (2, 3),
            (3, 3),
            (4, 2),
            (5, 2),
            (6, 2),
            (7, 2),
            (8, 1),
            (9, 4)
        ],
        "2 -> 1 and 4 -> 3 once the threshold passed; not yet due, completed, without \
         threshold, another user's and unlisted tasks untouched"
    );
    let promoted = row_json(&h.db, "SELECT updated_at FROM tasks WHERE id = 1").await;
    assert!(
        instant(&promoted["updated_at"]) > instant(&json!("2026-01-01T00:00:00Z")),
        "the promotion stamps updated_at with the consume-time clock: {promoted}"
    );
    // triggered_at past task 4's threshold (2100) decides nothing either: the consume-time
    // clock has not reached it.
    run_ok(
        &h,
        TASK,
        "task.urgency.promote.requested",
        "",
        json!({"user_id": 3, "task_ids": [4], "triggered_at": "2200-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(priorities(&h).await[3], (4, 2));
    // triggered_at is optional.
    let (status, error) = run(
        &h,
        TASK,
        "task.urgency.promote.requested",
        "v1",
        json!({"user_id": 3, "task_ids": [9]}),
    )
    .await;
    assert_eq!(status, "consumed", "{error}");
    assert_eq!(priorities(&h).await[8], (9, 3));
    for (payload, reason) in [
        (
            json!({"user_id": 3, "task_ids": [0, -2]}),
            "task_ids has no positive task id",
        ),
        (
            json!({"user_id": 0, "task_ids": [1]}),
            "user_id must be positive",
        ),
        (
            json!({"user_id": 3, "task_ids": [1], "triggered_at": "noon"}),
            "triggered_at is not an RFC 3339 time",
        ),
    ] {
        assert_dead(
            &h,
            TASK,
            "task.urgency.promote.requested",
            "",
            payload,
            reason,
        )
        .await;
    }
    h.stop().await;
}

fn extract(key: &str, text: &str) -> Value {
    json!({"user_id": 3, "conversation_id": "conv-3", "source_role": "user", "source_text": text,
           "occurred_at": "2026-11-29T08:55:00Z", "idempotency_key": key})
}

async fn one_pending_extraction_job_per_idempotency_key(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    let ty = "memory.extract.requested";
    let first = publish_v(&h, ty, "", extract("k/1", "first")).await;
    wait_consumed(&h, MEMORY, first).await;
    run_ok(&h, MEMORY, ty, "v1", extract("k/1", "second")).await;
    // Keys compare byte for byte: another case is another key.
    run_ok(&h, MEMORY, ty, "v1", extract("K/1", "third")).await;
    let jobs = rows_json(
        &h.db,
        "SELECT idempotency_key, status, source_text, event_id, user_id, conversation_id, \
         source_role, occurred_at, payload_json FROM memory_jobs ORDER BY id",
    )
    .await;
    assert_eq!(jobs.len(), 2, "one job per idempotency key: {jobs:?}");
    let job = &jobs[0];
    assert_eq!(
        (
            job["idempotency_key"].as_str(),
            job["status"].as_str(),
            job["source_text"].as_str(),
            job["event_id"].as_str(),
        ),
        (
            Some("k/1"),
            Some("pending"),
            Some("first"),
            Some(first.to_string().as_str())
        ),
        "the same key again records nothing new"
    );
    assert_eq!(
        instant(&job["occurred_at"]),
        instant(&json!("2026-11-29T08:55:00Z"))
    );
    let payload: Value = serde_json::from_str(job["payload_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        payload,
        extract("k/1", "first"),
        "the extraction payload as received"
    );
    assert_eq!(jobs[1]["idempotency_key"], "K/1");
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
    redeliver(
        &h,
        "memory",
        MEMORY,
        first,
        (ty, "", extract("marker", "m")),
    )
    .await;
    let keys: Vec<Value> = rows_json(&h.db, "SELECT idempotency_key FROM memory_jobs ORDER BY id")
        .await
        .into_iter()
        .map(|r| r["idempotency_key"].clone())
        .collect();
    assert_eq!(
        keys,
        vec![json!("k/1"), json!("K/1"), json!("marker")],
        "dead requests record nothing; the redelivered row adds nothing"
    );
    h.stop().await;
}

fn upsert(priority: u8, checked_at: &str) -> Value {
    json!({"id": 7, "user_id": 3, "title": "file taxes", "priority": priority,
           "urgency_threshold_at": "2026-11-29T09:00:00Z", "conversation_id": "conv-3",
           "checked_at": checked_at})
}

async fn task_row(h: &crate::support::Harness) -> Value {
    row_json(
        &h.db,
        "SELECT user_id, title, priority, urgency_threshold_at, completed, conversation_id \
         FROM tasks WHERE id = 7",
    )
    .await
}

async fn a_task_that_becomes_urgent_triggers_the_scheduler_once(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    let ty = "task.upsert.requested";
    // Before its threshold: recorded, not urgent, no trigger.
    run_ok(&h, TASK, ty, "", upsert(2, "2026-11-29T08:00:00Z")).await;
    let task = task_row(&h).await;
    assert_eq!(
        (task["priority"].as_i64(), task["title"].as_str()),
        (Some(2), Some("file taxes"))
    );
    assert_eq!(
        instant(&task["urgency_threshold_at"]),
        instant(&json!("2026-11-29T09:00:00Z"))
    );
    assert!(h.rows(SCHEDULER).await.is_empty());
    // Past it: promoted 2 -> 1 and the trigger is emitted in the same transaction.
    let urgent = publish_v(&h, ty, "", upsert(2, "2026-11-29T09:10:00Z")).await;
    wait_consumed(&h, TASK, urgent).await;
    assert_eq!(task_row(&h).await["priority"], 1);
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
            Some("task_pool")
        )
    );
    assert_eq!(
        (p["target_id"].as_i64(), p["conversation_id"].as_str()),
        (Some(7), Some("conv-3"))
    );
    // Still urgent at the next check: nothing new.
    run_ok(&h, TASK, ty, "", upsert(1, "2026-11-29T09:20:00Z")).await;
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
    // A completed task is never promoted and triggers nothing.
    let done = with(
        with(upsert(2, "2026-11-29T09:30:00Z"), "id", json!(8)),
        "done",
        json!(true),
    );
    run_ok(&h, TASK, ty, "", done).await;
    let row = row_json(&h.db, "SELECT priority, completed FROM tasks WHERE id = 8").await;
    assert_eq!(row["priority"], 2, "{row}");
    assert!(
        crate::support::smartflow::truthy(&row["completed"]),
        "{row}"
    );
    assert_eq!(h.rows(SCHEDULER).await.len(), 1);
    // Another user's task id is not taken over.
    assert_dead(
        &h,
        TASK,
        ty,
        "",
        with(upsert(2, "2026-11-29T09:10:00Z"), "user_id", json!(4)),
        "task 7 belongs to user 3, not 4",
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_route_without_its_sql_grant_is_refused_at_start() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    // The grant of task.record.requested, the first route the task component serves.
    let grant = "task.wasm\"\nsql = { tables = { tasks = \"rw\" } }\n\n";
    let text = crate::support::smartflow::config_text(&url, &sink.addr);
    assert!(
        text.contains(grant),
        "the record route's grant is in the example"
    );
    let text = text.replacen(grant, "task.wasm\"\n\n", 1);
    let err = crate::support::start_refused(
        &text,
        dir.path(),
        "a component importing sql must not load on a route without a grant",
    )
    .await;
    assert!(
        err.contains("task.record.requested")
            && err.contains("task.wasm imports sql but its route does not grant it")
            && err.contains("sql = { tables = { tasks = \"rw\" } }"),
        "{err}"
    );
}
