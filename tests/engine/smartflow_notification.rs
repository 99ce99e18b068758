//! SmartFlow's notification service: the Feishu webhook through the granted outbound HTTP
//! import, one delivery per dedupe key, the delivery record, and the component's own retry of a
//! failed send.

use crate::support::sink::Sink;
use crate::support::smartflow::{assert_dead, publish_v, redeliver, start, state_json};
use serde_json::{Value, json};

const NOTIFICATION: &str = "notification_outbox_messages";
const TY: &str = "notification.feishu.requested";

fn request(dedupe_key: &str) -> Value {
    json!({"user_id": 3, "trigger_id": "t1", "preview_id": "preview-t1", "dedupe_key": dedupe_key,
           "target_url": "/assistant/conv-3", "summary_text": "file taxes now",
           "requested_at": "2026-11-29T09:44:10Z"})
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_sent_once_per_dedupe_key_and_recorded_sent() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let id = publish_v(
        &h,
        TY,
        "1",
        request("3:important_urgent_task:2026-11-29T09:30:00Z"),
    )
    .await;
    assert_eq!(h.wait_final(NOTIFICATION, id).await.status, "consumed");
    let got = sink.wait_received(1).await;
    assert_eq!(got[0]["msg_type"], "text");
    assert_eq!(
        got[0]["content"]["text"],
        "file taxes now\n/assistant/conv-3"
    );
    let record = state_json(
        &h,
        "notification",
        "delivery/3:important_urgent_task:2026-11-29T09:30:00Z",
    )
    .await
    .unwrap();
    assert_eq!(record["status"], "sent");
    assert_eq!(record["transitions"], json!(["pending", "sending", "sent"]));
    assert_eq!(record["attempts"], 1);
    // The same dedupe key again (a new row), and the first row redelivered: nothing is sent.
    let again = publish_v(
        &h,
        TY,
        "1",
        with(
            request("3:important_urgent_task:2026-11-29T09:30:00Z"),
            "trigger_id",
            json!("t9"),
        ),
    )
    .await;
    assert_eq!(h.wait_final(NOTIFICATION, again).await.status, "consumed");
    redeliver(
        &h,
        "notification",
        NOTIFICATION,
        id,
        (
            TY,
            "1",
            with(request("marker"), "target_url", json!("/nope")),
        ),
    )
    .await;
    assert_eq!(
        sink.received().len(),
        1,
        "one webhook per dedupe key: {:?}",
        sink.received()
    );
    assert!(
        h.rows(NOTIFICATION)
            .await
            .iter()
            .all(|r| r.biz_type != "notification.feishu.retry.requested")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_notification_requests_and_versions_are_dead_and_send_nothing() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    for (payload, reason) in [
        (
            with(request("d"), "user_id", json!(0)),
            "user_id must be positive",
        ),
        (
            with(request("d"), "trigger_id", json!("")),
            "trigger_id must not be empty",
        ),
        (
            with(request("d"), "preview_id", json!("")),
            "preview_id must not be empty",
        ),
        (
            with(request("d"), "dedupe_key", json!("")),
            "dedupe_key must not be empty",
        ),
        (
            with(
                request("d"),
                "target_url",
                json!("https://evil.example/assistant/c"),
            ),
            "target_url must be a path starting with /assistant/ and no scheme",
        ),
        (
            with(request("d"), "target_url", json!("/settings/c")),
            "target_url must be a path starting with /assistant/",
        ),
        (
            with(request("d"), "requested_at", json!("now")),
            "requested_at is not an RFC 3339 time",
        ),
        (
            with(
                with(request("d"), "summary_text", json!("")),
                "fallback_text",
                json!(""),
            ),
            "nothing to send",
        ),
    ] {
        assert_dead(&h, NOTIFICATION, TY, "1", payload, reason).await;
    }
    for version in ["v1", "2"] {
        assert_dead(
            &h,
            NOTIFICATION,
            TY,
            version,
            request("d"),
            "only \"1\" is accepted",
        )
        .await;
    }
    assert_eq!(h.state("notification", "delivery/d").await, None);
    assert!(sink.received().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_down_sink_is_recorded_failed_retried_and_sent_once_it_returns() {
    let sink = Sink::start().await;
    sink.set_up(false);
    let mut h = start(&sink.addr).await;
    let id = publish_v(&h, TY, "1", request("down")).await;
    assert_eq!(
        h.wait_final(NOTIFICATION, id).await.status,
        "consumed",
        "the request itself is done"
    );
    let record = state_json(&h, "notification", "delivery/down")
        .await
        .unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["attempts"], 1);
    assert!(
        record["last_error"].as_str().unwrap().contains("failed"),
        "{record}"
    );
    let retry = h
        .ids(NOTIFICATION)
        .await
        .into_iter()
        .find(|r| *r != id)
        .unwrap();
    let row = h.row(NOTIFICATION, retry).await.unwrap();
    assert_eq!(row.biz_type, "notification.feishu.retry.requested");
    let row = h
        .wait_row(NOTIFICATION, retry, |r| r.retry_count >= 1)
        .await;
    assert!(
        row.last_error
            .unwrap()
            .contains("webhook send 2 of 5 failed")
    );
    sink.set_up(true);
    let row = h.wait_final(NOTIFICATION, retry).await;
    assert_eq!(row.status, "consumed");
    let record = state_json(&h, "notification", "delivery/down")
        .await
        .unwrap();
    assert_eq!(record["status"], "sent", "{record}");
    assert!(record["attempts"].as_u64().unwrap() >= 3, "{record}");
    assert_eq!(sink.wait_received(1).await.len(), 1);
    assert_eq!(
        h.rows(NOTIFICATION).await.len(),
        2,
        "one retry event, retried by backoff, not re-emitted"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_stays_down_is_given_up_after_five_sends_not_retried_forever() {
    let sink = Sink::start().await;
    sink.set_up(false);
    let mut h = start(&sink.addr).await;
    let id = publish_v(&h, TY, "1", request("gone")).await;
    assert_eq!(h.wait_final(NOTIFICATION, id).await.status, "consumed");
    let retry = h
        .ids(NOTIFICATION)
        .await
        .into_iter()
        .find(|r| *r != id)
        .unwrap();
    let row = h.wait_final(NOTIFICATION, retry).await;
    assert_eq!(
        row.status, "consumed",
        "the component gives up, the host does not: {row:?}"
    );
    assert_eq!(
        row.retry_count, 3,
        "sends 2, 3 and 4 were retried by the host's backoff"
    );
    let record = state_json(&h, "notification", "delivery/gone")
        .await
        .unwrap();
    assert_eq!(
        (record["status"].as_str(), record["gave_up"].as_bool()),
        (Some("failed"), Some(true))
    );
    assert_eq!(record["attempts"], 5);
    assert!(
        record["last_error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 5 sends"),
        "{record}"
    );
    assert_eq!(
        h.rows(NOTIFICATION).await.len(),
        2,
        "no further retry event"
    );
    assert!(sink.received().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_component_cannot_reach_a_host_outside_its_list() {
    let sink = Sink::start().await;
    let outsider = Sink::start().await;
    let mut h = start(&sink.addr).await;
    // Point the user's channel at a live server that is not in allowed_hosts.
    let cfg = publish_v(
        &h,
        "notification.channel.configure.requested",
        "",
        json!({"user_id": 3, "webhook_url": outsider.url()}),
    )
    .await;
    assert_eq!(h.wait_final(NOTIFICATION, cfg).await.status, "consumed");
    let id = publish_v(&h, TY, "1", request("outside")).await;
    assert_eq!(h.wait_final(NOTIFICATION, id).await.status, "consumed");
    let record = state_json(&h, "notification", "delivery/outside")
        .await
        .unwrap();
    assert_eq!(record["status"], "failed");
    let error = record["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "host {} is not in this route's allowed_hosts",
            outsider.addr
        )),
        "{error}"
    );
    assert!(outsider.received().is_empty() && sink.received().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_importing_outbound_http_without_the_grant_is_refused_at_start() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let text = crate::support::smartflow::config_text(&url, &sink.addr)
        .replace(&format!("allowed_hosts = [\"{}\"]\n", sink.addr), "");
    assert!(!text.contains("allowed_hosts"), "every grant removed");
    let config = switchyard::config::Config::parse(
        &text,
        std::path::Path::new("s.toml"),
        dir.path().to_owned(),
    )
    .unwrap();
    let host = switchyard::Switchyard::open(config).await.unwrap();
    let transport = std::sync::Arc::new(switchyard::transport::embedded::EmbeddedTransport::new());
    let err = format!(
        "{:#}",
        host.start(transport)
            .await
            .err()
            .expect("an ungranted component must not load")
    );
    assert!(
        err.contains("notification.wasm")
            && err.contains("imports outbound-http but its route does not grant it")
            && err.contains("allowed_hosts"),
        "{err}"
    );
}

#[test]
fn a_malformed_allowed_hosts_entry_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let text = crate::support::smartflow::config_text(&url, "http://127.0.0.1:1/hook");
    let err = switchyard::config::Config::parse(
        &text,
        std::path::Path::new("s.toml"),
        dir.path().to_owned(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("allowed_hosts entry \"http://127.0.0.1:1/hook\" must be host:port"),
        "{err}"
    );
}
