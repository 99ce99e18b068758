//! The Kafka transport against a real broker (tansu from `scripts/kafka.sh`, or any Kafka at
//! `SWITCHYARD_KAFKA_BROKERS`): SmartFlow's envelope, key and headers on the topic; services
//! independent; bad messages skipped, dead or dead-lettered; a broker restart mid-stream.
//! The engine suite itself also runs over Kafka (`sqlite_kafka::*`, see `support`).
//!
//! A missing broker is a failure that says how to start one, never a skip.

use crate::support::{Harness, Setup, WAIT, eventually, until};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard::store::now;
use switchyard::transport::kafka::dlq_topic;

/// The broker the suite uses.
pub fn brokers() -> String {
    std::env::var("SWITCHYARD_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Fails the test, saying how to start a broker, when nothing listens at `brokers`.
pub fn require_broker(brokers: &str) {
    let first = brokers.split(',').next().unwrap_or_default().trim();
    let reachable = first
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka broker at {first}: start one with `scripts/kafka.sh start` (scripts/test.sh \
         does), or point SWITCHYARD_KAFKA_BROKERS at a running cluster"
    );
}

/// A name no other test (or earlier run) uses: topics and groups live as long as the broker.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{:x}{:x}{}",
        std::process::id(),
        nanos & 0xffff_ffff,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Config appended for `TransportKind::Kafka`: the broker, a fresh naming prefix per test and
/// a low session timeout (tansu's first group join then takes ~3 s instead of ~23 s).
pub fn config_extra() -> String {
    let brokers = brokers();
    require_broker(&brokers);
    format!(
        "[transport]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\nsession_timeout_ms = 6000\n\
         topic_wait_ms = 15000\n\n[naming]\nprefix = \"{}\"\n",
        unique("t")
    )
}

fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// Writes raw bytes straight to a topic, as a foreign or broken producer would.
async fn write_raw(topic: &str, key: &str, value: &[u8]) {
    let producer: FutureProducer = client(&brokers()).create().unwrap();
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Reads a topic from the beginning with an independent consumer (no group, every partition
/// assigned) until `done` holds for what was read, or fails after [`WAIT`].
async fn read_topic(topic: &str, done: impl Fn(&[OwnedMessage]) -> bool) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = client(&brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    assert!(tpl.count() > 0, "topic {topic} has no partitions");
    consumer.assign(&tpl).unwrap();
    let started = Instant::now();
    let mut read = Vec::new();
    while !done(&read) {
        let left = WAIT.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "reading {topic}: condition not met after {} messages",
            read.len()
        );
        if let Ok(m) = tokio::time::timeout(left, consumer.recv()).await {
            read.push(m.unwrap().detach());
        }
    }
    read
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn json_of(m: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(serde_json::Value::Null)
}

/// A producer's W3C trace context.
const PRODUCER_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_row_reaches_its_topic_as_smartflows_envelope_with_key_and_headers() {
    let mut h = Harness::start(Setup::SQLITE_KAFKA).await;
    let event = switchyard::NewEvent::new(
        "task.record.requested",
        json!({"id": 9, "user_id": 4, "priority": 2}),
    )
    .key("user-4")
    .aggregate("9")
    .traceparent(PRODUCER_TRACE);
    let id = h.host.publish(event).await.unwrap();
    assert_eq!(
        h.wait_final("task_outbox_messages", id).await.status,
        "consumed"
    );
    let task = h.host.catalog().service("task").unwrap().clone();
    assert!(task.topic.ends_with(".task.outbox") && task.group.ends_with("-task-outbox-consumer"));
    let read = read_topic(&task.topic, |r| {
        r.iter().any(|m| json_of(m)["outbox_id"] == id)
    })
    .await;
    let m = read.iter().find(|m| json_of(m)["outbox_id"] == id).unwrap();
    assert_eq!(m.key(), Some(&b"user-4"[..]), "key = the row's message_key");
    assert_eq!(
        json_of(m),
        json!({"outbox_id": id, "event_id": id.to_string(), "event_type": "task.record.requested",
               "event_version": "v1", "service_name": "task", "aggregate_id": "9",
               "payload": {"id": 9, "user_id": 4, "priority": 2}}),
        "the value is SmartFlow's envelope, field for field"
    );
    assert_eq!(
        header(m, "event_type").as_deref(),
        Some("task.record.requested")
    );
    // No exporter in this host: the producer's context travels on unchanged.
    assert_eq!(
        header(m, "traceparent").as_deref(),
        Some(PRODUCER_TRACE),
        "the row's W3C traceparent rides in the header"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_never_stalls_another_on_its_own_topic_and_group() {
    let mut h = Harness::start(Setup::SQLITE_KAFKA).await;
    let (probe, task) = {
        let c = h.host.catalog();
        (
            c.service("probe").unwrap().clone(),
            c.service("task").unwrap().clone(),
        )
    };
    assert_ne!(probe.topic, task.topic);
    assert_ne!(probe.group, task.group);
    let mut failing = Vec::new();
    for _ in 0..5 {
        failing.push(
            h.publish(
                "probe.run",
                json!({"action": "retry", "reason": "probe is down"}),
            )
            .await,
        );
    }
    let mut fine = Vec::new();
    for i in 0..50 {
        fine.push(
            h.publish(
                "task.record.requested",
                json!({"id": i + 1, "user_id": 1, "priority": 2}),
            )
            .await,
        );
    }
    for id in fine {
        assert_eq!(
            h.wait_final("task_outbox_messages", id).await.status,
            "consumed"
        );
    }
    for id in failing {
        let row = h.wait_final("probe_outbox_messages", id).await;
        assert_eq!(row.status, "dead", "{row:?}");
        assert!(row.last_error.unwrap().contains("probe is down"));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_skipped_or_dead_and_undecodable_bytes_land_in_the_dlq() {
    let mut h = Harness::start(Setup::SQLITE_KAFKA).await;
    let topic = h.host.catalog().service("probe").unwrap().topic.clone();
    // Undecodable: copied to the DLQ byte for byte, then skipped.
    let garbage: &[u8] = b"\x00not json at all\xff";
    let zero_id =
        br#"{"outbox_id":0,"event_type":"probe.run","service_name":"probe","payload":{}}"#;
    write_raw(&topic, "g", garbage).await;
    write_raw(&topic, "z", zero_id).await;
    // Another service's event on this topic: skipped, its row untouched.
    let task_row = h
        .insert_raw(
            "task_outbox_messages",
            "task.record.requested",
            r#"{"event_type":"x","payload":{}}"#,
            20,
        )
        .await;
    let foreign = json!({"outbox_id": task_row, "event_id": "1", "event_type": "task.record.requested",
        "event_version": "v1", "service_name": "task", "aggregate_id": "", "payload": {"incr": ["foreign"]}});
    write_raw(&topic, "f", foreign.to_string().as_bytes()).await;
    // An event type nobody routes, naming a real row of this service: the row ends dead.
    let unknown = h
        .insert_raw(
            "probe_outbox_messages",
            "probe.unknown",
            r#"{"event_type":"probe.unknown","payload":{}}"#,
            20,
        )
        .await;
    let env = json!({"outbox_id": unknown, "event_id": unknown.to_string(), "event_type": "probe.unknown",
        "event_version": "v1", "service_name": "probe", "aggregate_id": "", "payload": {}});
    write_raw(&topic, "u", env.to_string().as_bytes()).await;
    // Behind all of them, a good event: the consumer went past every bad one.
    let marker = h.publish("probe.run", json!({"incr": ["marker"]})).await;
    assert_eq!(
        h.wait_final("probe_outbox_messages", marker).await.status,
        "consumed"
    );
    let row = h.wait_final("probe_outbox_messages", unknown).await;
    assert_eq!(row.status, "dead");
    assert!(
        row.last_error
            .unwrap()
            .contains("no handler registered for event type \"probe.unknown\"")
    );
    assert_eq!(
        h.state("probe", "foreign").await,
        None,
        "another service's event is skipped"
    );
    let dlq = read_topic(&dlq_topic(&topic), |r| r.len() >= 2).await;
    let values: Vec<&[u8]> = dlq
        .iter()
        .map(|m| m.payload().unwrap_or_default())
        .collect();
    assert!(
        values.contains(&garbage),
        "raw invalid JSON kept: {values:?}"
    );
    assert!(
        values.contains(&&zero_id[..]),
        "raw outbox_id 0 kept: {values:?}"
    );
    for m in &dlq {
        let reason = header(m, "dlq_reason").unwrap();
        assert!(reason.contains("undecodable envelope"), "{reason}");
        assert!(
            header(m, "dlq_origin")
                .unwrap()
                .starts_with(&format!("{topic}/"))
        );
    }
    h.stop().await;
}

/// Runs `scripts/kafka.sh <action>` for a private broker on `port`.
fn broker_script(action: &str, port: u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let out = Command::new(&script)
        .arg(action)
        .env("SWITCHYARD_KAFKA_PORT", port.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {action} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the private broker even when the test fails.
struct PrivateBroker(u16);
impl Drop for PrivateBroker {
    fn drop(&mut self) {
        broker_script("stop", self.0);
    }
}

async fn enqueue_increments(h: &Harness, range: std::ops::Range<usize>) {
    let outbox = h.host.outbox();
    let rows: Vec<_> = range
        .map(|i| {
            outbox
                .row(
                    switchyard::NewEvent::new("probe.run", json!({"incr": [format!("n/{i}")]}))
                        .key(format!("k{i}")),
                )
                .unwrap()
        })
        .collect();
    h.host.store().insert(&rows, now()).await.unwrap();
    outbox.wake("probe");
}

async fn consumed(h: &Harness) -> i64 {
    let status = h.host.status().await.unwrap();
    let (_, probe) = status.iter().find(|(s, _)| s.name == "probe").unwrap();
    probe.counts.get("consumed").copied().unwrap_or(0)
}

async fn wait_consumed(h: &Harness, want: i64, within: Duration) {
    eventually(
        format!("{want} probe rows to be consumed"),
        within,
        || async { until(consumed(h).await, |n| *n >= want) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_run_of_5000_events_loses_none_and_applies_none_twice() {
    const EVENTS: usize = 5_000;
    let port = free_port();
    broker_script("start", port);
    let _broker = PrivateBroker(port);
    let private = format!("127.0.0.1:{port}");
    // Messages in flight when the in-memory broker dies are gone with it: the relay's
    // visibility timeout (low here) publishes their rows again.
    let shared = format!("brokers = \"{}\"", crate::kafka::brokers());
    let mut h = Harness::start_edited(Setup::SQLITE_KAFKA, "", |t| {
        t.replace(&shared, &format!("brokers = \"{private}\""))
            .replace(
                "poll_interval_ms = 250",
                "poll_interval_ms = 250\nvisibility_timeout_ms = 4000",
            )
            // Publishes fail while the broker is away: enough attempts to outlast it, and
            // failures noticed in seconds rather than librdkafka's 30 s here.
            .replace("max_attempts = 3", "max_attempts = 20")
            .replace("backoff_max_ms = 40", "backoff_max_ms = 2000")
            .replace(
                "[naming]",
                "[transport.producer]\n\"message.timeout.ms\" = \"5000\"\n\n[naming]",
            )
    })
    .await;
    assert!(format!("{:?}", h.host.config().transport).contains(&private));

    // Events before, during and after the restart: 2,000 streaming when the broker dies,
    // 1,500 enqueued while it is away (publishes fail: the first of them is seen retried),
    // 1,500 after it is back.
    enqueue_increments(&h, 0..2_000).await;
    wait_consumed(&h, 1, Duration::from_secs(60)).await;
    broker_script("stop", port);
    enqueue_increments(&h, 2_000..3_500).await;
    h.wait_row("probe_outbox_messages", 2_001, |r| r.retry_count >= 1)
        .await;
    broker_script("start", port);
    enqueue_increments(&h, 3_500..EVENTS).await;
    wait_consumed(&h, EVENTS as i64, Duration::from_secs(180)).await;

    let status = h.host.status().await.unwrap();
    let (_, probe) = status.iter().find(|(s, _)| s.name == "probe").unwrap();
    assert_eq!(
        probe.counts.get("consumed"),
        Some(&(EVENTS as i64)),
        "{:?}",
        probe.counts
    );
    for i in 0..EVENTS {
        let v = h
            .host
            .store()
            .state_get("probe", &format!("n/{i}"))
            .await
            .unwrap();
        assert_eq!(
            v.as_deref(),
            Some(&b"1"[..]),
            "event {i} applied exactly once"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_in_one_group_share_the_partitions_and_apply_each_event_once() {
    const ROUND: usize = 200;
    // MariaDB: several hosts may share it (SQLite is single-host).
    let mut h = Harness::start(Setup::MARIADB_KAFKA).await;
    // The second replica runs a byte-different copy of the probe (an extra custom section), so
    // each consumed row's handler_version says which replica applied it.
    let copy = h._dir.path().join("probe-replica.wasm");
    let mut bytes = std::fs::read(crate::support::component("probe")).unwrap();
    bytes.extend_from_slice(&[0, 8, 7]);
    bytes.extend_from_slice(b"replica");
    std::fs::write(&copy, &bytes).unwrap();
    let mut config = (*h.host.config()).clone();
    for route in &mut config.routes {
        if route.event_type == "probe.run" {
            route.component = Some(copy.clone());
        }
    }
    let replica = switchyard::Switchyard::open(config).await.unwrap();
    let second = replica
        .start(replica.configured_transport().await.unwrap())
        .await
        .unwrap();
    let first_hash = crate::support::hash_of(&crate::support::component("probe"));
    let second_hash = crate::support::hash_of(&copy);
    // Rounds of events until both replicas have applied some: the group gave each a share.
    let sent = &std::sync::atomic::AtomicUsize::new(0);
    let (host, first_hash, second_hash) = (&h, &first_hash, &second_hash);
    eventually(
        "both replicas to consume a share",
        WAIT * 2,
        || async move {
            let first = sent.fetch_add(ROUND, Ordering::Relaxed);
            enqueue_increments(host, first..first + ROUND).await;
            wait_consumed(host, (first + ROUND) as i64, Duration::from_secs(60)).await;
            let versions: std::collections::BTreeSet<String> = host
                .rows("probe_outbox_messages")
                .await
                .into_iter()
                .filter_map(|r| r.handler_version)
                .collect();
            if versions.contains(first_hash) && versions.contains(second_hash) {
                Ok(())
            } else {
                Err(format!(
                    "after {} events one replica: {versions:?}",
                    first + ROUND
                ))
            }
        },
    )
    .await;
    let sent = sent.load(Ordering::Relaxed);
    for i in 0..sent {
        let v = h
            .host
            .store()
            .state_get("probe", &format!("n/{i}"))
            .await
            .unwrap();
        assert_eq!(
            v.as_deref(),
            Some(&b"1"[..]),
            "event {i} applied exactly once"
        );
    }
    assert!(second.shutdown(Duration::from_secs(10)).await);
    h.stop().await;
}
