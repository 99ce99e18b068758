//! SmartFlow's active-scheduler on its tables: the deterministic decision (closed /
//! preview_generated) recorded in `active_schedule_triggers`, the preview row, the
//! notification it requests in the same transaction, SmartFlow's payloads (no
//! conversation_id, target_id 0 for feedback), SmartFlow's rules for a trigger row that is
//! already there (terminal: nothing; payload mismatch: `rejected` / `payload_mismatch`), and
//! its checks.

use crate::support::sink::Sink;
use crate::support::smartflow::{
    assert_dead, instant, publish_v, redeliver, row_json, rows_json, run_ok, start, start_on,
    wait_consumed,
};
use crate::support::{Backend, Harness};
use serde_json::{Value, json};

const SCHEDULER: &str = "active_scheduler_outbox_messages";
const NOTIFICATION: &str = "notification_outbox_messages";
const TY: &str = "active_schedule.triggered";

crate::backend_suite!(
    an_open_target_gets_a_preview_and_one_notification_request,
    a_done_target_is_closed_and_smartflows_payloads_without_conversation_get_a_preview,
    a_stored_trigger_row_is_decided_once_and_a_mismatched_event_rejects_it,
);

fn trigger(id: &str) -> Value {
    json!({"trigger_id": id, "user_id": 3, "trigger_type": "important_urgent_task",
           "source": "worker_due_job", "target_type": "task_pool", "target_id": 7,
           "requested_at": "2026-11-29T09:44:10Z", "conversation_id": "conv-3", "title": "file taxes"})
}

/// A trigger as SmartFlow's scanner (`worker_due_job`) or feedback API sends it: no
/// conversation_id field at all.
fn smartflow_trigger(id: &str, trigger_type: &str, target_id: i64) -> Value {
    json!({"trigger_id": id, "user_id": 3, "trigger_type": trigger_type,
           "source": "worker_due_job", "target_type": "task_pool", "target_id": target_id,
           "requested_at": "2026-11-29T09:44:10Z"})
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

async fn trigger_row(h: &Harness, id: &str) -> Value {
    row_json(
        &h.db,
        &format!(
            "SELECT user_id, trigger_type, source, target_type, target_id, status, reason, \
             preview_id, dedupe_key, requested_at FROM active_schedule_triggers WHERE id = '{id}'"
        ),
    )
    .await
}

async fn an_open_target_gets_a_preview_and_one_notification_request(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    let id = publish_v(&h, TY, "1", trigger("t1")).await;
    wait_consumed(&h, SCHEDULER, id).await;
    let record = trigger_row(&h, "t1").await;
    assert_eq!(
        (
            record["status"].as_str(),
            record["user_id"].as_i64(),
            record["target_id"].as_str(),
            record["preview_id"].as_str(),
            record["dedupe_key"].as_str(),
        ),
        (
            Some("preview_generated"),
            Some(3),
            Some("7"),
            Some("preview-t1"),
            Some("3:important_urgent_task:2026-11-29T09:30:00Z")
        )
    );
    assert_eq!(
        instant(&record["requested_at"]),
        instant(&json!("2026-11-29T09:44:10Z"))
    );
    let preview = row_json(
        &h.db,
        "SELECT id, trigger_id, user_id, conversation_id, summary_text FROM active_schedule_previews",
    )
    .await;
    assert_eq!(
        preview,
        json!({"id": "preview-t1", "trigger_id": "t1", "user_id": 3, "conversation_id": "conv-3",
               "summary_text": "\"file taxes\" is important and urgent: plan time for it now."})
    );
    let rows = h.rows(NOTIFICATION).await;
    assert_eq!(rows.len(), 1);
    let wrapper: Value = serde_json::from_str(&rows[0].payload).unwrap();
    assert_eq!(
        (
            wrapper["event_type"].as_str(),
            wrapper["event_version"].as_str()
        ),
        (Some("notification.feishu.requested"), Some("1"))
    );
    let p = &wrapper["payload"];
    assert_eq!(
        p["dedupe_key"],
        "3:important_urgent_task:2026-11-29T09:30:00Z"
    );
    assert_eq!(p["target_url"], "/assistant/conv-3");
    assert_eq!(p["preview_id"], "preview-t1");
    // The same trigger again (a new row) and the row redelivered: no second notification.
    run_ok(&h, SCHEDULER, TY, "1", trigger("t1")).await;
    redeliver(
        &h,
        "active-scheduler",
        SCHEDULER,
        id,
        (
            TY,
            "1",
            with(trigger("marker"), "target_status", json!("done")),
        ),
    )
    .await;
    assert_eq!(h.rows(NOTIFICATION).await.len(), 1);
    assert_eq!(
        h.db.scalar("SELECT COUNT(*) FROM active_schedule_previews")
            .await,
        1
    );
    h.stop().await;
}

async fn a_done_target_is_closed_and_smartflows_payloads_without_conversation_get_a_preview(
    backend: Backend,
) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    run_ok(
        &h,
        SCHEDULER,
        TY,
        "1",
        with(trigger("t2"), "target_status", json!("done")),
    )
    .await;
    let record = trigger_row(&h, "t2").await;
    assert_eq!(
        (record["status"].as_str(), record["reason"].as_str()),
        (Some("closed"), Some("task_pool 7 is done"))
    );
    assert!(
        h.rows(NOTIFICATION).await.is_empty(),
        "no notification unless a preview was generated"
    );
    let feedback = smartflow_trigger("t3", "unfinished_feedback", 0);
    for (id, payload) in [
        ("t3", feedback),
        ("t4", smartflow_trigger("t4", "important_urgent_task", 7)),
    ] {
        run_ok(&h, SCHEDULER, TY, "1", payload).await;
        let record = trigger_row(&h, id).await;
        assert_eq!(record["status"], "preview_generated", "{record}");
    }
    assert_eq!(trigger_row(&h, "t3").await["target_id"], "0");
    let targets: Vec<Value> = h
        .rows(NOTIFICATION)
        .await
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.payload).unwrap()["payload"]["target_url"].clone()
        })
        .collect();
    assert_eq!(
        targets,
        [
            json!("/assistant/preview/preview-t3"),
            json!("/assistant/preview/preview-t4")
        ],
        "a preview without a conversation opens by its own id"
    );
    let previews = rows_json(
        &h.db,
        "SELECT id, conversation_id FROM active_schedule_previews ORDER BY id",
    )
    .await;
    assert_eq!(
        previews,
        [
            json!({"id": "preview-t3", "conversation_id": ""}),
            json!({"id": "preview-t4", "conversation_id": ""})
        ]
    );
    h.stop().await;
}

