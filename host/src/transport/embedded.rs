//! The default transport: a bounded in-process queue per service.
//!
//! Carries the same envelope bytes Kafka would. Bounded, so a relay that outruns its consumer
//! waits instead of filling memory. Volatile: what is queued dies with the process, which is
//! why the engine republishes `published` rows at start when this transport is in use.

use super::{Channel, Delivery, Message, Subscription, Transport, TransportError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Messages buffered per service before `publish` waits.
const QUEUE_CAPACITY: usize = 8_192;

struct Queue {
    tx: mpsc::Sender<Delivery>,
    rx: Option<mpsc::Receiver<Delivery>>,
    next_offset: i64,
    progress: Arc<Progress>,
}

/// The highest offsets the service's consumer has taken and acknowledged: messages taken and
/// not yet acknowledged still count in its lag, as on Kafka, where the consumer takes the
/// next batch while one runs. Highest offsets rather than a count, so a batch lost when a
/// consumer restarts stops counting once a later one is acknowledged.
#[derive(Default)]
struct Progress {
    taken: AtomicI64,
    acknowledged: AtomicI64,
}

impl Progress {
    fn in_flight(&self) -> u64 {
        let taken = self.taken.load(Ordering::Relaxed);
        let acknowledged = self.acknowledged.load(Ordering::Relaxed);
        u64::try_from(taken - acknowledged).unwrap_or(0)
    }
}

/// The highest offset of `deliveries`.
fn last_offset(deliveries: &[Delivery]) -> i64 {
    deliveries.iter().map(|d| d.position.1).max().unwrap_or(0)
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
                progress: Arc::default(),
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
        let (rx, progress) =
            self.with_queue(channel.service, |q| (q.rx.take(), q.progress.clone()));
        let rx = rx.ok_or_else(|| TransportError::AlreadySubscribed(channel.service.to_owned()))?;
        Ok(Box::new(EmbeddedSubscription { rx, progress }))
    }

    async fn lag(&self, channel: Channel<'_>) -> Result<u64, TransportError> {
        // Messages sent and not yet received (the channel's used capacity), and those received
        // and not yet acknowledged.
        Ok(self.with_queue(channel.service, |q| {
            (q.tx.max_capacity() - q.tx.capacity()) as u64 + q.progress.in_flight()
        }))
    }

    fn is_volatile(&self) -> bool {
        true
    }
}

struct EmbeddedSubscription {
    rx: mpsc::Receiver<Delivery>,
    progress: Arc<Progress>,
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        let mut batch = Vec::with_capacity(max.min(1024));
        // recv_many is cancel safe and returns 0 only once the channel is closed.
        if self.rx.recv_many(&mut batch, max).await == 0 {
            return None;
        }
        self.progress
            .taken
            .fetch_max(last_offset(&batch), Ordering::Relaxed);
        Some(batch)
    }

    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), TransportError> {
        // Only counted for the lag: a delivery leaves the queue when it is received, and a
        // lost one is republished by the relay's visibility timeout.
        self.progress
            .acknowledged
            .fetch_max(last_offset(deliveries), Ordering::Relaxed);
        Ok(())
    }
}
