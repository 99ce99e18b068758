//! What an operator watches and scripts against: the backlog gauges on `/metrics` (consumer
//! lag or queue depth, rows not yet consumed, the oldest pending row's age), `status --json`,
//! `routes --json`, and the Grafana dashboard in `examples/grafana/` (every metric it queries
//! exists on a running host's `/metrics`).
//!
//! Gauges are process-wide (one Prometheus recorder per process, shared by every host these
//! tests start), so each test names its service uniquely and reads only its own series.

use crate::support::{Backend, Harness, Setup, TransportKind, WAIT, component, eventually, until};
use crate::testdb::TestDb;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use switchyard::Switchyard;
use switchyard::config::Config;
use switchyard::transport::embedded::EmbeddedTransport;
use tokio_util::sync::CancellationToken;

/// A service name no other test uses (gauges are labelled by service).
fn unique_service() -> String {
    crate::kafka::unique("obs")
}

/// A free local port for an admin endpoint the CLI must find through the config.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One service `svc` served by the probe component (`<svc>.run`), sampled every 50 ms, its
/// admin endpoint on `listen`.
fn config(url: &str, svc: &str, listen: &str, extra: &str) -> String {
    format!(
        r#"
database_url = "{url}"

[retry]
max_attempts = 3
backoff_base_ms = 10
backoff_max_ms = 40

[relay]
poll_interval_ms = 250

[admin]
listen = "{listen}"
sample_interval_ms = 50

[services.{svc}]

[[routes]]
event_type = "{svc}.run"
service = "{svc}"
component = "{probe}"
# The held invocation waits for a state lock far longer than the default 5 s deadline.
limits = {{ deadline_ms = 120000 }}
{extra}
"#,
        probe = component("probe").display(),
    )
}

/// Starts the admin endpoint of `h`'s host as `switchyard run` does, and returns its address.
async fn serve_admin(h: &Harness, stop: &CancellationToken) -> SocketAddr {
    switchyard::admin::serve(
        h.host.config().admin.listen.unwrap(),
        h.running().status(),
        stop.clone(),
    )
    .await
    .unwrap()
}

async fn get(addr: SocketAddr, path: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        ureq::get(&format!("http://{addr}{path}"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The value of the series `name` whose labels include every `labels` pair, if exposed.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until the gauge `name` of `svc` (and `labels`) satisfies `holds`, and returns it.
async fn gauge(
    addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    what: &str,
    holds: impl Fn(f64) -> bool,
) -> f64 {
    eventually(format!("{name} {labels:?} {what}"), WAIT, || async {
        let text = get(addr, "/metrics").await;
        match series(&text, name, labels) {
            Some(v) if holds(v) => Ok(v),
            v => Err(v),
        }
    })
    .await
}

/// Holds the state lock of `(service, key)` in a transaction of the test's own, as another
/// host's consume transaction would: a handler reading that key waits until it is released.
enum StateLock {
    MariaDb(sqlx::Transaction<'static, sqlx::MySql>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl StateLock {
    async fn take(db: &TestDb, service: &str, key: &str) -> StateLock {
        let sql = "INSERT INTO switchyard_state_locks (service, state_key) VALUES";
        match db {
            TestDb::MariaDb(pool, _) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{sql} (?, ?) ON DUPLICATE KEY UPDATE state_key = state_key"
                )))
                .bind(service)
                .bind(key)
                .execute(&mut *tx)
                .await
                .unwrap();
                StateLock::MariaDb(tx)
            }
            TestDb::Postgres(pool, _) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{sql} ($1, $2) ON CONFLICT (service, state_key) \
                     DO UPDATE SET state_key = excluded.state_key"
                )))
                .bind(service)
                .bind(key)
                .execute(&mut *tx)
                .await
                .unwrap();
                StateLock::Postgres(tx)
            }
            TestDb::Sqlite(_) => {
                panic!("SQLite has one write lock for everything: hold a consumer on a server")
            }
        }
    }

    async fn release(self) {
        match self {
            StateLock::MariaDb(tx) => tx.rollback().await.unwrap(),
            StateLock::Postgres(tx) => tx.rollback().await.unwrap(),
        }
    }
}

