//! The Kafka transport: a topic and a consumer group per service, through rdkafka.
//!
//! Owns the host's one idempotent producer, topic provisioning (each service's topic and its
//! `<topic>.dlq`) and one consumer per service in that service's group. Values are SmartFlow's
//! envelope bytes exactly; keys are the rows' `message_key`; headers carry `traceparent` and
//! `event_type`. It never reads routes or SQL, and never commits an offset on its own: the
//! engine calls [`Subscription::commit`](crate::transport::Subscription::commit) after the
//! database commit.

mod config;
mod consumer;
mod context;
mod events;
mod producer;
mod topics;

pub use config::KafkaConfig;
pub use consumer::KafkaSubscription;
pub use producer::{EVENT_TYPE, TRACEPARENT};
pub use topics::{TopicError, dlq_topic};

use super::{Message, Subscription, Transport, TransportError};
use crate::catalog::Service;
use async_trait::async_trait;
use context::GroupContext;
use producer::{Producer, Record};
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::{BTreeSet, HashSet};
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
}

impl KafkaTransport {
    /// Builds the producer and makes sure every service's topic and dead-letter topic exist
    /// (created when missing if `manage_topics`, otherwise waited for up to `topic_wait_ms`).
    ///
    /// # Errors
    /// [`KafkaError`] naming the bad setting or the missing topic.
    pub async fn connect<'a>(
        config: &KafkaConfig,
        services: impl IntoIterator<Item = &'a Arc<Service>>,
    ) -> Result<KafkaTransport, KafkaError> {
        let producer = Arc::new(Producer::new(config).map_err(KafkaError::Client)?);
        let topics = Arc::new(Topics::new(config)?);
        let names: Vec<String> = services
            .into_iter()
            .flat_map(|s| [s.topic.clone(), dlq_topic(&s.topic)])
            .collect();
        topics.ensure(&names).await?;
        Ok(KafkaTransport {
            config: config.clone(),
            producer,
            topics,
            subscribed: Mutex::new(HashSet::new()),
        })
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn publish(
        &self,
        service: &Service,
        messages: Vec<Message>,
    ) -> Vec<Result<(), TransportError>> {
        let records: Vec<Record<'_>> = messages
            .iter()
            .map(|m| Record {
                key: &m.key,
                value: &m.value,
                headers: vec![(EVENT_TYPE, m.event_type.as_str())],
            })
            .collect();
        let results = self.producer.send(&service.topic, &records).await;
        if results.iter().any(Result::is_err) && self.config.manage_topics {
            // A broker that lost its data (in-memory development brokers) lost the topic too:
            // recreate it, so the relay's retry of these rows can succeed.
            if let Err(e) = self
                .topics
                .ensure(&[service.topic.clone(), dlq_topic(&service.topic)])
                .await
            {
                tracing::warn!(topic = %service.topic, error = %e, "recreating topic failed");
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.map_err(|reason| TransportError::Publish {
                    topic: service.topic.clone(),
                    reason,
                })
            })
            .collect()
    }

    async fn subscribe(&self, service: &Service) -> Result<Box<dyn Subscription>, TransportError> {
        if !self
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.name.clone())
        {
            return Err(TransportError::AlreadySubscribed(service.name.clone()));
        }
        let fail = |reason: String| TransportError::Consume {
            topic: service.topic.clone(),
            reason,
        };
        let owned = Arc::new(Mutex::new(BTreeSet::new()));
        let context = GroupContext {
            group: service.group.clone(),
            topic: service.topic.clone(),
            owned: owned.clone(),
        };
        let consumer: StreamConsumer<GroupContext> = self
            .config
            .consumer_config(&service.group)
            .create_with_context(context)
            .map_err(|e| {
                fail(format!(
                    "creating the consumer of group {}: {e}",
                    service.group
                ))
            })?;
        consumer
            .subscribe(&[&service.topic])
            .map_err(|e| fail(format!("subscribing group {}: {e}", service.group)))?;
        Ok(Box::new(KafkaSubscription {
            consumer,
            topic: service.topic.clone(),
            owned,
            producer: self.producer.clone(),
            topics: self.topics.clone(),
        }))
    }

    fn is_volatile(&self) -> bool {
        false
    }
}
