//! The host's one idempotent producer (`enable.idempotence`, `acks=all`).
//!
//! Owns publishing bytes with a key and headers (the row's `traceparent`, `event_type`) and
//! replacing the
//! producer when librdkafka declares it fatally broken (an idempotent producer can, e.g. when
//! a broker loses its state). It never parses or alters the value: SmartFlow's envelope bytes
//! go out exactly as the relay built them.

use super::client::producer_config;
use super::context::HostContext;
use crate::config::KafkaConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::{Arc, RwLock};

/// Header carrying the W3C trace context (the row's `traceparent` column).
pub const TRACEPARENT: &str = crate::traces::TRACEPARENT;
/// Header carrying the event type, so tools can filter without parsing the value.
pub const EVENT_TYPE: &str = "event_type";

/// One record to send.
pub struct Record<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    /// The trace the message continues: sent as the `traceparent` header when there is one.
    pub traceparent: Option<&'a str>,
    /// Extra headers besides `traceparent`.
    pub headers: Vec<(&'a str, &'a str)>,
}

pub struct Producer {
    current: RwLock<Arc<FutureProducer<HostContext>>>,
    config: KafkaConfig,
}

impl Producer {
    /// # Errors
    /// A librdkafka setting it refuses.
    pub fn new(config: &KafkaConfig) -> Result<Producer, KafkaError> {
        Ok(Producer {
            current: RwLock::new(Arc::new(create(config)?)),
            config: config.clone(),
        })
    }

    fn producer(&self) -> Arc<FutureProducer<HostContext>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends records to `topic` in order and waits for each one's acknowledgement (all
    /// in-sync replicas). One result per record, in order; an error says why.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future leaves records in flight whose outcome is unknown
    /// (the relay's visibility timeout republishes them).
    pub async fn send(&self, topic: &str, records: &[Record<'_>]) -> Vec<Result<(), String>> {
        let producer = self.producer();
        let mut results: Vec<Option<Result<(), String>>> = vec![None; records.len()];
        let mut in_flight: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let mut headers = OwnedHeaders::new_with_capacity(1 + r.headers.len());
            let traceparent = r.traceparent.map(|t| (TRACEPARENT, t));
            for (k, v) in traceparent.iter().chain(&r.headers) {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(*v),
                });
            }
            let mut record = FutureRecord::to(topic)
                .key(r.key)
                .payload(r.value)
                .headers(headers);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        in_flight.push((i, delivery));
                        break;
                    }
                    // The local queue is full: wait for what is in flight, then try again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if !in_flight.is_empty() =>
                    {
                        record = back;
                        drain(&mut in_flight, &mut results).await;
                    }
                    Err((e, _)) => {
                        results[i] = Some(Err(e.to_string()));
                        break;
                    }
                }
            }
        }
        drain(&mut in_flight, &mut results).await;
        if results.iter().any(|r| matches!(r, Some(Err(_)))) {
            self.replace(&producer);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("record was never sent".into())))
            .collect()
    }

    /// After a failed send, build a fresh producer in place of `used`. An idempotent producer
    /// whose broker forgot it (a broker back without its data answers UNKNOWN_PRODUCER_ID)
    /// can stay stuck, timing out every later send, or be fatally failed; a fresh one gets a
    /// new producer id. Records still in flight on the old one finish or time out there.
    fn replace(&self, used: &Arc<FutureProducer<HostContext>>) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&current, used) {
            return; // another publisher replaced it already
        }
        let fatal = used.client().fatal_error();
        match create(&self.config) {
            Ok(fresh) => {
                tracing::warn!(fatal = ?fatal, "kafka send failed; producer replaced");
                *current = Arc::new(fresh);
            }
            Err(e) => {
                tracing::error!(error = %e, "kafka producer cannot be rebuilt; keeping the old one")
            }
        }
    }
}

fn create(config: &KafkaConfig) -> Result<FutureProducer<HostContext>, KafkaError> {
    producer_config(config).create_with_context(HostContext { client: "producer" })
}

async fn drain(
    in_flight: &mut Vec<(usize, DeliveryFuture)>,
    results: &mut [Option<Result<(), String>>],
) {
    for (i, delivery) in in_flight.drain(..) {
        results[i] = Some(match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(e.to_string()),
            Err(_) => Err("the producer was dropped before the broker answered".into()),
        });
    }
}