/// A trigger row as SmartFlow's scanner writes it before the event: `pending`.
async fn scanner_wrote(h: &Harness, id: &str, target_id: &str, status: &str) {
    h.db.exec(&format!(
        "INSERT INTO active_schedule_triggers (id, user_id, trigger_type, source, target_type, \
         target_id, status) VALUES ('{id}', 3, 'important_urgent_task', 'worker_due_job', \
         'task_pool', '{target_id}', '{status}')"
    ))
    .await;
}

async fn a_stored_trigger_row_is_decided_once_and_a_mismatched_event_rejects_it(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    // A pending row that agrees with its event takes the decision.
    scanner_wrote(&h, "ast_1", "7", "pending").await;
    run_ok(&h, SCHEDULER, TY, "1", trigger("ast_1")).await;
    let record = trigger_row(&h, "ast_1").await;
    assert_eq!(
        (record["status"].as_str(), record["preview_id"].as_str()),
        (Some("preview_generated"), Some("preview-ast_1"))
    );
    assert_eq!(h.rows(NOTIFICATION).await.len(), 1);
    // A pending (or processing) row whose target or user differs from the event's: the row
    // is rejected with SmartFlow's reason, nothing else is written, and the event is consumed.
    scanner_wrote(&h, "ast_2", "8", "pending").await;
    run_ok(&h, SCHEDULER, TY, "1", trigger("ast_2")).await;
    scanner_wrote(&h, "ast_4", "7", "processing").await;
    run_ok(
        &h,
        SCHEDULER,
        TY,
        "1",
        with(trigger("ast_4"), "user_id", json!(4)),
    )
    .await;
    for id in ["ast_2", "ast_4"] {
        let record = trigger_row(&h, id).await;
        assert_eq!(
            (
                record["status"].as_str(),
                record["reason"].as_str(),
                record["preview_id"].as_str()
            ),
            (Some("rejected"), Some("payload_mismatch"), None),
            "{id}"
        );
    }
    // Rejected is terminal: the same event again changes nothing.
    run_ok(
        &h,
        SCHEDULER,
        TY,
        "1",
        with(trigger("ast_2"), "target_id", json!(8)),
    )
    .await;
    assert_eq!(trigger_row(&h, "ast_2").await["status"], "rejected");
    // A row already in a terminal status: nothing happens, nothing is emitted.
    scanner_wrote(&h, "ast_3", "7", "skipped").await;
    run_ok(&h, SCHEDULER, TY, "1", trigger("ast_3")).await;
    assert_eq!(trigger_row(&h, "ast_3").await["status"], "skipped");
    assert_eq!(h.rows(NOTIFICATION).await.len(), 1);
    let previews = rows_json(&h.db, "SELECT id FROM active_schedule_previews").await;
    assert_eq!(previews, vec![json!({"id": "preview-ast_1"})]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_triggers_and_other_versions_are_dead() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    for (payload, reason) in [
        (
            with(trigger("x"), "trigger_id", json!("")),
            "trigger_id must not be empty",
        ),
        (
            with(trigger("x"), "trigger_id", json!("t".repeat(129))),
            "trigger_id is 129 bytes, at most 128 are accepted",
        ),
        (
            with(trigger("x"), "user_id", json!(0)),
            "user_id must be positive",
        ),
        (
            with(trigger("x"), "trigger_type", json!("whim")),
            "trigger_type must be one of important_urgent_task, unfinished_feedback",
        ),
        (
            with(trigger("x"), "source", json!("cron")),
            "source must be one of worker_due_job, api_trigger, user_feedback",
        ),
        (
            with(trigger("x"), "target_type", json!("inbox")),
            "target_type must be one of task_pool, schedule_event, task_item",
        ),
        (
            with(trigger("x"), "target_id", json!(0)),
            "target_id must be a positive number or a non-empty string",
        ),
        (
            with(trigger("x"), "requested_at", json!(null)),
            "requested_at is required",
        ),
        (
            with(trigger("x"), "target_status", json!("lost")),
            "target_status must be one of open, done, cancelled",
        ),
    ] {
        assert_dead(&h, SCHEDULER, TY, "1", payload, reason).await;
    }
    for version in ["v1", "2"] {
        assert_dead(
            &h,
            SCHEDULER,
            TY,
            version,
            trigger("x"),
            "only \"1\" is accepted",
        )
        .await;
    }
    assert!(h.rows(NOTIFICATION).await.is_empty());
    assert_eq!(
        h.db.scalar("SELECT COUNT(*) FROM active_schedule_triggers")
            .await,
        0
    );
    h.stop().await;
}
