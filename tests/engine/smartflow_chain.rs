//! SmartFlow's whole chain on the embedded default: a task becoming urgent → the scheduler's
//! trigger → a preview → a notification request → the webhook, received once by a local sink;
//! and a user's chat message → a memory extraction job. Every outbox row ends `consumed`, and
//! each hop's work is in SmartFlow's own tables.

use crate::support::sink::Sink;
use crate::support::smartflow::{assert_all_consumed, publish_v, row_json, start, wait_consumed};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_becoming_urgent_reaches_the_webhook_once_and_every_row_is_consumed() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let task = publish_v(
        &h,
        "task.upsert.requested",
        "",
        json!({"id": 7, "user_id": 3,
        "title": "file taxes", "priority": 2, "urgency_threshold_at": "2026-11-29T09:00:00Z",
        "conversation_id": "conv-3", "checked_at": "2026-11-29T09:10:00Z"}),
    )
    .await;
    let chat = publish_v(
        &h,
        "chat.history.persist.requested",
        "",
        json!({"user_id": 3,
        "conversation_id": "conv-3", "role": "user", "message": "remind me about taxes",
        "tokens_consumed": 4}),
    )
    .await;
    let got = sink.wait_received(1).await;
    assert_eq!(
        got[0]["content"]["text"],
        "\"file taxes\" is important and urgent: plan time for it now.\n/assistant/conv-3"
    );
    wait_consumed(&h, "task_outbox_messages", task).await;
    wait_consumed(&h, "agent_outbox_messages", chat).await;
    // Each hop's row, in its owner's table.
    for (table, ty) in [
        (
            "active_scheduler_outbox_messages",
            "active_schedule.triggered",
        ),
        (
            "notification_outbox_messages",
            "notification.feishu.requested",
        ),
        ("memory_outbox_messages", "memory.extract.requested"),
    ] {
        let ids = h.ids(table).await;
        assert_eq!(ids.len(), 1, "{table}");
        let row = h.wait_final(table, ids[0]).await;
        assert_eq!(
            (row.biz_type.as_str(), row.status.as_str()),
            (ty, "consumed")
        );
    }
    let trigger_id = "task-3-7-1795943400";
    let task = row_json(&h.db, "SELECT priority FROM tasks WHERE id = 7").await;
    assert_eq!(task["priority"], 1);
    let trigger = row_json(
        &h.db,
        &format!(
            "SELECT status, preview_id FROM active_schedule_triggers WHERE id = '{trigger_id}'"
        ),
    )
    .await;
    assert_eq!(trigger["status"], "preview_generated");
    let delivery = row_json(
        &h.db,
        "SELECT status, preview_id FROM notification_records \
         WHERE dedupe_key = '3:important_urgent_task:2026-11-29T09:00:00Z'",
    )
    .await;
    assert_eq!(delivery["status"], "sent");
    assert_eq!(delivery["preview_id"], format!("preview-{trigger_id}"));
    assert_eq!(delivery["preview_id"], trigger["preview_id"]);
    let job = row_json(
        &h.db,
        &format!("SELECT status FROM memory_jobs WHERE idempotency_key = 'chat:conv-3:{chat}'"),
    )
    .await;
    assert_eq!(job["status"], "pending");
    assert_all_consumed(&h).await;
    assert_eq!(sink.received().len(), 1, "received once");
    h.stop().await;
}
