//! SmartFlow's phase-1 smoke check, as its migration plan states it: on MariaDB and Kafka (the
//! production pair), the smoke event `task.urgency.promote.requested` goes from the task
//! service's table to its topic and is consumed, with its consumer group's lag back at 0; and
//! the business effect is in SmartFlow's own `tasks` table: a task with priority 2 whose urgency
//! threshold has passed is now priority 1.
//!
//! A missing MariaDB server or Kafka broker fails the test with how to start it, never a skip.

use crate::support::sink::Sink;
use crate::support::smartflow::{kafka_config_text, publish_v, row_json};
use crate::support::{Harness, Setup, WAIT, eventually};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use std::time::Duration;

/// Messages on `topic` that `group` has not committed, summed over partitions, and how many
/// messages the topic holds (as the broker's watermarks count them).
pub(crate) fn group_lag(topic: &str, group: &str) -> (i64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", crate::kafka::brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = consumer.committed_offsets(tpl, timeout).unwrap();
    let (mut lag, mut held) = (0, 0);
    for e in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(topic, e.partition(), timeout)
            .unwrap();
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        // tansu reports a partition's high watermark one batch behind when a producer batch
        // held several records (the committed offset, past the last record, is then above
        // it): a group that has committed past the watermark has no lag there.
        lag += (high - at).max(0);
        held += high - low;
    }
    (lag, held)
}

/// The envelopes on `topic`, read from the beginning by a reader outside any group.
fn envelopes(topic: &str) -> Vec<Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", crate::kafka::brokers())
        .set("group.id", crate::kafka::unique("smoke-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    while out.is_empty() && started.elapsed() < WAIT {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            out.push(serde_json::from_slice(m.payload().unwrap_or_default()).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_event_goes_table_to_topic_to_consumed_with_lag_0_and_promotes_the_task() {
    let sink = Sink::start().await;
    let prefix = crate::kafka::unique("sfsmoke");
    let mut h = Harness::start_from(Setup::MARIADB_KAFKA, |url| {
        kafka_config_text(url, &sink.addr, &prefix)
    })
    .await;
    // SmartFlow's task, as its application wrote it.
    h.db.exec(
        "INSERT INTO tasks (id, user_id, title, priority, urgency_threshold_at, completed) \
         VALUES (1, 3, 'renew passport', 2, '2020-01-01 00:00:00', FALSE)",
    )
    .await;
    let id = publish_v(
        &h,
        "task.urgency.promote.requested",
        "",
        json!({"user_id": 3, "task_ids": [1], "triggered_at": "2026-11-29T09:00:00Z"}),
    )
    .await;
    let row = h.wait_final("task_outbox_messages", id).await;
    assert_eq!(row.status, "consumed", "{row:?}");
    let task = row_json(&h.db, "SELECT priority FROM tasks WHERE id = 1").await;
    assert_eq!(
        task["priority"], 1,
        "priority 2 past its threshold is promoted"
    );

    let service = h.host.catalog().service("task").unwrap().clone();
    assert_eq!(
        (service.topic.as_str(), service.group.as_str()),
        (
            format!("{prefix}.task.outbox").as_str(),
            format!("{prefix}-task-outbox-consumer").as_str()
        ),
        "SmartFlow's per-service names, under the test's prefix"
    );
    let topic = service.topic.clone();
    let envelope = tokio::task::spawn_blocking(move || envelopes(&topic))
        .await
        .unwrap();
    assert_eq!(
        (
            envelope[0]["outbox_id"].as_i64(),
            envelope[0]["event_type"].as_str(),
            envelope[0]["service_name"].as_str()
        ),
        (
            Some(id),
            Some("task.urgency.promote.requested"),
            Some("task")
        ),
        "the row reached the task service's own topic as SmartFlow's envelope"
    );
    let (topic, group) = (service.topic.clone(), service.group.clone());
    eventually("the task group's lag to be 0", WAIT, || {
        let (topic, group) = (topic.clone(), group.clone());
        async move {
            let (lag, held) = tokio::task::spawn_blocking(move || group_lag(&topic, &group))
                .await
                .unwrap();
            if lag == 0 && held >= 1 {
                Ok(())
            } else {
                Err(format!("lag {lag}, {held} message(s) on the topic"))
            }
        }
    })
    .await;
    h.stop().await;
}
