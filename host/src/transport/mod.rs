//! Moving envelope bytes from a service's relay to its consumer.
//!
//! A transport knows topics (one per service) and bytes; it knows nothing of routes, handlers
//! or SQL. The engine publishes the same envelope bytes whichever transport is configured, so
//! swapping the embedded queue for Kafka changes no engine code.

pub mod embedded;
pub mod kafka;

use async_trait::async_trait;

/// The names a transport needs for one service's traffic; nothing of routes, tables or
/// config. The engine derives it from the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Channel<'a> {
    /// The owning service (the embedded queue's key; logs).
    pub service: &'a str,
    /// Where its envelopes are published.
    pub topic: &'a str,
    /// The consumer group that receives them.
    pub group: &'a str,
}

/// A message to publish: SmartFlow's envelope as the value, the row's `message_key` as key.
#[derive(Debug, Clone)]
pub struct Message {
    pub key: String,
    pub value: Vec<u8>,
    /// Carried as a header where the transport has them.
    pub event_type: String,
    /// The row's W3C trace context, carried as the `traceparent` header (Kafka) or beside the
    /// value (embedded).
    pub traceparent: Option<String>,
}

/// A received message, with where it came from for logs.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub key: String,
    pub value: Vec<u8>,
    /// e.g. `smartflow.task.outbox/0@42`, or `embedded:task#7`.
    pub origin: String,
    /// Transport-specific position used by [`Subscription::commit`].
    pub position: (i32, i64),
    /// The trace the message continues (its `traceparent` header), if it carries one.
    pub traceparent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The message could not be handed to the transport; the row goes back to `pending`.
    #[error("publish to {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    /// The consumer side failed; the engine logs it and tries again.
    #[error("consume from {topic} failed: {reason}")]
    Consume { topic: String, reason: String },
    /// The consumer group's position or the topic's watermarks could not be read.
    #[error("reading the lag of group {group} on {topic} failed: {reason}")]
    Lag {
        topic: String,
        group: String,
        reason: String,
    },
    /// Only one consumer per service may subscribe in one host.
    #[error("service {0} already has a consumer in this host")]
    AlreadySubscribed(String),
}

#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes messages to the service's topic, in order. One result per message.
    async fn publish(
        &self,
        channel: Channel<'_>,
        messages: Vec<Message>,
    ) -> Vec<Result<(), TransportError>>;

    /// Opens the service's consumer (its consumer group).
    async fn subscribe(
        &self,
        channel: Channel<'_>,
    ) -> Result<Box<dyn Subscription>, TransportError>;

    /// How far the service's consumer group is behind: messages on the channel its consumer
    /// has not yet acknowledged (embedded: the queue's depth plus the messages taken and not
    /// acknowledged; Kafka: high watermark minus committed offset, summed over partitions).
    /// Cheap: one look, no consuming.
    ///
    /// # Errors
    /// [`TransportError::Lag`] when the broker does not answer.
    async fn lag(&self, channel: Channel<'_>) -> Result<u64, TransportError>;

    /// True when messages in flight do not survive the process (the embedded queue): at start
    /// the engine then republishes rows left `published` by a previous run.
    fn is_volatile(&self) -> bool;
}

#[async_trait]
pub trait Subscription: Send {
    /// Waits for at least one message, then returns it with up to `max - 1` more that are
    /// already available. `None` once the transport is closed.
    ///
    /// # Cancel safety
    /// Cancel safe: a message is never half-taken.
    async fn next_batch(&mut self, max: usize) -> Option<Vec<Delivery>>;

    /// Acknowledges deliveries whose outcome has been committed to the database.
    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), TransportError>;

    /// Keeps the raw bytes of a message the engine could not decode (Kafka: copies them to
    /// `<topic>.dlq`), before its offset is committed. Never fails the batch: a transport
    /// that cannot keep them logs them. Default: nothing (the embedded queue only carries
    /// envelopes this host encoded).
    async fn dead_letter(&mut self, _delivery: &Delivery, _reason: &str) {}
}
