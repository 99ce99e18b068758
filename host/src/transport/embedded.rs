//! The default transport: a bounded in-process queue per service.
//!
//! Carries the same envelope bytes Kafka would. Bounded, so a relay that outruns its consumer
//! waits instead of filling memory. Volatile: what is queued dies with the process, which is
//! why the engine republishes `published` rows at start when this transport is in use.

use super::{Channel, Delivery, Message, Subscription, Transport, TransportError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Messages buffered per service before `publish` waits.
const QUEUE_CAPACITY: usize = 8_192;

struct Queue {
    tx: mpsc::Sender<Delivery>,
    rx: Option<mpsc::Receiver<Delivery>>,
    next_offset: i64,
}

#[derive(Default)]
pub struct EmbeddedTransport {
    queues: Mutex<HashMap<String, Queue>>,
}

impl EmbeddedTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_queue<R>(&self, service: &str, f: impl FnOnce(&mut Queue) -> R) -> R {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues.entry(service.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            Queue {
                tx,
                rx: Some(rx),
                next_offset: 0,
            }
        });
        f(queue)
    }
}

#[async_trait]
impl Transport for EmbeddedTransport {
    async fn publish(
        &self,
        channel: Channel<'_>,
        messages: Vec<Message>,
    ) -> Vec<Result<(), TransportError>> {
        let mut results = Vec::with_capacity(messages.len());
        for m in messages {
            let (tx, offset) = self.with_queue(channel.service, |q| {
                q.next_offset += 1;
                (q.tx.clone(), q.next_offset)
            });
            let delivery = Delivery {
                key: m.key,
                value: m.value,
                origin: format!("embedded:{}#{offset}", channel.service),
                position: (0, offset),
                traceparent: m.traceparent,
            };
            results.push(
                tx.send(delivery)
                    .await
                    .map_err(|_| TransportError::Publish {
                        topic: channel.topic.to_owned(),
                        reason: "the consumer has shut down".into(),
                    }),
            );
        }
        results
    }

    async fn subscribe(
        &self,
        channel: Channel<'_>,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        let rx = self
            .with_queue(channel.service, |q| q.rx.take())
            .ok_or_else(|| TransportError::AlreadySubscribed(channel.service.to_owned()))?;
        Ok(Box::new(EmbeddedSubscription { rx }))
    }

    async fn lag(&self, channel: Channel<'_>) -> Result<u64, TransportError> {
        // Messages sent and not yet received: the channel's used capacity.
        Ok(self.with_queue(channel.service, |q| {
            (q.tx.max_capacity() - q.tx.capacity()) as u64
        }))
    }

    fn is_volatile(&self) -> bool {
        true
    }
}

struct EmbeddedSubscription {
    rx: mpsc::Receiver<Delivery>,
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        let mut batch = Vec::with_capacity(max.min(1024));
        // recv_many is cancel safe and returns 0 only once the channel is closed.
        if self.rx.recv_many(&mut batch, max).await == 0 {
            return None;
        }
        Some(batch)
    }

    async fn commit(&mut self, _deliveries: &[Delivery]) -> Result<(), TransportError> {
        // Nothing to acknowledge: a delivery leaves the queue when it is received, and a lost
        // one is republished by the relay's visibility timeout.
        Ok(())
    }
}
