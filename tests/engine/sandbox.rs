//! A hostile or broken handler costs only its own invocation: each attack from the `hostile`
//! test component ends with the right reason, keeps none of its writes, and the host and a
//! well-behaved route keep going. Grants open exactly what they name.

use crate::support::{Harness, Setup, WAIT, component, eventually, until};
use serde_json::json;
use std::time::Instant;

const TABLE: &str = "hostile_outbox_messages";

/// Routes of the hostile component: a limited one, one with grants, one with a fuel budget.
fn hostile_routes(data_dir: &std::path::Path) -> String {
    let hostile = component("hostile");
    format!(
        r#"
[services.hostile]

[[routes]]
event_type = "hostile.run"
service = "hostile"
component = "{hostile}"
limits = {{ deadline_ms = 2000, memory_bytes = 16777216, max_emits = 10, max_value_bytes = 65536 }}
emits = ["sink.note"]

[[routes]]
event_type = "granted.run"
service = "hostile"
component = "{hostile}"
env = {{ GREETING = "hello" }}
preopened_dirs = [{{ host = "{data}", guest = "/data" }}]

[[routes]]
event_type = "fueled.run"
service = "hostile"
component = "{hostile}"
limits = {{ fuel = 1000000 }}
"#,
        hostile = hostile.display(),
        data = data_dir.display(),
    )
}

struct Sandbox {
    h: Harness,
    _data: tempfile::TempDir,
}

async fn sandbox() -> Sandbox {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("x.txt"), b"hello").unwrap();
    let h = Harness::start_with(Setup::SQLITE_EMBEDDED, &hostile_routes(data.path())).await;
    Sandbox { h, _data: data }
}

