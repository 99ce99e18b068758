//! docs/migration.md, run: SmartFlow's services move onto Switchyard one step at a time on
//! MariaDB + Kafka, beside a stand-in for SmartFlow's Go consumer (a plain Kafka client in the
//! service's group that marks rows consumed by SQL, as SmartFlow's consumer does), with each
//! step's cut-over check (backlog 0, consumer-group lag 0) and the rollback of a service.
//!
//! The world: `agent` owns `agent.note`, `task` owns `task.note` (both handled, once moved, by
//! the probe component); before phase 1 every row sits in `agent_outbox_messages`.

use crate::smartflow_smoke::group_lag;
use crate::support::{Backend, WAIT, component, eventually, until};
use crate::testdb::{self, TestDb};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use switchyard::config::Config;
use switchyard::{NewEvent, Running, Switchyard};

/// The config of one step: each service's mode, on the test's prefix.
fn config(url: &str, prefix: &str, agent: &str, task: &str) -> String {
    let probe = component("probe");
    let brokers = crate::kafka::brokers();
    // A route's component is loaded only where its service's mode consumes here.
    format!(
        r#"database_url = "{url}"
[transport]
kind = "kafka"
brokers = "{brokers}"
session_timeout_ms = 6000
topic_wait_ms = 15000
[naming]
prefix = "{prefix}"
[relay]
poll_interval_ms = 200
[services.agent]
mode = "{agent}"
[services.task]
mode = "{task}"
[[routes]]
event_type = "agent.note"
service = "agent"
component = "{probe}"
[[routes]]
event_type = "task.note"
service = "task"
component = "{probe}"
"#,
        probe = probe.display()
    )
}

async fn open(text: &str, dir: &Path) -> Switchyard {
    let config = Config::parse(text, Path::new("step.toml"), dir.to_owned()).unwrap();
    let host = Switchyard::open(config).await.unwrap();
    host.migrate().await.unwrap();
    host
}

async fn start(host: &Switchyard) -> Running {
    let transport = host.configured_transport().await.unwrap();
    host.start(transport).await.unwrap()
}

