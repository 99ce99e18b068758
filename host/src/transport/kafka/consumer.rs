//! One service's consumer: its group, its topic, batches out, offsets in after the database.
//!
//! Owns receiving (a receive error is logged and retried, never the end of the stream),
//! committing the next offset per partition only for partitions this host still owns, and
//! copying undecodable messages' raw bytes to `<topic>.dlq`. It never decides what a message
//! means: decoding, skipping and dead rows are the engine's.

use super::client::consumer_config;
use super::context::{GroupContext, Owned};
use super::dlq::{DLQ_ORIGIN, DLQ_REASON};
use super::events::{ConsumeFailed, DeadLetterFailed, MessageDeadLettered};
use super::producer::{Producer, Record, TRACEPARENT};
use super::topics::{Topics, dlq_topic};
use crate::config::KafkaConfig;
use crate::transport::{Channel, Delivery, Subscription, TransportError};
use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Pause after a receive error before receiving again (the broker is away or the topic gone).
const RECEIVE_BACKOFF: Duration = Duration::from_millis(250);
/// Attempts to copy a message to the dead-letter topic before logging its bytes instead.
const DEAD_LETTER_ATTEMPTS: u32 = 3;

pub struct KafkaSubscription {
    /// `None` between dropping a consumer whose brokers all went away and building its
    /// replacement.
    consumer: Option<StreamConsumer<GroupContext>>,
    config: KafkaConfig,
    group: String,
    topic: String,
    owned: Owned,
    broker_down: Arc<Notify>,
    producer: Arc<Producer>,
    topics: Arc<Topics>,
}

impl KafkaSubscription {
    /// Creates the service's consumer in its group and subscribes it to the service's topic.
    ///
    /// # Errors
    /// [`TransportError::Consume`] for settings librdkafka refuses.
    pub(super) fn open(
        config: &KafkaConfig,
        channel: Channel<'_>,
        producer: Arc<Producer>,
        topics: Arc<Topics>,
    ) -> Result<KafkaSubscription, TransportError> {
        let mut sub = KafkaSubscription {
            consumer: None,
            config: config.clone(),
            group: channel.group.to_owned(),
            topic: channel.topic.to_owned(),
            owned: Arc::new(Mutex::new(BTreeSet::new())),
            broker_down: Arc::new(Notify::new()),
            producer,
            topics,
        };
        sub.consumer = Some(sub.build().map_err(|e| sub.consume_error(&e))?);
        Ok(sub)
    }

    fn build(&mut self) -> Result<StreamConsumer<GroupContext>, KafkaError> {
        // A fresh signal per consumer: failures the old one reported are not this one's.
        self.broker_down = Arc::new(Notify::new());
        let context = GroupContext {
            group: self.group.clone(),
            topic: self.topic.clone(),
            owned: self.owned.clone(),
            broker_down: self.broker_down.clone(),
        };
        let consumer: StreamConsumer<GroupContext> =
            consumer_config(&self.config, &self.group).create_with_context(context)?;
        consumer.subscribe(&[&self.topic])?;
        Ok(consumer)
    }

    /// A broker connection failed or the topic vanished. The broker may come back without its
    /// data (in-memory development brokers, a wiped cluster), and a consumer still holding the
    /// old topic's metadata then misreads the new one: librdkafka 2.12 crashes the process on
    /// tansu's Fetch answers. So this consumer is dropped at once, and a fresh one joins the
    /// group once the broker answers and the topics exist (recreated when topics are managed).
    /// The price on a real cluster: a broker failover costs each consumer a group rejoin.
    async fn rebuild(&mut self) {
        if let Some(old) = self.consumer.take() {
            self.owned.lock().unwrap_or_else(|p| p.into_inner()).clear();
            // Closing waits for the group to be left; never on a runtime worker.
            tokio::task::spawn_blocking(move || drop(old));
        }
        loop {
            let ready = match self
                .topics
                .ensure(&[self.topic.clone(), dlq_topic(&self.topic)])
                .await
            {
                Ok(()) => self.build(),
                Err(e) => Err(KafkaError::Subscription(e.to_string())),
            };
            match ready {
                Ok(consumer) => {
                    tracing::info!(group = %self.group, topic = %self.topic, "kafka consumer rebuilt after broker loss");
                    self.consumer = Some(consumer);
                    return;
                }
                Err(e) => {
                    ConsumeFailed {
                        topic: &self.topic,
                        error: &e,
                    }
                    .emit();
                    tokio::time::sleep(RECEIVE_BACKOFF).await;
                }
            }
        }
    }

    async fn on_receive_error(&mut self, e: &KafkaError) {
        ConsumeFailed {
            topic: &self.topic,
            error: e,
        }
        .emit();
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
            self.rebuild().await;
        } else {
            tokio::time::sleep(RECEIVE_BACKOFF).await;
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        loop {
            let Some(consumer) = &self.consumer else {
                self.rebuild().await;
                continue;
            };
            let first = tokio::select! {
                m = consumer.recv() => m.map(|m| delivery(&m)),
                () = self.broker_down.notified() => {
                    self.rebuild().await;
                    continue;
                }
            };
            let first = match first {
                Ok(d) => d,
                Err(e) => {
                    self.on_receive_error(&e).await;
                    continue;
                }
            };
            let mut batch = Vec::with_capacity(max.min(1024));
            batch.push(first);
            // Take what librdkafka has already fetched, without waiting for more.
            while batch.len() < max {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(delivery(&m)),
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
        let Some(consumer) = &self.consumer else {
            return Ok(()); // being rebuilt: it owns nothing
        };
        let result = consumer.commit(&tpl, CommitMode::Async);
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
                traceparent: delivery.traceparent.as_deref(),
                headers: vec![(DLQ_REASON, reason), (DLQ_ORIGIN, &delivery.origin)],
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

fn delivery(m: &BorrowedMessage<'_>) -> Delivery {
    Delivery {
        key: m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        origin: format!("{}/{}@{}", m.topic(), m.partition(), m.offset()),
        position: (m.partition(), m.offset()),
        traceparent: m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == TRACEPARENT)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        }),
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
