//! One service's consumer: its group, its topic, batches out, offsets in after the database.
//!
//! Owns receiving (a receive error is logged and retried, never the end of the stream),
//! committing the next offset per partition only for partitions this host still owns, and
//! copying undecodable messages' raw bytes to `<topic>.dlq`. It never decides what a message
//! means: decoding, skipping and dead rows are the engine's.

use super::context::{GroupContext, Owned};
use super::events::{ConsumeFailed, DeadLetterFailed, MessageDeadLettered};
use super::producer::{Producer, Record};
use super::topics::{Topics, dlq_topic};
use crate::transport::{Delivery, Subscription, TransportError};
use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Pause after a receive error before receiving again (the broker is away or the topic gone).
const RECEIVE_BACKOFF: Duration = Duration::from_millis(250);
/// Attempts to copy a message to the dead-letter topic before logging its bytes instead.
const DEAD_LETTER_ATTEMPTS: u32 = 3;

pub struct KafkaSubscription {
    pub(super) consumer: StreamConsumer<GroupContext>,
    pub(super) topic: String,
    pub(super) owned: Owned,
    pub(super) producer: Arc<Producer>,
    pub(super) topics: Arc<Topics>,
}

impl KafkaSubscription {
    fn delivery(&self, m: &BorrowedMessage<'_>) -> Delivery {
        Delivery {
            key: m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            origin: format!("{}/{}@{}", m.topic(), m.partition(), m.offset()),
            position: (m.partition(), m.offset()),
        }
    }

    async fn on_receive_error(&self, e: &KafkaError) {
        ConsumeFailed {
            topic: &self.topic,
            error: e,
        }
        .emit();
        // A broker that restarted without its data (in-memory development brokers) lost the
        // topic: recreate it when topics are managed here, so consuming can resume.
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            && let Err(e) = self
                .topics
                .ensure(&[self.topic.clone(), dlq_topic(&self.topic)])
                .await
        {
            ConsumeFailed {
                topic: &self.topic,
                error: &e,
            }
            .emit();
        }
        tokio::time::sleep(RECEIVE_BACKOFF).await;
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        loop {
            let first = match self.consumer.recv().await {
                Ok(m) => self.delivery(&m),
                Err(e) => {
                    self.on_receive_error(&e).await;
                    continue;
                }
            };
            let mut batch = Vec::with_capacity(max.min(1024));
            batch.push(first);
            // Take what librdkafka has already fetched, without waiting for more.
            while batch.len() < max {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(self.delivery(&m)),
                    Some(Err(e)) => {
                        ConsumeFailed {
                            topic: &self.topic,
                            error: &e,
                        }
                        .emit();
                        break;
                    }
                    None => break,
                }
            }
            return Some(batch);
        }
    }

    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), TransportError> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for d in deliveries {
            let (partition, offset) = d.position;
            let e = next.entry(partition).or_insert(offset + 1);
            *e = (*e).max(offset + 1);
        }
        // Held while the commit is enqueued, so a revocation cannot slip in between the check
        // and the commit; an async commit only enqueues, it does not wait for the broker.
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            if owned.contains(&partition) {
                tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                    .map_err(|e| self.consume_error(&e))?;
            }
        }
        if tpl.count() == 0 {
            return Ok(()); // every partition moved away: its new owner redelivers, harmlessly
        }
        let result = self.consumer.commit(&tpl, CommitMode::Async);
        drop(owned);
        result.map_err(|e| self.consume_error(&e))
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) {
        let dlq = dlq_topic(&self.topic);
        let mut last_error = String::new();
        for _ in 0..DEAD_LETTER_ATTEMPTS {
            let record = Record {
                key: &delivery.key,
                value: &delivery.value,
                headers: vec![("dlq_reason", reason), ("dlq_origin", &delivery.origin)],
            };
            match self.producer.send(&dlq, &[record]).await.pop() {
                Some(Ok(())) => {
                    MessageDeadLettered {
                        origin: &delivery.origin,
                        dlq: &dlq,
                        reason,
                    }
                    .emit();
                    return;
                }
                Some(Err(e)) => last_error = e,
                None => last_error = "no result".into(),
            }
        }
        DeadLetterFailed {
            origin: &delivery.origin,
            dlq: &dlq,
            error: &last_error,
            raw: &delivery.value,
        }
        .emit();
    }
}

impl KafkaSubscription {
    fn consume_error(&self, e: &KafkaError) -> TransportError {
        TransportError::Consume {
            topic: self.topic.clone(),
            reason: e.to_string(),
        }
    }
}