/// SmartFlow's Go consumer of one service, as far as the outbox sees it: reads the service's
/// topic in its group from the earliest offset, marks the envelope's row consumed unless it is
/// final already (SmartFlow's idempotent consume), commits the offset after the database.
struct GoConsumer {
    handled: Arc<Mutex<Vec<i64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl GoConsumer {
    fn start(db: &TestDb, prefix: &str, service: &str) -> GoConsumer {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", crate::kafka::brokers())
            .set("group.id", format!("{prefix}-{service}-outbox-consumer"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        consumer
            .subscribe(&[&format!("{prefix}.{service}.outbox")])
            .unwrap();
        let table = format!("{service}_outbox_messages");
        let handled = Arc::new(Mutex::new(Vec::new()));
        let (db, seen) = (db.clone(), handled.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok(m) = consumer.recv().await else {
                    continue;
                };
                let envelope: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
                let id = envelope["outbox_id"].as_i64().unwrap();
                db.exec(&format!(
                    "UPDATE {table} SET status = 'consumed', consumed_at = NOW(3) \
                     WHERE id = {id} AND status NOT IN ('consumed', 'dead')"
                ))
                .await;
                seen.lock().unwrap().push(id);
                consumer.commit_message(&m, CommitMode::Sync).unwrap();
            }
        });
        GoConsumer { handled, task }
    }

    fn handled(&self) -> BTreeSet<i64> {
        self.handled.lock().unwrap().iter().copied().collect()
    }

    fn stop(self) -> BTreeSet<i64> {
        self.task.abort();
        self.handled()
    }
}

/// The cut-over check of every step: no row of `table` waiting or in flight, and `service`'s
/// consumer group has committed everything on its topic.
async fn cut_over_check(db: &TestDb, prefix: &str, service: &str) {
    let table = format!("{service}_outbox_messages");
    let open = format!("SELECT COUNT(*) FROM {table} WHERE status IN ('pending', 'published')");
    eventually(format!("{table}'s backlog to reach 0"), WAIT, || async {
        until(db.scalar(&open).await, |n| *n == 0)
    })
    .await;
    let (topic, group) = (
        format!("{prefix}.{service}.outbox"),
        format!("{prefix}-{service}-outbox-consumer"),
    );
    eventually(format!("group {group}'s lag to reach 0"), WAIT, || async {
        until(group_lag(&topic, &group), |(lag, _)| *lag == 0)
    })
    .await;
}

/// A row as SmartFlow's producer writes it before phase 1: into the shared table, its type in
/// `biz_type`, `service_name` empty.
async fn legacy_row(db: &TestDb, event_type: &str, n: usize) {
    db.exec(&format!(
        "INSERT INTO agent_outbox_messages (biz_type, service_name, topic, message_key, payload, \
         status, next_retry_at, created_at, updated_at) VALUES ('{event_type}', '', \
         'smartflow.agent.outbox', 'user-{n}', '{{\"event_type\":\"{event_type}\",\
         \"payload\":{{\"incr\":[\"handled\"]}}}}', 'pending', '2000-01-01 00:00:00', \
         '2000-01-01 00:00:00', '2000-01-01 00:00:00')"
    ))
    .await;
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.scalar(sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smartflow_moves_onto_switchyard_one_service_at_a_time_and_back() {
    let _server = testdb::SERVERS.clone().read_owned().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(Backend::MariaDb, dir.path()).await;
    let prefix = crate::kafka::unique("mig");

    // Step 0, the baseline: SmartFlow's shared table holds every service's rows.
    db.exec(
        &crate::adopt::SMARTFLOW_MYSQL.replace("probe_outbox_messages", "agent_outbox_messages"),
    )
    .await;
    for n in 0..3 {
        legacy_row(&db, "agent.note", n).await;
        legacy_row(&db, "task.note", n).await;
    }
    let host = open(&config(&url, &prefix, "external", "external"), dir.path()).await;
    let status = host.status().await.unwrap();
    assert_eq!(status[0].0.name, "agent");
    assert_eq!(
        status[0].1.foreign, 3,
        "the task rows are agent's legacy backlog"
    );

    // Step 1, per-service tables and relays: Switchyard relays both services (draining the
    // shared table into task's), SmartFlow's consumers still consume.
    let text = config(&url, &prefix, "relay", "relay");
    let host = open(&text, dir.path()).await;
    let running = start(&host).await;
    let go_agent = GoConsumer::start(&db, &prefix, "agent");
    let go_task = GoConsumer::start(&db, &prefix, "task");
    cut_over_check(&db, &prefix, "agent").await;
    cut_over_check(&db, &prefix, "task").await;
    assert_eq!(
        host.status().await.unwrap()[0].1.foreign,
        0,
        "the legacy backlog is drained"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM agent_outbox_messages WHERE handler_version = 'moved'"
        )
        .await,
        3
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM task_outbox_messages").await,
        3
    );
    assert_eq!(
        go_task.handled().len(),
        3,
        "SmartFlow's task consumer got the moved rows"
    );
    assert_eq!(go_agent.handled().len(), 3);
    let before = go_task.stop();
    running.shutdown(WAIT).await;

    // Step 2, handlers as components, one service first: task's consumer is Switchyard's, in
    // the same group, so it resumes at SmartFlow's committed offsets.
    let host = open(&config(&url, &prefix, "relay", "full"), dir.path()).await;
    let running = start(&host).await;
    for _ in 0..2 {
        let event = NewEvent::new("task.note", serde_json::json!({"incr": ["handled"]}));
        host.publish(event).await.unwrap();
    }
    cut_over_check(&db, &prefix, "task").await;
    let handled = db
        .state("task", "handled")
        .await
        .map(|v| String::from_utf8(v).unwrap());
    assert_eq!(
        handled.as_deref(),
        Some("2"),
        "only the new events ran in the component: the ones SmartFlow consumed did not run again"
    );
    running.shutdown(WAIT).await;

    // Step 3, rollback of task to SmartFlow: Switchyard relays it again and its consumer is
    // SmartFlow's, which is down for the moment: two rows are left `published`.
    let host = open(&config(&url, &prefix, "relay", "relay"), dir.path()).await;
    let running = start(&host).await;
    for _ in 0..2 {
        let event = NewEvent::new("task.note", serde_json::json!({"incr": ["handled"]}));
        host.publish(event).await.unwrap();
    }
    let in_flight = "SELECT COUNT(*) FROM task_outbox_messages WHERE status = 'published'";
    eventually("two task rows in flight", WAIT, || async {
        until(count(&db, in_flight).await, |n| *n == 2)
    })
    .await;
    running.shutdown(WAIT).await;
    // SmartFlow's relay takes only `pending` rows: hand the in-flight ones back.
    assert_eq!(host.release("task").await.unwrap(), 2);
    assert_eq!(count(&db, in_flight).await, 0);
    let pending = "SELECT COUNT(*) FROM task_outbox_messages WHERE status = 'pending' \
                   AND retry_count = 0";
    assert_eq!(
        count(&db, pending).await,
        2,
        "handed back without an attempt counted"
    );
    // SmartFlow's consumer comes back: the in-flight events on the topic reach it.
    let go_task = GoConsumer::start(&db, &prefix, "task");
    cut_over_check(&db, &prefix, "task").await;
    let after = go_task.stop();
    assert_eq!(
        after.len(),
        2,
        "SmartFlow's consumer handled the two released events"
    );
    assert!(
        after.is_disjoint(&before),
        "and nothing it had handled before"
    );
    go_agent.stop();
}
