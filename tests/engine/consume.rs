//! The skeleton's promises: publish → consumed, retries, traps, emits, redelivery, dead rows.

use crate::support::smartflow::row_json;
use crate::support::{Harness, Setup, TestDb, WAIT, component, eventually, hash_of, until};
use serde_json::json;
use switchyard::catalog::Service;
use switchyard::engine::EnqueueOn;
use switchyard::transport::Message;

crate::engine_suite!(
    published_event_is_consumed_and_its_rows_written,
    task_not_yet_urgent_is_left_alone_and_bad_promotions_are_dead,
    retrying_handler_ends_dead_after_max_retry_with_none_of_its_writes,
    trapping_handler_is_retried_while_other_routes_keep_serving,
    emitted_event_lands_in_its_owner_table_and_is_consumed_there,
    a_failed_commit_keeps_neither_the_consume_nor_the_emit,
    the_same_envelope_delivered_twice_is_applied_once,
    a_row_of_a_type_no_route_names_waits_pending_for_its_owner,
    row_with_a_broken_wrapper_ends_dead_with_the_reason,
    enqueue_joins_the_callers_transaction,
    a_stream_of_publishes_is_relayed_on_their_wakes_not_at_the_poll,
);

async fn published_event_is_consumed_and_its_rows_written(setup: Setup) {
    let mut h = Harness::start(setup).await;
    let record = h
        .publish(
            "task.record.requested",
            json!({"id": 7, "user_id": 3, "title": "file taxes", "priority": 2,
                   "urgency_threshold_at": "2026-01-01T00:00:00Z"}),
        )
        .await;
    let row = h.wait_final("task_outbox_messages", record).await;
    assert_eq!(row.status, "consumed", "{row:?}");
    let promote = h
        .publish(
            "task.urgency.promote.requested",
            json!({"user_id": 3, "task_ids": [7, 7, -1, 0], "triggered_at": "2026-02-01T00:00:00Z"}),
        )
        .await;
    let row = h.wait_final("task_outbox_messages", promote).await;
    assert_eq!(row.status, "consumed", "{row:?}");
    assert_eq!(
        row.handler_version.as_deref(),
        Some(hash_of(&component("task")).as_str())
    );
    let task = row_json(
        &h.db,
        "SELECT priority FROM tasks WHERE id = 7 AND user_id = 3",
    )
    .await;
    assert_eq!(
        task["priority"], 1,
        "priority 2 past its threshold is promoted to 1"
    );
    h.stop().await;
}