mod held_consumer {
    use crate::support::Setup;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_embedded() {
        super::lag_rises_while_the_consumer_is_held_and_returns_to_0_after(Setup::MARIADB_EMBEDDED)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_embedded() {
        super::lag_rises_while_the_consumer_is_held_and_returns_to_0_after(Setup::POSTGRES_EMBEDDED)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_kafka() {
        super::lag_rises_while_the_consumer_is_held_and_returns_to_0_after(Setup::MARIADB_KAFKA)
            .await
    }
}

/// The consumer is held inside its first event (its handler waits for a state lock another
/// transaction holds) while three more are published: the lag (embedded: the queue's depth plus
/// what the consumer took and has not acknowledged, so the held event and the three behind it,
/// whether still queued or taken into the next batch; Kafka: the group's lag) and the
/// published-not-consumed rows rise on `/metrics`; once the lock is released every row is
/// consumed and both return to 0.
async fn lag_rises_while_the_consumer_is_held_and_returns_to_0_after(setup: Setup) {
    let svc = unique_service();
    let listen = format!("127.0.0.1:{}", free_port());
    let transport = match setup.transport {
        TransportKind::Embedded => String::new(),
        TransportKind::Kafka => crate::kafka::config_extra(),
    };
    let mut h = Harness::start_from(setup, |url| config(url, &svc, &listen, &transport)).await;
    let stop = CancellationToken::new();
    let addr = serve_admin(&h, &stop).await;
    let table = format!("{svc}_outbox_messages");
    let run = format!("{svc}.run");
    let lag = [("service", svc.as_str())];
    let published = [("service", svc.as_str()), ("status", "published")];

    let lock = StateLock::take(&h.db, &svc, "gate").await;
    let first = h.publish(&run, json!({"incr": ["gate"]})).await;
    eventually("the first event's handler to start", WAIT, || async {
        until(h.running().counters().invocations_started(&run), |n| {
            *n >= 1
        })
    })
    .await;
    let mut waiting = Vec::new();
    for i in 0..3 {
        // One at a time, each its own producer batch (tansu's watermarks lag multi-record
        // batches), each on the transport before the next.
        let id = h.publish(&run, json!({"set": {"n": i.to_string()}})).await;
        h.wait_row(&table, id, |r| r.status == "published").await;
        waiting.push(id);
    }
    // Embedded: exactly the held event and the three behind it. Kafka: the held one is not
    // committed either (a broker's watermark may lag, so only "above 0").
    let embedded = setup.transport == TransportKind::Embedded;
    gauge(
        addr,
        "switchyard_consumer_lag_messages",
        &lag,
        "the unacknowledged events while the consumer is held",
        |v| if embedded { v == 4.0 } else { v > 0.0 },
    )
    .await;
    gauge(
        addr,
        "switchyard_outbox_rows",
        &published,
        "at least the 3 queued rows (published, not consumed)",
        |v| v >= 3.0,
    )
    .await;
    assert_eq!(
        h.running().counters().invocations_started(&run),
        1,
        "nothing ran behind the held event"
    );

    lock.release().await;
    for id in std::iter::once(first).chain(waiting) {
        assert_eq!(h.wait_final(&table, id).await.status, "consumed");
    }
    gauge(
        addr,
        "switchyard_consumer_lag_messages",
        &lag,
        "back to 0",
        |v| v == 0.0,
    )
    .await;
    gauge(
        addr,
        "switchyard_outbox_rows",
        &published,
        "back to 0",
        |v| v == 0.0,
    )
    .await;
    stop.cancel();
    h.stop().await;
}

crate::backend_suite!(oldest_pending_age_grows_and_status_json_matches_the_database);

/// A pending row nobody consumes (an unrouted type in the service's table): its age on
/// `/metrics` grows from one sample to the next; `status --json` parses, its counts are the
/// database's own, it shows the row as foreign with an age, and the running host's routes.
async fn oldest_pending_age_grows_and_status_json_matches_the_database(backend: Backend) {
    let svc = unique_service();
    let listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    let setup = Setup {
        backend,
        transport: TransportKind::Embedded,
    };
    let mut h = Harness::start_from(setup, |url| {
        let text = config(url, &svc, &listen, "");
        std::fs::write(&file, &text).unwrap();
        text
    })
    .await;
    let stop = CancellationToken::new();
    let addr = serve_admin(&h, &stop).await;
    let table = format!("{svc}_outbox_messages");
    let run = format!("{svc}.run");

    let ok = h.publish(&run, json!({})).await;
    let dead = h
        .publish(&run, json!({"action": "dead", "reason": "no"}))
        .await;
    h.wait_final(&table, ok).await;
    h.wait_final(&table, dead).await;
    h.insert_raw(&table, "nobody.handles", "{}", 20).await;

    let age = [("service", svc.as_str())];
    let name = "switchyard_outbox_oldest_pending_age_seconds";
    let first = gauge(addr, name, &age, "above 0", |v| v > 0.0).await;
    gauge(addr, name, &age, "grown since the first sample", |v| {
        v > first
    })
    .await;
    let pending = [("service", svc.as_str()), ("status", "pending")];
    gauge(addr, "switchyard_outbox_rows", &pending, "1", |v| v == 1.0).await;

    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["status", "-c", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = report["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{report}");
    let s = &services[0];
    assert_eq!(
        (s["service"].as_str(), s["mode"].as_str()),
        (Some(svc.as_str()), Some("full"))
    );
    let mut in_db = BTreeMap::new();
    for status in ["pending", "published", "consumed", "dead"] {
        let n =
            h.db.scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE status = '{status}'"
            ))
            .await;
        in_db.insert(status.to_owned(), json!(n));
    }
    let counts: BTreeMap<String, Value> = serde_json::from_value(s["counts"].clone()).unwrap();
    assert_eq!(counts, in_db, "{report}");
    assert_eq!(
        (
            counts["consumed"].as_i64(),
            counts["dead"].as_i64(),
            counts["pending"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(s["foreign"], 1, "{report}");
    assert!(
        s["oldest_pending_age_seconds"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let admin = &report["admin"];
    assert_eq!(admin["reachable"], true, "{report}");
    let routes = admin["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "{report}");
    assert_eq!(routes[0]["event_type"], run.as_str());
    assert_eq!(
        routes[0]["version"],
        crate::support::hash_of(&component("probe"))
    );
    assert_eq!(routes[0]["health"]["unhealthy"], false);

    // The human table stays the default.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["status", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("service "), "{text}");
    assert!(text.contains(&svc) && text.contains(&run), "{text}");
    stop.cancel();
    h.stop().await;
}

/// `routes --json` shows each route's service, names and mode, its grants (env names, never
/// values) and its effective limits: `[limits]` with the route's overrides.
#[test]
fn routes_json_shows_each_routes_grants_and_effective_limits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let file = dir.path().join("switchyard.toml");
    // Appended to config_text's last route, `sink.note`.
    let extra = r#"
limits = { deadline_ms = 200, fuel = 5000000 }
env = { WEBHOOK_TOKEN = "s3cret-value" }
allowed_hosts = ["127.0.0.1:8080"]
preopened_dirs = [{ host = "data", guest = "/data" }]

[limits]
max_emits = 7
"#;
    let url = format!("sqlite://{}", dir.path().join("unused.db").display());
    std::fs::write(&file, crate::support::config_text(&url, extra)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["routes", "-c", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("s3cret-value"), "an env value was printed");
    assert!(
        !dir.path().join("unused.db").exists(),
        "routes opened the database"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let route = |t: &str| {
        report["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["event_type"] == t)
            .unwrap_or_else(|| panic!("no route {t}: {report}"))
            .clone()
    };
    let task = route("task.urgency.promote.requested");
    assert_eq!(
        (
            task["service"].as_str(),
            task["mode"].as_str(),
            task["table"].as_str(),
            task["topic"].as_str(),
            task["group"].as_str(),
        ),
        (
            Some("task"),
            Some("full"),
            Some("task_outbox_messages"),
            Some("smartflow.task.outbox"),
            Some("smartflow-task-outbox-consumer")
        )
    );
    assert_eq!(task["grants"]["sql_tables"], json!({"tasks": "rw"}));
    assert_eq!(task["grants"]["emits"], json!([]));
    assert_eq!(task["limits"]["deadline_ms"], 5000);
    assert_eq!(task["limits"]["max_emits"], 7, "[limits] applies");
    assert_eq!(task["fuel"], Value::Null);
    assert!(task["component"].as_str().unwrap().ends_with("task.wasm"));

    let probe = route("probe.run");
    assert_eq!(
        probe["grants"]["emits"],
        json!(["probe.run", "sink.note", "task.record.requested"])
    );

    let sink = route("sink.note");
    let g = &sink["grants"];
    assert_eq!(g["env"], json!(["WEBHOOK_TOKEN"]));
    assert_eq!(g["allowed_hosts"], json!(["127.0.0.1:8080"]));
    assert_eq!(g["preopened_dirs"][0]["guest"], "/data");
    assert!(
        Path::new(g["preopened_dirs"][0]["host"].as_str().unwrap()).ends_with("data"),
        "{g}"
    );
    assert_eq!(sink["limits"]["deadline_ms"], 200, "the route's override");
    assert_eq!(sink["limits"]["memory_bytes"], 67108864, "the default");
    assert_eq!(sink["limits"]["max_emits"], 7);
    assert_eq!(sink["fuel"], 5000000);
    assert_eq!(sink["overridden"], json!(["deadline_ms", "fuel"]));

    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["routes", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("event type"), "{text}");
    assert!(
        text.contains("allowed_hosts  127.0.0.1:8080") && text.contains("deadline 200 ms"),
        "{text}"
    );
}

/// The metric names a PromQL expression reads: identifiers that are not functions (followed
/// by `(`), aggregation operators, keywords, label names (inside `by (...)` or `{...}`) or
/// strings.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let (mut i, mut braces, mut grouping) = (0, 0, false);
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
        } else if c == '{' {
            braces += 1;
        } else if c == '}' {
            braces -= 1;
        } else if c == ')' {
            grouping = false;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i + 1 < chars.len()
                && (chars[i + 1].is_ascii_alphanumeric() || "_:".contains(chars[i + 1]))
            {
                i += 1;
            }
            let word: String = chars[start..=i].iter().collect();
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            // Aggregation operators may be followed by `by (...)` instead of `(`.
            let keyword = [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
                "offset",
                "bool",
                "and",
                "or",
                "unless",
                "sum",
                "min",
                "max",
                "avg",
                "group",
                "stddev",
                "stdvar",
                "count",
                "count_values",
                "bottomk",
                "topk",
                "quantile",
                "limitk",
                "limit_ratio",
            ]
            .contains(&word.as_str());
            if keyword && matches!(word.as_str(), "by" | "without" | "on" | "ignoring") {
                grouping = true;
            }
            if braces == 0 && !grouping && !keyword && next != Some(&'(') {
                names.push(word);
            }
        }
        i += 1;
    }
    names
}

#[test]
fn promql_metric_names_are_told_from_functions_labels_and_keywords() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, service) (rate(switchyard_invocation_seconds_bucket{service=~"a|b"}[5m])))"#
        ),
        ["switchyard_invocation_seconds_bucket"]
    );
    assert_eq!(
        metric_names("max by (service) (switchyard_consumer_lag_messages) or vector(0)"),
        ["switchyard_consumer_lag_messages"]
    );
}

/// Every metric the Grafana dashboard queries is on a running host's `/metrics` once it has
/// relayed, handled, sampled and reloaded something.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_queries_is_exposed_by_a_running_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/grafana/switchyard.json")).unwrap(),
    )
    .unwrap();
    let mut wanted = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "no metric in {expr:?}");
            wanted.extend(names);
        }
    }
    assert!(
        wanted.len() >= 8,
        "the dashboard queries too little: {wanted:?}"
    );

    // A real host from a config file (so a config reload has a file to read).
    let svc = unique_service();
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.wasm");
    std::fs::copy(component("probe"), &probe).unwrap();
    let file = dir.path().join("switchyard.toml");
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let text = config(&url, &svc, "127.0.0.1:0", "")
        .replace(&component("probe").display().to_string(), "probe.wasm");
    std::fs::write(&file, &text).unwrap();
    let host = Switchyard::open(Config::load(&file).unwrap())
        .await
        .unwrap();
    host.migrate().await.unwrap();
    let running = host
        .start(Arc::new(EmbeddedTransport::new()))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let addr = switchyard::admin::serve(
        host.config().admin.listen.unwrap(),
        running.status(),
        stop.clone(),
    )
    .await
    .unwrap();
    let run = format!("{svc}.run");
    for (n, payload) in [json!({}), json!({"action": "retry", "reason": "again"})]
        .into_iter()
        .enumerate()
    {
        host.publish(switchyard::NewEvent::new(run.clone(), payload))
            .await
            .unwrap();
        eventually("the event to be handled", WAIT, || async {
            until(running.counters().invocations_finished(&run), |f| {
                *f > n as u64
            })
        })
        .await;
    }
    // The sampling interval applies live: a reload changing it is not refused as a restart key.
    std::fs::write(
        &file,
        text.replace("sample_interval_ms = 50", "sample_interval_ms = 60"),
    )
    .unwrap();
    running.reload_config().await.unwrap();
    assert_eq!(host.config().admin.sample_interval_ms, 60);
    std::fs::write(&probe, b"not a component").unwrap();
    assert!(!running.reload_component(&probe).await);

    let missing = eventually("every dashboard metric on /metrics", WAIT, || async {
        let text = get(addr, "/metrics").await;
        let exposed: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|m| !exposed.contains(m.as_str()))
            .collect();
        until(missing.len(), |n| *n == 0).map_err(|_| format!("missing {missing:?}"))
    })
    .await;
    assert_eq!(missing, 0);
    stop.cancel();
    assert!(running.shutdown(std::time::Duration::from_secs(10)).await);
}
