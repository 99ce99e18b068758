//! The Kafka transport: a topic and a consumer group per service, through rdkafka.
//!
//! Owns the host's one idempotent producer, topic provisioning (each service's topic and its
//! `<topic>.dlq`) and one consumer per service in that service's group. Values are SmartFlow's
//! envelope bytes exactly; keys are the rows' `message_key`; headers carry `traceparent` and
//! `event_type`. It never reads routes or SQL, and never commits an offset on its own: the
//! engine calls [`Subscription::commit`](crate::transport::Subscription::commit) after the
//! database commit.

mod client;
mod consumer;
mod context;
pub mod dlq;
mod events;
mod lag;
mod producer;
mod topics;

pub use consumer::KafkaSubscription;
pub use producer::{EVENT_TYPE, TRACEPARENT};
pub use topics::{TopicError, dlq_topic};

use super::{Channel, Message, Subscription, Transport, TransportError};
use crate::config::KafkaConfig;
use async_trait::async_trait;
use producer::{Producer, Record};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use topics::Topics;

/// Why the Kafka transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A setting librdkafka refuses.
    #[error("invalid Kafka client settings: {0}: check [transport]")]
    Client(rdkafka::error::KafkaError),
    /// A topic could not be created or did not appear.
    #[error(transparent)]
    Topic(#[from] TopicError),
}

pub struct KafkaTransport {
    config: KafkaConfig,
    producer: Arc<Producer>,
    topics: Arc<Topics>,
    subscribed: Mutex<HashSet<String>>,
    lag: lag::GroupLag,
}

impl KafkaTransport {
    /// Builds the producer and makes sure every service's topic and dead-letter topic exist
    /// (created when missing if `manage_topics`, otherwise waited for up to `topic_wait_ms`).
    ///
    /// # Errors
    /// [`KafkaError`] naming the bad setting or the missing topic.
    pub async fn connect<'a>(
        config: &KafkaConfig,
        service_topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<KafkaTransport, KafkaError> {
        let producer = Arc::new(Producer::new(config).map_err(KafkaError::Client)?);
        let topics = Arc::new(Topics::new(config)?);
        let names: Vec<String> = service_topics
            .into_iter()
            .flat_map(|t| [t.to_owned(), dlq_topic(t)])
            .collect();
        topics.ensure(&names).await?;
        Ok(KafkaTransport {
            config: config.clone(),
            producer,
            topics,
            subscribed: Mutex::new(HashSet::new()),
            lag: lag::GroupLag::new(config),
        })
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn publish(
        &self,
        channel: Channel<'_>,
        messages: Vec<Message>,
    ) -> Vec<Result<(), TransportError>> {
        let records: Vec<Record<'_>> = messages
            .iter()
            .map(|m| Record {
                key: &m.key,
                value: &m.value,
                traceparent: m.traceparent.as_deref(),
                headers: vec![(EVENT_TYPE, m.event_type.as_str())],
            })
            .collect();
        let results = self.producer.send(channel.topic, &records).await;
        if results.iter().any(Result::is_err) {
            // A broker that lost its data (in-memory development brokers) lost the topic too:
            // recreate it, so the relay's retry of these rows can succeed. Never waits: the
            // relay must get its failures back and put the rows back to pending.
            self.topics
                .repair(&[channel.topic.to_owned(), dlq_topic(channel.topic)])
                .await;
        }
        results
            .into_iter()
            .map(|r| {
                r.map_err(|reason| TransportError::Publish {
                    topic: channel.topic.to_owned(),
                    reason,
                })
            })
            .collect()
    }

    async fn subscribe(
        &self,
        channel: Channel<'_>,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        if !self
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.service.to_owned())
        {
            return Err(TransportError::AlreadySubscribed(
                channel.service.to_owned(),
            ));
        }
        let subscription = KafkaSubscription::open(
            &self.config,
            channel,
            self.producer.clone(),
            self.topics.clone(),
        )?;
        Ok(Box::new(subscription))
    }

    async fn lag(&self, channel: Channel<'_>) -> Result<u64, TransportError> {
        self.lag
            .read(channel.topic, channel.group)
            .await
            .map_err(|reason| TransportError::Lag {
                topic: channel.topic.to_owned(),
                group: channel.group.to_owned(),
                reason,
            })
    }

    fn is_volatile(&self) -> bool {
        false
    }
}
