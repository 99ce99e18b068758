//! The host's one idempotent producer (`enable.idempotence`, `acks=all`).
//!
//! Owns publishing bytes with a key and headers (`traceparent`, `event_type`) and replacing the
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// Header carrying the event type, so tools can filter without parsing the value.
pub const EVENT_TYPE: &str = "event_type";

/// One record to send.
pub struct Record<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    /// Extra headers besides `traceparent`.
    pub headers: Vec<(&'a str, &'a str)>,
}

pub struct Producer {
    current: RwLock<Arc<FutureProducer<HostContext>>>,
    config: KafkaConfig,
    span_seq: AtomicU64,
}

impl Producer {
    /// # Errors
    /// A librdkafka setting it refuses.
    pub fn new(config: &KafkaConfig) -> Result<Producer, KafkaError> {
        Ok(Producer {
            current: RwLock::new(Arc::new(create(config)?)),
            config: config.clone(),
            span_seq: AtomicU64::new(0),
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
            let traceparent = self.traceparent(r.value);
            let mut headers = OwnedHeaders::new_with_capacity(1 + r.headers.len()).insert(Header {
                key: TRACEPARENT,
                value: Some(traceparent.as_str()),
            });
            for (k, v) in &r.headers {
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

    /// W3C trace context: the trace id is derived from the value (every publish of one
    /// envelope, republished or redelivered, joins one trace), the span id is fresh per send.
    fn traceparent(&self, value: &[u8]) -> String {
        let trace = blake3::hash(value);
        let seq = self.span_seq.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut span = blake3::Hasher::new();
        span.update(trace.as_bytes())
            .update(&seq.to_le_bytes())
            .update(&nanos.to_le_bytes());
        let span = span.finalize();
        format!(
            "00-{}-{}-01",
            hex(&trace.as_bytes()[..16]),
            hex(&span.as_bytes()[..8])
        )
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

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_w3c_shaped_and_keeps_the_trace_of_an_envelope() {
        let p = Producer::new(&KafkaConfig::default()).unwrap();
        let a = p.traceparent(b"{\"outbox_id\":1}");
        let b = p.traceparent(b"{\"outbox_id\":1}");
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 4, "{a}");
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
        assert_eq!(&a[..35], &b[..35], "same envelope, same trace");
        assert_ne!(a, b, "a fresh span per send");
    }
}
