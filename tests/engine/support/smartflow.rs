//! The harness started from `examples/smartflow.toml` itself (the database, component paths
//! and webhook address substituted, backoff shortened), and the SmartFlow tests' helpers:
//! publish with a version, run to a final status, redeliver a duplicate.

use super::Harness;
use super::Setup;
use serde_json::{Value, json};
use std::path::Path;
use switchyard::NewEvent;
use switchyard::transport::Message;

/// The webhook address written in the example config, replaced by each test's sink.
const EXAMPLE_SINK: &str = "127.0.0.1:8099";

/// `examples/smartflow.toml` with the test's database, absolute component paths, `sink` as
/// the webhook address, and a short backoff (100 ms doubling to 400 ms) so retries are quick.
pub fn config_text(database_url: &str, sink: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/smartflow.toml")).unwrap();
    let components = root.join("build/components").canonicalize().unwrap();
    let mut out = text;
    for (from, to) in [
        (
            "database_url = \"sqlite://smartflow-demo.db\"".to_owned(),
            format!("database_url = \"{database_url}\""),
        ),
        (
            "\"../build/components/".to_owned(),
            format!("\"{}/", components.display()),
        ),
        (EXAMPLE_SINK.to_owned(), sink.to_owned()),
        (
            "backoff_base_ms = 1000".to_owned(),
            "backoff_base_ms = 100".to_owned(),
        ),
        (
            "backoff_max_ms = 32000".to_owned(),
            "backoff_max_ms = 400".to_owned(),
        ),
    ] {
        assert!(
            out.contains(&from),
            "examples/smartflow.toml no longer contains {from}"
        );
        out = out.replace(&from, &to);
    }
    out
}

/// A started host on a fresh SQLite file wired as SmartFlow, webhooks going to `sink`.
pub async fn start(sink: &str) -> Harness {
    Harness::start_from(Setup::SQLITE_EMBEDDED, |url| config_text(url, sink)).await
}

/// Publishes with an explicit event version (the scheduler and notification accept "1").
pub async fn publish_v(h: &Harness, event_type: &str, version: &str, payload: Value) -> i64 {
    h.host
        .publish(NewEvent::new(event_type, payload).version(version))
        .await
        .unwrap()
}

/// A state value parsed as JSON.
pub async fn state_json(h: &Harness, service: &str, key: &str) -> Option<Value> {
    h.state(service, key)
        .await
        .map(|s| serde_json::from_str(&s).unwrap())
}

/// Publishes and waits for the row's final status; returns (status, last_error).
pub async fn run(
    h: &Harness,
    table: &str,
    event_type: &str,
    version: &str,
    payload: Value,
) -> (String, String) {
    let id = publish_v(h, event_type, version, payload).await;
    let row = h.wait_final(table, id).await;
    (row.status, row.last_error.unwrap_or_default())
}

/// Asserts the event ends dead and its reason contains `reason`.
pub async fn assert_dead(
    h: &Harness,
    table: &str,
    event_type: &str,
    version: &str,
    payload: Value,
    reason: &str,
) {
    let (status, error) = run(h, table, event_type, version, payload.clone()).await;
    assert_eq!(status, "dead", "{event_type} {payload} should be dead");
    assert!(
        error.contains(reason),
        "{event_type} {payload}: expected {reason:?} in {error:?}"
    );
}

/// Sends the envelope of already-final row `id` through the transport again (a duplicate
/// delivery), then waits for a marker event published behind it on the same queue, so the
/// duplicate has been seen when this returns.
pub async fn redeliver(
    h: &Harness,
    service: &str,
    table: &str,
    id: i64,
    marker: (&str, &str, Value),
) {
    let row = h.row(table, id).await.unwrap();
    let wrapper: Value = serde_json::from_str(&row.payload).unwrap();
    let envelope = json!({"outbox_id": id, "event_id": id.to_string(), "event_type": row.biz_type,
        "event_version": wrapper["event_version"], "service_name": service,
        "aggregate_id": wrapper["aggregate_id"], "payload": wrapper["payload"]});
    let svc = h.host.catalog().service(service).unwrap().clone();
    let msg = Message {
        key: String::new(),
        value: envelope.to_string().into_bytes(),
        event_type: row.biz_type.clone(),
    };
    for r in h
        .transport
        .publish(switchyard::engine::channel(&svc), vec![msg])
        .await
    {
        r.unwrap();
    }
    let (event_type, version, payload) = marker;
    let marker = publish_v(h, event_type, version, payload).await;
    h.wait_final(table, marker).await;
}

/// Asserts every row of every SmartFlow table is `consumed`.
pub async fn assert_all_consumed(h: &Harness) {
    for table in [
        "agent_outbox_messages",
        "task_outbox_messages",
        "memory_outbox_messages",
        "active_scheduler_outbox_messages",
        "notification_outbox_messages",
    ] {
        for row in h.rows(table).await {
            assert_eq!(row.status, "consumed", "{table}: {row:?}");
        }
    }
}