/// Runs one attack to its final state; returns (status, last_error).
async fn attack(h: &Harness, event_type: &str, attack: &str, arg: &str) -> (String, String) {
    let id = h
        .publish(event_type, json!({"attack": attack, "arg": arg}))
        .await;
    let row = h.wait_final(TABLE, id).await;
    (row.status, row.last_error.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_hits_its_deadline_while_another_route_keeps_its_pace() {
    let mut s = sandbox().await;
    let h = &s.h;
    // Baseline: the well-behaved route alone.
    let baseline = consume_tasks(h, 0).await;
    let looping = h.publish("hostile.run", json!({"attack": "loop"})).await;
    let counters = h.running().counters();
    eventually(
        "the infinite loop's first invocation to start",
        WAIT,
        || async { until(counters.invocations_started("hostile.run"), |n| *n >= 1) },
    )
    .await;
    let with_hostile = consume_tasks(h, 1000).await;
    // The loop's first attempt (2 s deadline) is still running: the other route did not wait.
    let in_flight = (
        counters.invocations_started("hostile.run"),
        counters.invocations_finished("hostile.run"),
    );
    assert_eq!(
        in_flight,
        (1, 0),
        "(started, finished) invocations of the loop when the 50 task events were consumed"
    );
    println!("50 task events: {baseline:?} alone, {with_hostile:?} beside an infinite loop");
    let row = h.wait_final(TABLE, looping).await;
    assert_eq!(row.status, "dead");
    assert!(
        row.last_error
            .unwrap()
            .contains("deadline exceeded after 2000 ms")
    );
    assert_eq!(
        h.state("hostile", "hostile-was-here").await,
        None,
        "nothing of a failed invocation is kept"
    );
    s.h.stop().await;
}

async fn consume_tasks(h: &Harness, first_id: i64) -> std::time::Duration {
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            h.publish(
                "task.record.requested",
                json!({"id": first_id + i + 1, "user_id": 1, "priority": 2}),
            )
            .await,
        );
    }
    for id in ids {
        assert_eq!(
            h.wait_final("task_outbox_messages", id).await.status,
            "consumed"
        );
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_bombs_end_with_the_limit_that_stopped_them() {
    let mut s = sandbox().await;
    let (status, err) = attack(&s.h, "hostile.run", "memory", "").await;
    assert_eq!(status, "dead");
    assert!(
        err.contains("memory limit exceeded") && err.contains("16777216"),
        "{err}"
    );
    let (_, err) = attack(&s.h, "hostile.run", "recurse", "").await;
    assert!(err.contains("stack overflow"), "{err}");
    let (_, err) = attack(&s.h, "hostile.run", "table", "").await;
    assert!(err.contains("table"), "{err}");
    let (_, err) = attack(&s.h, "fueled.run", "loop", "").await;
    assert!(err.contains("fuel budget of 1000000 exhausted"), "{err}");
    assert_eq!(s.h.state("hostile", "hostile-was-here").await, None);
    // The host is still serving.
    let id =
        s.h.publish("probe.run", json!({"set": {"alive": "yes"}}))
            .await;
    assert_eq!(
        s.h.wait_final("probe_outbox_messages", id).await.status,
        "consumed"
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_imports_refuse_floods_oversized_values_and_unrouted_types() {
    let mut s = sandbox().await;
    let (status, err) = attack(&s.h, "hostile.run", "emit-flood", "sink.note").await;
    assert_eq!(status, "dead");
    assert!(
        err.contains("emit 10 refused: budget exceeded: limits.max_emits allows 10 emits"),
        "{err}"
    );
    assert!(
        s.h.rows("sink_outbox_messages").await.is_empty(),
        "a dead invocation's emits are dropped"
    );
    let (_, err) = attack(&s.h, "hostile.run", "emit-flood", "nobody.routes.this").await;
    assert!(
        err.contains("emit 0 refused") && err.contains("\"nobody.routes.this\" is not routed"),
        "{err}"
    );
    let (_, err) = attack(&s.h, "hostile.run", "oversized-state", "").await;
    assert!(
        err.contains("state refused") && err.contains("limit is 65536 bytes"),
        "{err}"
    );
    // A log flood is cut at the cap, not an error: the invocation still succeeds.
    let (status, err) = attack(&s.h, "hostile.run", "log-flood", "").await;
    assert_eq!(status, "consumed", "{err}");
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_sandbox_is_reachable_without_a_grant() {
    let mut s = sandbox().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let secret = s._data.path().join("x.txt");
    let (_, err) = attack(&s.h, "hostile.run", "read-file", secret.to_str().unwrap()).await;
    assert!(err.starts_with("read-file failed"), "{err}");
    let (_, err) = attack(&s.h, "hostile.run", "read-file", "/data/x.txt").await;
    assert!(
        err.starts_with("read-file failed"),
        "another route's grant is not this route's: {err}"
    );
    let (_, err) = attack(&s.h, "hostile.run", "env", "HOME").await;
    assert!(err.starts_with("env failed"), "{err}");
    let (_, err) = attack(&s.h, "hostile.run", "env", "GREETING").await;
    assert!(err.starts_with("env failed"), "{err}");
    let (_, err) = attack(&s.h, "hostile.run", "connect", &addr).await;
    assert!(err.starts_with("connect failed"), "{err}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "no connection may reach the listener"
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_open_exactly_what_they_name() {
    let mut s = sandbox().await;
    let (_, err) = attack(&s.h, "granted.run", "env", "GREETING").await;
    assert_eq!(err, "env GREETING=hello");
    let (_, err) = attack(&s.h, "granted.run", "env", "HOME").await;
    assert!(
        err.starts_with("env failed"),
        "only named values are visible: {err}"
    );
    let (_, err) = attack(&s.h, "granted.run", "read-file", "/data/x.txt").await;
    assert_eq!(err, "read 5 bytes of /data/x.txt");
    let (_, err) = attack(&s.h, "granted.run", "write-file", "/data/x.txt").await;
    assert!(
        err.starts_with("write-file failed"),
        "preopened dirs are read-only: {err}"
    );
    assert_eq!(
        std::fs::read(s._data.path().join("x.txt")).unwrap(),
        b"hello"
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_always_fails_is_reported_unhealthy_without_stopping_others() {
    let data = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\nunhealthy_after_ms = 0\n",
        hostile_routes(data.path())
    );
    let mut h = Harness::start_with(Setup::SQLITE_EMBEDDED, &extra).await;
    // The admin endpoint as the binary wires it (`switchyard run` with `[admin] listen`).
    let listen = h.host.config().admin.listen.unwrap();
    let addr = switchyard::admin::serve(
        listen,
        h.running.as_ref().unwrap().status(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let (status, _) = attack(&h, "hostile.run", "recurse", "").await;
    assert_eq!(status, "dead");
    let id = h.publish("probe.run", json!({})).await;
    assert_eq!(
        h.wait_final("probe_outbox_messages", id).await.status,
        "consumed"
    );
    let routes: serde_json::Value = tokio::task::spawn_blocking(move || {
        let body = ureq::get(&format!("http://{addr}/routes"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    })
    .await
    .unwrap();
    let route = |t: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["event_type"] == t)
            .unwrap()
            .clone()
    };
    let hostile = route("hostile.run");
    assert_eq!(hostile["health"]["unhealthy"], true, "{hostile}");
    assert_eq!(hostile["health"]["consecutive_failures"], 3);
    assert!(
        hostile["health"]["last_failure"]
            .as_str()
            .unwrap()
            .contains("stack overflow")
    );
    assert_eq!(
        hostile["version"],
        crate::support::hash_of(&component("hostile"))
    );
    assert_eq!(route("probe.run")["health"]["unhealthy"], false);
    // The process lives (healthz), but the host is not ready while a route is unhealthy.
    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut r = agent.get(&format!("http://{addr}{path}")).call().unwrap();
            (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
        })
    };
    assert_eq!(get("/healthz").await.unwrap().0, 200);
    let (code, body) = get("/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("route hostile.run is unhealthy"), "{body}");
    let metrics = tokio::task::spawn_blocking(move || {
        ureq::get(&format!("http://{addr}/metrics"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        metrics.contains("switchyard_route_unhealthy{event_type=\"hostile.run\"} 1"),
        "{metrics}"
    );
    h.stop().await;
}
