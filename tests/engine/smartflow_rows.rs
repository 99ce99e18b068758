//! SmartFlow's rules for what a row holds, kept by the host on every backend: a service's own
//! retry policy (`[services.X.retry]`) in the `max_retry` of rows inserted into its table,
//! whoever inserts them; a handler's `delay-ms` in `next_retry_at`, within the service's
//! backoff ceiling; the service's topic in the `topic` column; the message key as the
//! aggregate id when none is given.

use crate::support::{Backend, Harness, Setup, TransportKind, WAIT, eventually};
use serde_json::{Value, json};
use std::time::Duration;
use switchyard::NewEvent;
use switchyard::store::{later, now};

const PROBE: &str = "probe_outbox_messages";
const SINK: &str = "sink_outbox_messages";

crate::backend_suite!(
    a_services_retry_policy_applies_to_every_row_of_its_table_and_a_handler_delay_within_it,
    rows_carry_their_services_topic_and_the_key_as_aggregate_id_by_default,
);

/// `[services.sink.retry]`: SmartFlow-notification-like, but with a 60 s ceiling so a test
/// can see a 30 s hint honoured.
const SINK_RETRY: &str =
    "[services.sink.retry]\nmax_attempts = 5\nbackoff_base_ms = 10\nbackoff_max_ms = 60000\n";

async fn start(backend: Backend) -> Harness {
    let setup = Setup {
        backend,
        transport: TransportKind::Embedded,
    };
    Harness::start_with(setup, SINK_RETRY).await
}

/// How many rows of `table` have id `id` and match `condition`.
async fn count(h: &Harness, table: &str, id: i64, condition: &str) -> i64 {
    h.db.scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE id = {id} AND {condition}"
    ))
    .await
}

async fn a_services_retry_policy_applies_to_every_row_of_its_table_and_a_handler_delay_within_it(
    backend: Backend,
) {
    let mut h = start(backend).await;
    // The probe (service `probe`, `[retry]`: 3 attempts) emits a note into `sink`, whose
    // handler asks to be retried in 30 s.
    let note = json!({"action": "retry", "reason": "not yet", "delay_ms": 30_000});
    let id = h
        .publish(
            "probe.run",
            json!({"emit": [{"event_type": "sink.note", "payload": note}]}),
        )
        .await;
    assert_eq!(h.wait_final(PROBE, id).await.status, "consumed");
    assert_eq!(count(&h, PROBE, id, "max_retry = 3").await, 1, "[retry]");
    let sink = h.ids(SINK).await;
    assert_eq!(sink.len(), 1);
    assert_eq!(
        count(&h, SINK, sink[0], "max_retry = 5").await,
        1,
        "an emitted row takes its owner's policy, not the emitter's"
    );
    let published = h
        .host
        .publish(NewEvent::new("sink.note", json!({"action": "ack"})))
        .await
        .unwrap();
    assert_eq!(count(&h, SINK, published, "max_retry = 5").await, 1);
    // The handler's 30 s: far beyond the service's 10 ms first backoff, within its 60 s
    // ceiling, so the row is due in 30 s.
    let row = h.wait_row(SINK, sink[0], |r| r.retry_count == 1).await;
    assert_eq!(
        (row.status.as_str(), row.last_error.as_deref()),
        ("pending", Some("not yet"))
    );
    // (The other sink row is consumed first, so the earliest pending row is the one retried.)
    assert_eq!(h.wait_final(SINK, published).await.status, "consumed");
    let due = h
        .host
        .store()
        .next_due(SINK, &["sink.note".to_owned()])
        .await
        .unwrap()
        .unwrap();
    let t = now();
    assert!(
        due > later(t, Duration::from_secs(25)) && due <= later(t, Duration::from_secs(30)),
        "due 30 s after the failed attempt: {due} (now {t})"
    );
    // In `probe` (ceiling 40 ms) an hour's hint is cut to the ceiling: the row runs out its 3
    // attempts at once instead of waiting hours.
    let hour = json!({"action": "retry", "reason": "in an hour", "delay_ms": 3_600_000});
    let capped = h.publish("probe.run", hour).await;
    let row = h.wait_final(PROBE, capped).await;
    assert_eq!((row.status.as_str(), row.retry_count), ("dead", 3));
    h.stop().await;
}

/// The wrapper in a row's `payload` column.
async fn wrapper(h: &Harness, table: &str, id: i64) -> Value {
    serde_json::from_str(&h.row(table, id).await.unwrap().payload).unwrap()
}

async fn rows_carry_their_services_topic_and_the_key_as_aggregate_id_by_default(backend: Backend) {
    let mut h = start(backend).await;
    let host = &h.host;
    let publish = |event: NewEvent| async move { host.publish(event).await.unwrap() };
    let keyed = publish(NewEvent::new("probe.run", json!({})).key("user-3")).await;
    let both = publish(
        NewEvent::new("probe.run", json!({}))
            .key("user-3")
            .aggregate("task-9"),
    )
    .await;
    // Neither a key nor an aggregate id; its handler emits a note with a key and no aggregate.
    let emit = json!({"emit": [{"event_type": "sink.note", "payload": {}, "key": "user-7"}]});
    let neither = publish(NewEvent::new("probe.run", emit)).await;
    for (id, aggregate) in [
        (keyed, Some("user-3")),
        (both, Some("task-9")),
        (neither, None),
    ] {
        assert_eq!(
            wrapper(&h, PROBE, id).await["aggregate_id"].as_str(),
            aggregate,
            "row {id}"
        );
    }
    assert_eq!(h.wait_final(PROBE, neither).await.status, "consumed");
    let sink = eventually("the emitted note", WAIT, || async {
        match h.ids(SINK).await[..] {
            [id] => Ok(id),
            ref other => Err(other.to_vec()),
        }
    })
    .await;
    assert_eq!(
        wrapper(&h, SINK, sink).await["aggregate_id"].as_str(),
        Some("user-7"),
        "an emit without an aggregate id takes its key"
    );
    for (table, id, topic) in [
        (PROBE, keyed, "smartflow.probe.outbox"),
        (SINK, sink, "smartflow.sink.outbox"),
    ] {
        assert_eq!(
            h.db.text(&format!("SELECT topic FROM {table} WHERE id = {id}"))
                .await,
            topic,
            "the owner's topic is written into the row"
        );
    }
    h.stop().await;
}
