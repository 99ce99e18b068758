//! The dead-letter topic `<topic>.dlq` for an operator (`switchyard dead list --dlq`, `dead
//! replay --dlq`): reading every message from the beginning, and sending chosen ones back to
//! the service's topic.
//!
//! Reading joins no consumer group and commits nothing: a throwaway client is assigned every
//! partition from its low watermark up to the high watermark seen when it started, so a
//! running host's consumers (and other readers) are never disturbed. Replay sends the raw
//! bytes and key unchanged through the host's idempotent producer; it never parses or alters
//! them, and never deletes anything from the DLQ (Kafka cannot).

use super::client::consumer_config;
use super::context::HostContext;
use super::producer::{Producer, Record};
use crate::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Header naming why the consumer dead-lettered a message (written by the consumer).
pub const DLQ_REASON: &str = "dlq_reason";
/// Header naming where the message was read: `<topic>/<partition>@<offset>`.
pub const DLQ_ORIGIN: &str = "dlq_origin";
/// Header a replayed message carries: the DLQ position it was replayed from.
pub const DLQ_REPLAYED_FROM: &str = "dlq_replayed_from";

/// Bound on one metadata or watermark request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading one DLQ may take in all.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One message of a dead-letter topic.
#[derive(Debug, Clone)]
pub struct DlqMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    /// The raw bytes the consumer could not decode, exactly as received.
    pub value: Vec<u8>,
    /// Why it was dead-lettered (`dlq_reason`), if the header is there.
    pub reason: Option<String>,
    /// Where it was read (`dlq_origin`), if the header is there.
    pub origin: Option<String>,
    /// When the DLQ received it (unix ms), where the broker says.
    pub timestamp_ms: Option<i64>,
    /// The trace it belonged to (`traceparent`), kept through a replay.
    pub traceparent: Option<String>,
}

/// Why a dead-letter topic could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The client could not be built or the broker refused a request.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The topic does not exist (no message was ever dead-lettered, or it was never created).
    #[error("topic {0} does not exist")]
    NoTopic(String),
    /// Some partitions were not read to their end in time.
    #[error("reading {topic} did not reach the end of partitions {partitions:?} within {secs} s")]
    Timeout {
        topic: String,
        partitions: Vec<i32>,
        secs: u64,
    },
    /// The broker refused a replayed message (the ones before it were sent).
    #[error("sending partition {partition} offset {offset} back to {topic} failed: {reason}")]
    Send {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    /// The blocking reader could not run.
    #[error("the DLQ reader stopped: {0}")]
    Join(String),
}

/// Every message of `topic`, in partition then offset order, from each partition's beginning
/// to the end it had when reading started. Joins no group, commits nothing.
///
/// # Errors
/// [`DlqError::NoTopic`] when it does not exist, [`DlqError::Timeout`], or the broker's error.
pub async fn read_all(config: &KafkaConfig, topic: &str) -> Result<Vec<DlqMessage>, DlqError> {
    let (config, topic) = (config.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_blocking(&config, &topic))
        .await
        .map_err(|e| DlqError::Join(e.to_string()))?
}

fn read_blocking(config: &KafkaConfig, topic: &str) -> Result<Vec<DlqMessage>, DlqError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // A group id librdkafka wants, used by no one: partitions are assigned, never subscribed,
    // and offsets never committed (auto commit is pinned off).
    let group = format!("switchyard-dlq-reader-{}-{nanos}", std::process::id());
    let mut client = consumer_config(config, &group);
    client.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<HostContext> = client.create_with_context(HostContext {
        client: "dlq-reader",
    })?;
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(DlqError::NoTopic(topic.to_owned()));
    }
    // The end of each partition now: what is read. Messages dead-lettered while reading wait
    // for the next look.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, REQUEST_TIMEOUT)?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        }
    }
    let mut messages = Vec::new();
    if ends.is_empty() {
        return Ok(messages);
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    while !ends.is_empty() {
        let Some(left) = READ_TIMEOUT.checked_sub(started.elapsed()) else {
            return Err(DlqError::Timeout {
                topic: topic.to_owned(),
                partitions: ends.into_keys().collect(),
                secs: READ_TIMEOUT.as_secs(),
            });
        };
        match consumer.poll(left.min(Duration::from_millis(500))) {
            Some(Ok(m)) => {
                let (partition, offset) = (m.partition(), m.offset());
                // A partition already read to its end, or a message written after the start.
                let Some(end) = ends.get(&partition).copied() else {
                    continue;
                };
                if offset + 1 >= end {
                    ends.remove(&partition);
                }
                if offset >= end {
                    continue;
                }
                let header = |name: &str| {
                    m.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == name)
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                };
                messages.push(DlqMessage {
                    partition,
                    offset,
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    reason: header(DLQ_REASON),
                    origin: header(DLQ_ORIGIN),
                    traceparent: header(super::producer::TRACEPARENT),
                    timestamp_ms: m.timestamp().to_millis(),
                });
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ends.remove(&partition);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    messages.dedup_by_key(|m| (m.partition, m.offset));
    Ok(messages)
}

/// Sends `messages` back to `topic` in order, each with its key and raw bytes unchanged and a
/// [`DLQ_REPLAYED_FROM`] header.
///
/// # Errors
/// The first message the broker refused ([`DlqError::Send`]); the ones before it were sent.
pub async fn replay(
    config: &KafkaConfig,
    topic: &str,
    messages: &[&DlqMessage],
) -> Result<(), DlqError> {
    if messages.is_empty() {
        return Ok(());
    }
    let producer = Producer::new(config)?;
    let dlq = super::dlq_topic(topic);
    let from: Vec<String> = messages
        .iter()
        .map(|m| format!("{dlq}/{}@{}", m.partition, m.offset))
        .collect();
    let records: Vec<Record<'_>> = messages
        .iter()
        .zip(&from)
        .map(|(m, from)| Record {
            key: &m.key,
            value: &m.value,
            traceparent: m.traceparent.as_deref(),
            headers: vec![(DLQ_REPLAYED_FROM, from.as_str())],
        })
        .collect();
    let results = producer.send(topic, &records).await;
    for (m, result) in messages.iter().zip(results) {
        if let Err(reason) = result {
            return Err(DlqError::Send {
                topic: topic.to_owned(),
                partition: m.partition,
                offset: m.offset,
                reason,
            });
        }
    }
    Ok(())
}
