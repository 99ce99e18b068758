//! librdkafka callbacks: client errors into telemetry (producer, admin client, lag reader),
//! and a consumer's record of the partitions it owns right now.
//!
//! The owned set is what keeps a commit from touching a partition this host no longer owns:
//! revoked partitions leave it before librdkafka hands them over, assigned ones join it after.
//! It never commits or seeks anything itself.

use super::events::{CommitFailed, KafkaClientError, PartitionsRebalanced};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Context of the producer and admin client.
pub struct HostContext {
    pub client: &'static str,
}

impl ClientContext for HostContext {
    fn error(&self, error: KafkaError, reason: &str) {
        KafkaClientError {
            client: self.client,
            error: &error,
            reason,
        }
        .emit();
    }
}

/// The lag reader (`lag.rs`) and the DLQ reader (`dlq.rs`) are consumers that never subscribe:
/// no rebalance to follow.
impl ConsumerContext for HostContext {}

/// Partitions of the subscribed topic this consumer owns.
pub type Owned = Arc<Mutex<BTreeSet<i32>>>;

/// Context of one service's consumer.
pub struct GroupContext {
    pub group: String,
    pub topic: String,
    pub owned: Owned,
    /// Signalled when a broker connection fails or the subscribed topic vanished, so the
    /// subscription drops this consumer and builds a fresh one (see `consumer`).
    pub broker_down: Arc<Notify>,
}

impl GroupContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::UnknownTopicOrPartition
            )
        ) {
            self.broker_down.notify_one();
        }
        KafkaClientError {
            client: &self.group,
            error: &error,
            reason,
        }
        .emit();
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = self.partitions(tpl);
                let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
                for p in &revoked {
                    owned.remove(p);
                }
                drop(owned);
                PartitionsRebalanced {
                    group: &self.group,
                    topic: &self.topic,
                    change: "revoked",
                    partitions: &revoked,
                }
                .emit();
            }
            Rebalance::Error(e) => KafkaClientError {
                client: &self.group,
                error: e,
                reason: "rebalance",
            }
            .emit(),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = self.partitions(tpl);
            self.owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(assigned.iter().copied());
            PartitionsRebalanced {
                group: &self.group,
                topic: &self.topic,
                change: "assigned",
                partitions: &assigned,
            }
            .emit();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            CommitFailed {
                group: &self.group,
                error: &e,
            }
            .emit();
        }
    }
}
