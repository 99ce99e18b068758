//! Typed telemetry of the Kafka transport: one struct per thing worth logging or counting,
//! whose `emit` writes the log line and the metric together (the house's `telemetry` shape,
//! kept beside the integration like Vector's `internal_events/kafka.rs`). Nothing here decides
//! anything.

use metrics::counter;

/// librdkafka reported a client-level error (broker down, authentication, ...). It retries on
/// its own; this is the log line an operator sees while a broker is away.
pub struct KafkaClientError<'a> {
    /// `producer`, `admin` or the consumer group.
    pub client: &'a str,
    pub error: &'a dyn std::fmt::Display,
    pub reason: &'a str,
}

impl KafkaClientError<'_> {
    pub fn emit(&self) {
        tracing::warn!(client = self.client, error = %self.error, reason = self.reason, "kafka client error; librdkafka retries");
        counter!("switchyard_kafka_client_errors_total", "client" => self.client.to_owned())
            .increment(1);
    }
}

/// Receiving from a service's topic failed; the consumer backs off and receives again.
pub struct ConsumeFailed<'a> {
    pub topic: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl ConsumeFailed<'_> {
    pub fn emit(&self) {
        tracing::warn!(topic = self.topic, error = %self.error, "kafka receive failed; retrying");
        counter!("switchyard_kafka_consume_errors_total", "topic" => self.topic.to_owned())
            .increment(1);
    }
}

/// The group moved partitions to or from this host.
pub struct PartitionsRebalanced<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    /// `assigned` or `revoked`.
    pub change: &'static str,
    pub partitions: &'a [i32],
}

impl PartitionsRebalanced<'_> {
    pub fn emit(&self) {
        tracing::info!(
            group = self.group,
            topic = self.topic,
            change = self.change,
            partitions = ?self.partitions,
            "kafka partitions rebalanced"
        );
        counter!("switchyard_kafka_rebalances_total", "group" => self.group.to_owned())
            .increment(1);
    }
}

/// An offset commit the broker refused; the messages will be delivered again (harmless: their
/// rows are final and are acknowledged without running anything).
pub struct CommitFailed<'a> {
    pub group: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl CommitFailed<'_> {
    pub fn emit(&self) {
        tracing::warn!(group = self.group, error = %self.error, "kafka offset commit failed");
        counter!("switchyard_kafka_commit_failed_total", "group" => self.group.to_owned())
            .increment(1);
    }
}

/// The raw bytes of an undecodable message were copied to the dead-letter topic.
pub struct MessageDeadLettered<'a> {
    pub origin: &'a str,
    pub dlq: &'a str,
    pub reason: &'a str,
}

impl MessageDeadLettered<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            origin = self.origin,
            dlq = self.dlq,
            reason = self.reason,
            "message copied to dead-letter topic"
        );
        counter!("switchyard_kafka_dead_lettered_total", "topic" => self.dlq.to_owned())
            .increment(1);
    }
}

/// Copying to the dead-letter topic failed for good: the raw bytes go to the log instead, so
/// they still do not disappear.
pub struct DeadLetterFailed<'a> {
    pub origin: &'a str,
    pub dlq: &'a str,
    pub error: &'a str,
    pub raw: &'a [u8],
}

impl DeadLetterFailed<'_> {
    pub fn emit(&self) {
        tracing::error!(
            origin = self.origin,
            dlq = self.dlq,
            error = self.error,
            raw = %String::from_utf8_lossy(self.raw),
            "copying to the dead-letter topic failed; raw message logged here"
        );
        counter!("switchyard_kafka_dead_letter_failed_total", "topic" => self.dlq.to_owned())
            .increment(1);
    }
}
