//! A consumer group's lag, read from outside the group: per partition of the service's topic,
//! the high watermark minus the group's committed offset (the low watermark where the group
//! has committed nothing yet: `auto.offset.reset = earliest` starts it there), summed.
//!
//! One client per group, built on first use and kept: it carries the group's id only to ask
//! the coordinator for the committed offsets, and never subscribes, joins the group, fetches a
//! message or commits anything.

use super::client::consumer_config;
use super::context::HostContext;
use crate::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bound on each request of one lag reading (metadata, committed offsets, watermarks).
const LAG_TIMEOUT: Duration = Duration::from_secs(5);

type Reader = Arc<BaseConsumer<HostContext>>;

/// The lag readers of the host's groups.
pub struct GroupLag {
    config: KafkaConfig,
    readers: Mutex<HashMap<String, Reader>>,
}

impl GroupLag {
    pub fn new(config: &KafkaConfig) -> GroupLag {
        GroupLag {
            config: config.clone(),
            readers: Mutex::new(HashMap::new()),
        }
    }

    fn reader(&self, group: &str) -> Result<Reader, KafkaError> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = readers.get(group) {
            return Ok(r.clone());
        }
        let reader: Reader = Arc::new(
            consumer_config(&self.config, group)
                .create_with_context(HostContext { client: "lag" })?,
        );
        readers.insert(group.to_owned(), reader.clone());
        Ok(reader)
    }

    /// The summed lag of `group` on `topic`.
    ///
    /// # Errors
    /// The broker did not answer a request within [`LAG_TIMEOUT`], or lists no such topic.
    pub async fn read(&self, topic: &str, group: &str) -> Result<u64, String> {
        let reader = self.reader(group).map_err(|e| e.to_string())?;
        let topic = topic.to_owned();
        // librdkafka's requests block: never on a runtime worker.
        tokio::task::spawn_blocking(move || lag_of(&reader, &topic))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Events a reading serves from the reader's queue first, at most (see [`lag_of`]).
const QUEUED_EVENTS: usize = 100;

fn lag_of(reader: &BaseConsumer<HostContext>, topic: &str) -> Result<u64, KafkaError> {
    // A consumer that is never polled keeps its client events (errors while a broker is away)
    // queued forever: serve them (they reach `HostContext::error`) before each reading.
    for _ in 0..QUEUED_EVENTS {
        if reader.poll(Duration::ZERO).is_none() {
            break;
        }
    }
    let md = reader.fetch_metadata(Some(topic), LAG_TIMEOUT)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    };
    if let Some(e) = t.error() {
        return Err(KafkaError::MetadataFetch(e.into()));
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = reader.committed_offsets(tpl, LAG_TIMEOUT)?;
    let mut lag = 0u64;
    for e in committed.elements() {
        let (low, high) = reader.fetch_watermarks(topic, e.partition(), LAG_TIMEOUT)?;
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        // A committed offset past the high watermark is no lag: some brokers (tansu) report a
        // partition's watermark a batch behind the records a group has already committed.
        lag += u64::try_from(high - at).unwrap_or(0);
    }
    Ok(lag)
}