async fn task_not_yet_urgent_is_left_alone_and_bad_promotions_are_dead(setup: Setup) {
    let mut h = Harness::start(setup).await;
    let id = h
        .publish(
            "task.record.requested",
            json!({"id": 8, "user_id": 3, "priority": 4, "urgency_threshold_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    h.wait_final("task_outbox_messages", id).await;
    let ok = h
        .publish(
            "task.urgency.promote.requested",
            json!({"user_id": 3, "task_ids": [8], "triggered_at": "2026-02-01T00:00:00Z"}),
        )
        .await;
    let no_ids = h
        .publish(
            "task.urgency.promote.requested",
            json!({"user_id": 3, "task_ids": [0, -2], "triggered_at": "2026-02-01T00:00:00Z"}),
        )
        .await;
    let no_user = h
        .publish(
            "task.urgency.promote.requested",
            json!({"user_id": 0, "task_ids": [8], "triggered_at": "2026-02-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        h.wait_final("task_outbox_messages", ok).await.status,
        "consumed"
    );
    let task = row_json(
        &h.db,
        "SELECT priority FROM tasks WHERE id = 8 AND user_id = 3",
    )
    .await;
    assert_eq!(
        task["priority"], 4,
        "a task before its threshold keeps its priority"
    );
    let dead = h.wait_final("task_outbox_messages", no_ids).await;
    assert_eq!(dead.status, "dead");
    assert!(dead.last_error.unwrap().contains("no positive task id"));
    let dead = h.wait_final("task_outbox_messages", no_user).await;
    assert_eq!(dead.status, "dead");
    assert!(
        dead.last_error
            .unwrap()
            .contains("user_id must be positive")
    );
    h.stop().await;
}

async fn retrying_handler_ends_dead_after_max_retry_with_none_of_its_writes(setup: Setup) {
    let mut h = Harness::start(setup).await;
    let id = h
        .publish(
            "probe.run",
            json!({"set": {"leak": "yes"}, "emit": [{"event_type": "sink.note", "payload": {}}],
                                     "action": "retry", "reason": "downstream busy"}),
        )
        .await;
    let row = h.wait_final("probe_outbox_messages", id).await;
    assert_eq!(row.status, "dead");
    assert_eq!(row.retry_count, 3, "max_attempts = 3 attempts, then dead");
    let err = row.last_error.unwrap();
    assert!(
        err.contains("retries exhausted") && err.contains("downstream busy"),
        "{err}"
    );
    assert_eq!(
        h.state("probe", "leak").await,
        None,
        "a retried invocation's writes are dropped"
    );
    assert!(
        h.rows("sink_outbox_messages").await.is_empty(),
        "a retried invocation's emits are dropped"
    );
    h.stop().await;
}

async fn trapping_handler_is_retried_while_other_routes_keep_serving(setup: Setup) {
    let mut h = Harness::start(setup).await;
    let trap = h
        .publish(
            "probe.run",
            json!({"set": {"trap-leak": "1"}, "action": "trap"}),
        )
        .await;
    let mut others = Vec::new();
    for i in 0..20 {
        others.push(
            h.publish(
                "task.record.requested",
                json!({"id": 100 + i, "user_id": 1, "priority": 2}),
            )
            .await,
        );
    }
    for id in others {
        assert_eq!(
            h.wait_final("task_outbox_messages", id).await.status,
            "consumed"
        );
    }
    let row = h
        .wait_row("probe_outbox_messages", trap, |r| r.retry_count >= 1)
        .await;
    assert!(
        row.last_error
            .clone()
            .unwrap()
            .contains("trap: wasm `unreachable`"),
        "{row:?}"
    );
    let row = h.wait_final("probe_outbox_messages", trap).await;
    assert_eq!(row.status, "dead");
    assert_eq!(h.state("probe", "trap-leak").await, None);
    h.stop().await;
}

async fn emitted_event_lands_in_its_owner_table_and_is_consumed_there(setup: Setup) {
    let mut h = Harness::start(setup).await;
    let id = h
        .publish("probe.run", json!({"set": {"parent": "done"},
            "emit": [{"event_type": "sink.note", "key": "k1", "payload": {"set": {"child": "done"}}}]}))
        .await;
    assert_eq!(
        h.wait_final("probe_outbox_messages", id).await.status,
        "consumed"
    );
    let sink = h.rows("sink_outbox_messages").await;
    assert_eq!(
        sink.len(),
        1,
        "the follow-up is in the sink service's own table"
    );
    assert_eq!(sink[0].biz_type, "sink.note");
    let wrapper: serde_json::Value = serde_json::from_str(&sink[0].payload).unwrap();
    assert_eq!(wrapper["event_type"], "sink.note");
    assert_eq!(wrapper["event_version"], "v1");
    assert!(
        h.rows("probe_outbox_messages")
            .await
            .iter()
            .all(|r| r.biz_type == "probe.run")
    );
    h.wait_row("sink_outbox_messages", 1, |r| r.status == "consumed")
        .await;
    assert_eq!(h.state("sink", "child").await.as_deref(), Some("done"));
    assert_eq!(h.state("probe", "parent").await.as_deref(), Some("done"));
    h.stop().await;
}

async fn a_failed_commit_keeps_neither_the_consume_nor_the_emit(setup: Setup) {
    // Enough attempts that the refused row is still alive when the database accepts it again.
    let mut h = Harness::start_edited(setup, "", |text| {
        text.replace("max_attempts = 3", "max_attempts = 1000")
    })
    .await;
    // Make the consume transaction fail at its last statement (the emit's insert).
    h.refuse_inserts("sink_outbox_messages").await;
    let id = h
        .publish(
            "probe.run",
            json!({"set": {"s": "1"}, "emit": [{"event_type": "sink.note", "payload": {}}]}),
        )
        .await;
    let good = h.publish("probe.run", json!({"set": {"g": "1"}})).await;
    // The refused row is isolated and recorded as a failed attempt with the database's error,
    // again and again; nothing of it is ever visible.
    let row = eventually("the refused row to fail its commit twice", WAIT, || async {
        until(h.row("probe_outbox_messages", id).await.unwrap(), |r| {
            r.retry_count >= 2
        })
    })
    .await;
    assert_ne!(
        row.status, "consumed",
        "the consumed mark must roll back with the emit"
    );
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains("commit failed") && error.contains("refused by test"),
        "{error}"
    );
    assert!(h.running().counters().batch_commits_failed("probe") >= 2);
    assert!(h.rows("sink_outbox_messages").await.is_empty());
    assert_eq!(h.state("probe", "s").await, None);
    // The service is not wedged: the other event commits while that one keeps failing.
    assert_eq!(
        h.wait_final("probe_outbox_messages", good).await.status,
        "consumed"
    );
    assert_eq!(h.state("probe", "g").await.as_deref(), Some("1"));
    h.allow_inserts("sink_outbox_messages").await;
    assert_eq!(
        h.wait_final("probe_outbox_messages", id).await.status,
        "consumed"
    );
    assert_eq!(h.rows("sink_outbox_messages").await.len(), 1);
    assert_eq!(h.state("probe", "s").await.as_deref(), Some("1"));
    h.stop().await;
}

async fn the_same_envelope_delivered_twice_is_applied_once(setup: Setup) {
    let mut h = Harness::start(setup).await;
    let id = h.publish("probe.run", json!({"incr": ["applied"]})).await;
    assert_eq!(
        h.wait_final("probe_outbox_messages", id).await.status,
        "consumed"
    );
    let probe = h.host.catalog().service("probe").unwrap().clone();
    let envelope = json!({"outbox_id": id, "event_id": id.to_string(), "event_type": "probe.run",
        "event_version": "v1", "service_name": "probe", "aggregate_id": "",
        "payload": {"incr": ["applied"]}});
    redeliver(&h, &probe, &envelope).await;
    redeliver(&h, &probe, &envelope).await;
    // A marker behind the duplicates in the same queue: once it is consumed, they were seen.
    let marker = h
        .publish("probe.run", json!({"set": {"marker": "1"}}))
        .await;
    h.wait_final("probe_outbox_messages", marker).await;
    assert_eq!(
        h.state("probe", "applied").await.as_deref(),
        Some("1"),
        "applied exactly once"
    );
    h.stop().await;
}

async fn redeliver(h: &Harness, service: &Service, envelope: &serde_json::Value) {
    let msg = Message {
        key: String::new(),
        value: envelope.to_string().into_bytes(),
        event_type: "probe.run".into(),
        traceparent: None,
    };
    for r in h
        .transport
        .publish(switchyard::engine::channel(service), vec![msg])
        .await
    {
        r.unwrap();
    }
}

async fn a_row_of_a_type_no_route_names_waits_pending_for_its_owner(setup: Setup) {
    let mut h = Harness::start(setup).await;
    // Written by another producer with plain SQL: an event type this host does not route
    // (another host's config may). SmartFlow marked it dead; here it waits, unclaimed.
    let wrapper = r#"{"event_type":"probe.unknown","payload":{}}"#;
    let unknown = h
        .insert_raw("probe_outbox_messages", "probe.unknown", wrapper, 20)
        .await;
    // Inserted after it and due as early: once it is consumed, a claim has passed over the
    // unknown row.
    let wrapper = r#"{"event_type":"probe.run","payload":{}}"#;
    let known = h
        .insert_raw("probe_outbox_messages", "probe.run", wrapper, 20)
        .await;
    h.host.outbox().wake("probe");
    assert_eq!(
        h.wait_final("probe_outbox_messages", known).await.status,
        "consumed"
    );
    let row = h.row("probe_outbox_messages", unknown).await.unwrap();
    assert_eq!((row.status.as_str(), row.retry_count), ("pending", 0));
    assert!(h.db.never_published("probe_outbox_messages", unknown).await);
    h.stop().await;
}

async fn row_with_a_broken_wrapper_ends_dead_with_the_reason(setup: Setup) {
    let mut h = Harness::start(setup).await;
    let id = h
        .insert_raw("probe_outbox_messages", "probe.run", "not json", 2)
        .await;
    h.host.outbox().wake("probe");
    let row = h.wait_final("probe_outbox_messages", id).await;
    assert_eq!(row.status, "dead");
    assert!(row.last_error.unwrap().contains("payload wrapper rejected"));
    h.stop().await;
}

async fn enqueue_joins_the_callers_transaction(setup: Setup) {
    let mut h = Harness::start(setup).await;
    match h.db.clone() {
        TestDb::Sqlite(pool) => enqueue_on_callers_pool(&h, &pool).await,
        TestDb::MariaDb(pool, _) => enqueue_on_callers_pool(&h, &pool).await,
        TestDb::Postgres(pool, _) => enqueue_on_callers_pool(&h, &pool).await,
    }
    h.stop().await;
}

/// The caller's own pool of whichever backend: a rolled-back enqueue leaves nothing, a
/// committed one is consumed, an unrouted one is refused naming the type.
async fn enqueue_on_callers_pool<DB: sqlx::Database>(h: &Harness, pool: &sqlx::Pool<DB>)
where
    for<'c> sqlx::Transaction<'c, DB>: EnqueueOn,
    sqlx::pool::PoolConnection<DB>: EnqueueOn,
{
    let outbox = h.host.outbox();
    let mut tx = pool.begin().await.unwrap();
    let ticket = outbox
        .enqueue(
            &mut tx,
            switchyard::NewEvent::new("probe.run", json!({"set": {"a": "1"}})),
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        h.row("probe_outbox_messages", ticket.outbox_id)
            .await
            .is_none(),
        "rolled back with the caller"
    );
    let mut tx = pool.begin().await.unwrap();
    let ticket = outbox
        .enqueue(
            &mut tx,
            switchyard::NewEvent::new("probe.run", json!({"set": {"a": "2"}})),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let id = ticket.outbox_id;
    ticket.wake();
    assert_eq!(
        h.wait_final("probe_outbox_messages", id).await.status,
        "consumed"
    );
    assert_eq!(h.state("probe", "a").await.as_deref(), Some("2"));
    let err = outbox
        .enqueue(
            &mut pool.acquire().await.unwrap(),
            switchyard::NewEvent::new("nobody.owns", json!({})),
        )
        .await;
    assert!(err.unwrap_err().to_string().contains("nobody.owns"));
}

/// Publishes made one after another, many while the relay is busy with the earlier ones' rows:
/// their wakes alone must move every row (a wake that comes during a round makes the relay
/// claim again at once, `engine/relay.rs`). The poll is set far beyond the test's patience, so
/// a row left to the poll stays `pending` and the test fails (it does when publishes stop
/// waking their relay).
async fn a_stream_of_publishes_is_relayed_on_their_wakes_not_at_the_poll(setup: Setup) {
    let mut h = Harness::start_edited(setup, "", |text| {
        text.replace("poll_interval_ms = 250", "poll_interval_ms = 3600000")
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(h.publish("probe.run", json!({})).await);
    }
    for id in ids {
        let row = h.wait_final("probe_outbox_messages", id).await;
        assert_eq!(row.status, "consumed", "{row:?}");
    }
    h.stop().await;
}
