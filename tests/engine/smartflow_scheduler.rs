//! SmartFlow's active-scheduler: the deterministic decision (closed / preview_generated /
//! rejected), the notification it requests in the same transaction, and its checks.

use crate::support::sink::Sink;
use crate::support::smartflow::{assert_dead, publish_v, redeliver, run, start, state_json};
use serde_json::{Value, json};

const SCHEDULER: &str = "active_scheduler_outbox_messages";
const NOTIFICATION: &str = "notification_outbox_messages";
const TY: &str = "active_schedule.triggered";

fn trigger(id: &str) -> Value {
    json!({"trigger_id": id, "user_id": 3, "trigger_type": "important_urgent_task",
           "source": "worker_due_job", "target_type": "task_item", "target_id": 7,
           "requested_at": "2026-11-29T09:44:10Z", "conversation_id": "conv-3", "title": "file taxes"})
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_target_gets_a_preview_and_one_notification_request() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let id = publish_v(&h, TY, "1", trigger("t1")).await;
    assert_eq!(h.wait_final(SCHEDULER, id).await.status, "consumed");
    let record = state_json(&h, "active-scheduler", "trigger/t1")
        .await
        .unwrap();
    assert_eq!(record["status"], "preview_generated");
    let preview = state_json(&h, "active-scheduler", "preview/preview-t1")
        .await
        .unwrap();
    assert_eq!(
        preview["summary_text"],
        "\"file taxes\" is important and urgent: plan time for it now."
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
    assert_eq!(
        run(&h, SCHEDULER, TY, "1", trigger("t1")).await.0,
        "consumed"
    );
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
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_target_is_closed_and_a_trigger_without_conversation_is_rejected() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    assert_eq!(
        run(
            &h,
            SCHEDULER,
            TY,
            "1",
            with(trigger("t2"), "target_status", json!("done"))
        )
        .await
        .0,
        "consumed"
    );
    let record = state_json(&h, "active-scheduler", "trigger/t2")
        .await
        .unwrap();
    assert_eq!(
        (record["status"].as_str(), record["reason"].as_str()),
        (Some("closed"), Some("task_item 7 is done"))
    );
    assert_eq!(
        run(
            &h,
            SCHEDULER,
            TY,
            "1",
            with(trigger("t3"), "conversation_id", json!(""))
        )
        .await
        .0,
        "consumed"
    );
    let record = state_json(&h, "active-scheduler", "trigger/t3")
        .await
        .unwrap();
    assert_eq!(record["status"], "rejected");
    assert!(
        h.rows(NOTIFICATION).await.is_empty(),
        "no notification unless a preview was generated"
    );
    assert_eq!(
        h.state("active-scheduler", "preview/preview-t2").await,
        None
    );
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
    assert_eq!(h.state("active-scheduler", "trigger/x").await, None);
    h.stop().await;
}
