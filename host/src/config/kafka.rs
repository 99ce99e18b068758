//! `[transport] kind = "kafka"`: the Kafka transport's settings, the user's reference.
//!
//! Owns the schema and its validation. The translation into librdkafka client settings is the
//! transport's (`transport/kafka/client.rs`); nothing here connects to anything.

use serde::Deserialize;
use std::collections::BTreeMap;

/// ```toml
/// [transport]
/// kind = "kafka"
/// brokers = "127.0.0.1:9092"
/// partitions = 3
/// replication_factor = 1
/// manage_topics = true
/// topic_wait_ms = 30000
/// session_timeout_ms = 45000
/// [transport.client]          # any librdkafka setting, for producer and consumers
/// "security.protocol" = "SASL_SSL"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated `host:port` (librdkafka `bootstrap.servers`).
    /// Default `127.0.0.1:9092`, where `scripts/kafka.sh start` runs its broker.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Partitions of each topic the host creates. Default 3, as SmartFlow pre-created them.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of each topic the host creates. Default 1 (a single development
    /// broker); use 3 on a production cluster.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// `true` (default): create each service's topic and its `<topic>.dlq` at start when
    /// missing, and again after a broker lost them. `false`: topics are managed elsewhere (as
    /// in SmartFlow, where auto-create was off); the host waits for them at start and fails
    /// after `topic_wait_ms` naming the missing topic.
    #[serde(default = "default_true")]
    pub manage_topics: bool,
    /// How long start-up waits for a topic to exist (or, when created, to show up in the
    /// cluster's metadata). Milliseconds, default 30000 (SmartFlow waited 30 s).
    #[serde(default = "default_topic_wait_ms")]
    pub topic_wait_ms: u64,
    /// Consumer group session timeout (`session.timeout.ms`): how long a silent replica keeps
    /// its partitions. Milliseconds, default 45000 (librdkafka's). Lower means faster
    /// failover and a faster first group join (tests use 6000).
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// librdkafka settings for the producer and every consumer (security, timeouts, ...),
    /// applied after the host's own, so they override them. Default none.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// librdkafka settings for the producer only, applied last. Default none.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// librdkafka settings for the consumers only, applied last. Default none.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}
fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_topic_wait_ms() -> u64 {
    30_000
}
fn default_session_timeout_ms() -> u64 {
    45_000
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: default_brokers(),
            partitions: default_partitions(),
            replication_factor: default_replication(),
            manage_topics: true,
            topic_wait_ms: default_topic_wait_ms(),
            session_timeout_ms: default_session_timeout_ms(),
            client: BTreeMap::new(),
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
        }
    }
}

/// Settings the producer and consumers cannot work without, whatever `client` says.
pub const PINNED_PRODUCER: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];
pub const PINNED_CONSUMER: &[(&str, &str)] = &[
    // Offsets are committed by the host, only after the database commit.
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
];

impl KafkaConfig {
    /// Checks values a broker would reject late and obscurely.
    ///
    /// # Errors
    /// A message naming the field and what to use instead.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("transport.brokers is empty: list host:port pairs, comma separated".into());
        }
        if self.partitions < 1 {
            return Err(format!(
                "transport.partitions is {}: use 1 or more",
                self.partitions
            ));
        }
        if self.replication_factor < 1 {
            return Err(format!(
                "transport.replication_factor is {}: use 1 or more",
                self.replication_factor
            ));
        }
        for (key, value) in PINNED_PRODUCER.iter().chain(PINNED_CONSUMER) {
            for (section, map) in [
                ("client", &self.client),
                ("producer", &self.producer),
                ("consumer", &self.consumer),
            ] {
                if map.get(*key).is_some_and(|v| v != value) {
                    return Err(format!(
                        "transport.{section}.\"{key}\" = {:?} would break the host's delivery \
                         guarantees: remove it (the host sets {key}={value})",
                        map[*key]
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_settings_cannot_be_overridden() {
        let mut cfg = KafkaConfig::default();
        cfg.client.insert("acks".into(), "1".into());
        let err = cfg.validate().unwrap_err();
        assert!(err.contains("acks") && err.contains("remove it"), "{err}");
        let mut cfg = KafkaConfig::default();
        cfg.consumer
            .insert("enable.auto.commit".into(), "true".into());
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn bad_counts_are_refused_with_the_field_name() {
        let cfg = KafkaConfig {
            partitions: 0,
            ..KafkaConfig::default()
        };
        assert!(cfg.validate().unwrap_err().contains("transport.partitions"));
    }
}
