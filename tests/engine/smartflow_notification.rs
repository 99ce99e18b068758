//! SmartFlow's notification service: the Feishu webhook through the granted outbound HTTP
//! import, one delivery per channel + dedupe key in `notification_records`, the record's
//! status, and the component's own retry of a failed send.

use crate::support::sink::Sink;
use crate::support::smartflow::{
    assert_dead, instant, publish_v, redeliver, row_json, start, start_on, wait_consumed,
};
use crate::support::{Backend, Harness};
use serde_json::{Value, json};

const NOTIFICATION: &str = "notification_outbox_messages";
const TY: &str = "notification.feishu.requested";

crate::backend_suite!(a_notification_is_sent_once_per_dedupe_key_and_recorded_sent);

fn request(dedupe_key: &str) -> Value {
    json!({"user_id": 3, "trigger_id": "t1", "preview_id": "preview-t1", "dedupe_key": dedupe_key,
           "target_url": "/assistant/conv-3", "summary_text": "file taxes now",
           "requested_at": "2026-11-29T09:44:10Z"})
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

/// The record of `dedupe_key` on the Feishu channel.
async fn record(h: &Harness, dedupe_key: &str) -> Value {
    row_json(
        &h.db,
        &format!(
            "SELECT channel, dedupe_key, user_id, trigger_id, preview_id, target_url, content, \
             status, attempt_count, max_attempts, last_error, requested_at, sent_at \
             FROM notification_records WHERE channel = 'feishu' AND dedupe_key = '{dedupe_key}'"
        ),
    )
    .await
}

async fn a_notification_is_sent_once_per_dedupe_key_and_recorded_sent(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    let key = "3:important_urgent_task:2026-11-29T09:30:00Z";
    let id = publish_v(&h, TY, "1", request(key)).await;
    wait_consumed(&h, NOTIFICATION, id).await;
    let got = sink.wait_received(1).await;
    assert_eq!(got[0]["msg_type"], "text");
    assert_eq!(
        got[0]["content"]["text"],
        "file taxes now\n/assistant/conv-3"
    );
    let r = record(&h, key).await;
    assert_eq!(
        (
            r["status"].as_str(),
            r["attempt_count"].as_i64(),
            r["max_attempts"].as_i64(),
            r["trigger_id"].as_str(),
            r["preview_id"].as_str(),
            r["content"].as_str(),
            r["last_error"].as_str(),
        ),
        (
            Some("sent"),
            Some(1),
            Some(5),
            Some("t1"),
            Some("preview-t1"),
            Some("file taxes now\n/assistant/conv-3"),
            None
        ),
        "{r}"
    );
    assert_eq!(
        instant(&r["requested_at"]),
        instant(&json!("2026-11-29T09:44:10Z"))
    );
    assert!(instant(&r["sent_at"]) > instant(&r["requested_at"]), "{r}");
    // The same dedupe key again (a new row), and the first row redelivered: nothing is sent.
    let again = publish_v(&h, TY, "1", with(request(key), "trigger_id", json!("t9"))).await;
    wait_consumed(&h, NOTIFICATION, again).await;
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
    assert_eq!(
        h.db.scalar("SELECT COUNT(*) FROM notification_records")
            .await,
        1,
        "one record per channel + dedupe key"
    );
    assert_eq!(record(&h, key).await["trigger_id"], "t1");
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
            request(&"d".repeat(256)),
            "dedupe_key is 256 bytes, at most 255 are accepted",
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
    assert_eq!(
        h.db.scalar("SELECT COUNT(*) FROM notification_records")
            .await,
        0
    );
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
    let r = record(&h, "down").await;
    assert_eq!(
        (r["status"].as_str(), r["attempt_count"].as_i64()),
        (Some("failed"), Some(1)),
        "{r}"
    );
    assert!(r["last_error"].as_str().unwrap().contains("failed"), "{r}");
    let retry = h
        .ids(NOTIFICATION)
        .await
        .into_iter()
        .find(|r| *r != id)
        .unwrap();
    let row = h.row(NOTIFICATION, retry).await.unwrap();
    assert_eq!(row.biz_type, "notification.feishu.retry.requested");
    // Its first delivery waits one backoff (SmartFlow's 5 min before the second send), the
    // second sends.
    let row = h
        .wait_row(NOTIFICATION, retry, |r| r.retry_count >= 2)
        .await;
    let error = row.last_error.unwrap();
    assert!(
        error.starts_with("webhook send ") && error.contains(" of 5 failed"),
        "{error}"
    );
    sink.set_up(true);
    let row = h.wait_final(NOTIFICATION, retry).await;
    assert_eq!(row.status, "consumed");
    let r = record(&h, "down").await;
    assert_eq!(r["status"], "sent", "{r}");
    assert!(r["attempt_count"].as_i64().unwrap() >= 3, "{r}");
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
    wait_consumed(&h, NOTIFICATION, id).await;
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
        row.retry_count, 4,
        "the wait before send 2, then sends 2, 3 and 4 were retried by the host's backoff"
    );
    let r = record(&h, "gone").await;
    assert_eq!(
        (r["status"].as_str(), r["attempt_count"].as_i64()),
        (Some("dead"), Some(5)),
        "SmartFlow's status for a notification given up: {r}"
    );
    assert!(
        r["last_error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 5 sends"),
        "{r}"
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
    wait_consumed(&h, NOTIFICATION, cfg).await;
    let channel = row_json(
        &h.db,
        "SELECT user_id, webhook_url FROM notification_channels",
    )
    .await;
    assert_eq!(channel["webhook_url"], outsider.url());
    let id = publish_v(&h, TY, "1", request("outside")).await;
    wait_consumed(&h, NOTIFICATION, id).await;
    let r = record(&h, "outside").await;
    assert_eq!(r["status"], "failed");
    let error = r["last_error"].as_str().unwrap();
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
    let err =
        crate::support::start_refused(&text, dir.path(), "an ungranted component must not load")
            .await;
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
