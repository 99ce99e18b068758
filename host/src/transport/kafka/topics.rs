//! Topic provisioning: each service's topic and its dead-letter topic `<topic>.dlq`.
//!
//! With `manage_topics` it creates what is missing (partitions and replication from config) and
//! waits until the cluster's metadata shows it; without, it only waits, and fails naming the
//! missing topic. It never deletes or reconfigures an existing topic: a topic that exists with
//! other settings is the operator's choice.

use super::client::producer_config;
use super::context::HostContext;
use crate::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause between metadata checks while waiting for a topic: nothing to await but the broker.
const METADATA_POLL: Duration = Duration::from_millis(200);
/// Bound on one metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The dead-letter topic of a service topic.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The admin client could not be built (a bad librdkafka setting).
    #[error("cannot create the Kafka admin client: {0}: check [transport] settings")]
    Client(KafkaError),
    /// The broker refused to create a topic.
    #[error(
        "creating topic {topic} ({partitions} partitions, replication {replication}) failed: \
         {reason}: fix the broker or create the topic and set manage_topics = false"
    )]
    Create {
        topic: String,
        partitions: i32,
        replication: i32,
        reason: String,
    },
    /// A topic did not show up in time.
    #[error(
        "topic {topic} does not exist after waiting {waited_ms} ms: {hint} (brokers {brokers})"
    )]
    Missing {
        topic: String,
        waited_ms: u64,
        brokers: String,
        hint: &'static str,
    },
}

/// Creates and waits for topics through one admin client.
pub struct Topics {
    admin: Arc<AdminClient<HostContext>>,
    config: KafkaConfig,
}

impl Topics {
    /// # Errors
    /// [`TopicError::Client`] for settings librdkafka refuses.
    pub fn new(config: &KafkaConfig) -> Result<Topics, TopicError> {
        let admin = producer_config(config)
            .create_with_context(HostContext { client: "admin" })
            .map_err(TopicError::Client)?;
        Ok(Topics {
            admin: Arc::new(admin),
            config: config.clone(),
        })
    }

    /// Makes sure every named topic exists: creates missing ones when topics are managed here,
    /// then waits up to `topic_wait_ms` until each shows up with its partitions.
    ///
    /// # Errors
    /// [`TopicError::Create`] when the broker refuses, [`TopicError::Missing`] after the wait.
    pub async fn ensure(&self, names: &[String]) -> Result<(), TopicError> {
        let started = Instant::now();
        let wait = Duration::from_millis(self.config.topic_wait_ms);
        let mut missing = self.missing(names).await.unwrap_or_else(|_| names.to_vec());
        if missing.is_empty() {
            return Ok(());
        }
        if self.config.manage_topics {
            self.create(&missing).await?;
        }
        loop {
            tokio::time::sleep(METADATA_POLL).await;
            // A failed metadata request (broker away) counts every name as missing.
            missing = self.missing(names).await.unwrap_or_else(|_| names.to_vec());
            let Some(first) = missing.first() else {
                return Ok(());
            };
            if started.elapsed() >= wait {
                return Err(TopicError::Missing {
                    topic: first.clone(),
                    waited_ms: self.config.topic_wait_ms,
                    brokers: self.config.brokers.clone(),
                    hint: if self.config.manage_topics {
                        "it was created but the cluster never listed it; check the broker \
                         (scripts/kafka.sh status)"
                    } else {
                        "create it (or set [transport] manage_topics = true to let the host \
                         create it)"
                    },
                });
            }
        }
    }

    /// One quick look, no waiting: when topics are managed here and the broker answers but no
    /// longer lists some of `names` (it came back without its data), creates them. A broker
    /// that does not answer is left to librdkafka's reconnects.
    pub async fn repair(&self, names: &[String]) {
        if !self.config.manage_topics {
            return;
        }
        match self.missing(names).await {
            Ok(missing) if !missing.is_empty() => {
                if let Err(e) = self.create(&missing).await {
                    tracing::warn!(error = %e, "recreating kafka topics failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "kafka metadata unavailable"),
        }
    }

    async fn create(&self, names: &[String]) -> Result<(), TopicError> {
        let replication = self.config.replication_factor;
        let new: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| {
                NewTopic::new(
                    n,
                    self.config.partitions,
                    TopicReplication::Fixed(replication),
                )
            })
            .collect();
        let results = self
            .admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .map_err(|e| self.create_error(names.join(", "), e.to_string()))?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(
                    topic,
                    partitions = self.config.partitions,
                    "kafka topic created"
                ),
                // Another replica created it first: what we wanted.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(self.create_error(topic, code.to_string())),
            }
        }
        Ok(())
    }

    fn create_error(&self, topic: String, reason: String) -> TopicError {
        TopicError::Create {
            topic,
            partitions: self.config.partitions,
            replication: self.config.replication_factor,
            reason,
        }
    }

    /// The names the cluster does not list (with at least one partition), in the given order.
    ///
    /// # Errors
    /// The metadata request failed (broker away): nothing is known.
    async fn missing(&self, names: &[String]) -> Result<Vec<String>, String> {
        let admin = self.admin.clone();
        let present = tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map(|md| {
                    md.topics()
                        .iter()
                        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                        .map(|t| t.name().to_owned())
                        .collect::<BTreeSet<_>>()
                })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(names
            .iter()
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect())
    }
}
