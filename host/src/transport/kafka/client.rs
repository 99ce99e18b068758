//! The Kafka settings ([`KafkaConfig`]) translated into librdkafka client settings: the
//! host's defaults, then the user's `client` / `producer` / `consumer` maps, then the pins
//! that keep the delivery guarantees (which `KafkaConfig::validate` already refused to see
//! overridden).

use crate::config::KafkaConfig;
use crate::config::kafka::{PINNED_CONSUMER, PINNED_PRODUCER};
use rdkafka::ClientConfig;

fn base(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        // A broker restart is noticed and reconnected within a second, not minutes.
        .set("reconnect.backoff.max.ms", "1000")
        // Topics recreated after a broker lost them are seen quickly.
        .set("topic.metadata.refresh.interval.ms", "2000");
    c
}

/// The idempotent producer's settings (`enable.idempotence`, `acks=all`).
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = base(config);
    c.set("linger.ms", "5")
        // Publish failures surface (and rows go back to pending) within 30 s, not 5 min.
        .set("message.timeout.ms", "30000")
        // Java's default partitioner, so producers in other languages agree on partitions.
        .set("partitioner", "murmur2_random");
    for (k, v) in &config.client {
        c.set(k, v);
    }
    for (k, v) in &config.producer {
        c.set(k, v);
    }
    for (k, v) in PINNED_PRODUCER {
        c.set(*k, *v);
    }
    c
}

/// A consumer's settings for one service's group.
pub fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut c = base(config);
    c.set("group.id", group)
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).max(1).to_string(),
        )
        // A new group (or one whose broker lost its offsets) starts at the oldest message:
        // redelivery is harmless, a skipped message is not.
        .set("auto.offset.reset", "earliest")
        // How long a fetch may wait at the broker for data. Kafka answers a waiting fetch as
        // soon as a message arrives, but brokers that do not (tansu answers at the deadline)
        // add up to this to every event's latency: 500 ms by librdkafka's default, so p99 was
        // ~350 ms at any load (docs/BENCHMARKS.md). 20 ms costs an idle consumer ~50 small
        // requests/s; raise it under `[transport.consumer]` on a Kafka cluster.
        .set("fetch.wait.max.ms", "20");
    for (k, v) in &config.client {
        c.set(k, v);
    }
    for (k, v) in &config.consumer {
        c.set(k, v);
    }
    for (k, v) in PINNED_CONSUMER {
        c.set(*k, *v);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_settings_override_host_defaults_but_not_pins() {
        let mut cfg = KafkaConfig::default();
        cfg.producer.insert("linger.ms".into(), "50".into());
        let p = producer_config(&cfg);
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        let c = consumer_config(&cfg, "g");
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
    }
}
