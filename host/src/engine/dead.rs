//! Dead letters, for an operator (`switchyard dead`): the `dead` rows of each service's table
//! (list, show, requeue, purge, through [`Store`](crate::store::Store)) and, on Kafka, the
//! dead-letter topic `<topic>.dlq` (list, replay, through `transport::kafka::dlq`).
//!
//! Resolves service names through the catalog (so every table name is a validated one) and
//! emits one telemetry event per action. Works beside running hosts: the store only locks and
//! writes `dead` rows, and the DLQ is read without joining or committing to any consumer group.
//! It never runs DDL and never changes a row that is not `dead`.

use super::Switchyard;
use crate::catalog::Service;
use crate::config::TransportConfig;
use crate::store::dead::{DeadAction, DeadChange, DeadFilter, DeadPage, DeadSelection, WholeRow};
use crate::store::now;
use crate::transport::kafka::dlq::{self, DlqMessage};
use anyhow::Context;
use metrics::counter;
use std::sync::Arc;

/// Who acts on dead rows and why (`--by`, `--note`).
#[derive(Debug, Clone)]
pub struct Operator {
    pub actor: String,
    pub note: String,
}

/// Which DLQ messages a replay sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySelection {
    /// Every message in the DLQ topic.
    All,
    /// These positions: `(Some(partition), offset)`, or `(None, offset)` for an offset that
    /// must then be found in exactly one partition.
    Offsets(Vec<(Option<i32>, i64)>),
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub dlq: String,
    pub topic: String,
    /// `(partition, offset)` of each message sent back, in DLQ order.
    pub replayed: Vec<(i32, i64)>,
}

impl Switchyard {
    /// One service of the config, by name.
    ///
    /// # Errors
    /// An unknown service, with the names the config has.
    pub fn configured_service(&self, name: &str) -> anyhow::Result<Arc<Service>> {
        let catalog = self.catalog.get();
        if let Some(s) = catalog.service(name) {
            return Ok(s.clone());
        }
        let known: Vec<&str> = catalog.services().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no service {name:?} in the config (its services: {})",
            known.join(", ")
        )
    }

    /// The named service, or every service of the config.
    fn services_or_all(&self, name: Option<&str>) -> anyhow::Result<Vec<Arc<Service>>> {
        match name {
            Some(n) => Ok(vec![self.configured_service(n)?]),
            None => Ok(self.catalog.get().services().cloned().collect()),
        }
    }

    /// The dead rows `filter` selects in the named service's table, or in every service's,
    /// at most `limit` per service, with how many match in all.
    ///
    /// # Errors
    /// An unknown service, or a database error (a table `migrate` has not created).
    pub async fn dead_rows(
        &self,
        service: Option<&str>,
        filter: &DeadFilter,
        limit: Option<u64>,
    ) -> anyhow::Result<Vec<(Arc<Service>, DeadPage)>> {
        let mut out = Vec::new();
        for s in self.services_or_all(service)? {
            let page = self
                .store
                .dead_rows(&s.table, filter, limit)
                .await
                .with_context(|| format!("listing dead rows of {}", s.table))?;
            out.push((s, page));
        }
        Ok(out)
    }

    /// One row of a service's table, whatever its status.
    ///
    /// # Errors
    /// An unknown service, or a database error.
    pub async fn whole_row(&self, service: &str, id: i64) -> anyhow::Result<Option<WholeRow>> {
        let s = self.configured_service(service)?;
        self.store
            .whole_row(&s.table, id)
            .await
            .with_context(|| format!("reading row {id} of {}", s.table))
    }

    /// Puts the selected dead rows of a service back to `pending`, attempts reset and due now,
    /// recording who, when and why. A running host's relay claims them at its next poll.
    ///
    /// # Errors
    /// An unknown service, or a database error (nothing changed).
    pub async fn requeue_dead(
        &self,
        service: &str,
        selection: &DeadSelection,
        by: &Operator,
    ) -> anyhow::Result<DeadChange> {
        let s = self.configured_service(service)?;
        let action = self.action(&s, by);
        let change = self
            .store
            .requeue_dead(&s.table, selection, &action)
            .await
            .with_context(|| format!("requeueing dead rows of {}", s.table))?;
        if let DeadChange::Done(rows) = &change {
            DeadRowsRequeued {
                service: &s.name,
                rows: rows.len(),
                actor: &action.actor,
                note: &action.note,
            }
            .emit();
        }
        Ok(change)
    }

    /// Deletes the selected dead rows of a service (never a row in another status), recording
    /// who, when and why.
    ///
    /// # Errors
    /// An unknown service, or a database error (nothing changed).
    pub async fn purge_dead(
        &self,
        service: &str,
        selection: &DeadSelection,
        by: &Operator,
    ) -> anyhow::Result<DeadChange> {
        let s = self.configured_service(service)?;
        let action = self.action(&s, by);
        let change = self
            .store
            .purge_dead(&s.table, selection, &action)
            .await
            .with_context(|| format!("purging dead rows of {}", s.table))?;
        if let DeadChange::Done(rows) = &change {
            DeadRowsPurged {
                service: &s.name,
                rows: rows.len(),
                actor: &action.actor,
                note: &action.note,
            }
            .emit();
        }
        Ok(change)
    }

    fn action(&self, service: &Service, by: &Operator) -> DeadAction {
        DeadAction {
            service: service.name.clone(),
            actor: by.actor.clone(),
            note: by.note.clone(),
            at: now(),
        }
    }

    /// The Kafka settings, or an error saying the config has no DLQ.
    fn kafka(&self) -> anyhow::Result<crate::config::KafkaConfig> {
        match &self.config.get().transport {
            TransportConfig::Kafka(k) => Ok(k.clone()),
            TransportConfig::Embedded => anyhow::bail!(
                "this config's transport is the embedded queue, which has no dead-letter topic \
                 (it only carries envelopes this host encoded): --dlq needs [transport] kind = \
                 \"kafka\""
            ),
        }
    }

    /// Every message of the named service's dead-letter topic (or of every service this host
    /// can consume), read from the beginning without joining a consumer group or committing
    /// anything. Per service: its messages, or why its DLQ could not be read.
    ///
    /// # Errors
    /// An unknown service, or a config whose transport is not Kafka.
    pub async fn dlq_messages(
        &self,
        service: Option<&str>,
    ) -> anyhow::Result<Vec<(Arc<Service>, Result<Vec<DlqMessage>, dlq::DlqError>)>> {
        let kafka = self.kafka()?;
        let services: Vec<Arc<Service>> = match service {
            Some(n) => vec![self.configured_service(n)?],
            // Only a consumer writes a DLQ: an external or relay-only service has none here.
            None => self
                .catalog
                .get()
                .services()
                .filter(|s| s.mode.consumes())
                .cloned()
                .collect(),
        };
        let mut out = Vec::new();
        for s in services {
            let read = dlq::read_all(&kafka, &crate::transport::kafka::dlq_topic(&s.topic)).await;
            out.push((s, read));
        }
        Ok(out)
    }

    /// Sends the selected messages of a service's dead-letter topic back to its topic, bytes,
    /// key and all (with a `dlq_replayed_from` header). The consumer handles them like any
    /// message: one still undecodable goes to the DLQ again with its reason, so nothing is
    /// lost; one naming a row already final is acknowledged without running anything.
    ///
    /// # Errors
    /// An unknown service, a non-Kafka config, an unreadable DLQ, an offset not in the DLQ
    /// (nothing sent then), or a message the broker refused (the ones before it were sent).
    pub async fn dlq_replay(
        &self,
        service: &str,
        selection: &ReplaySelection,
    ) -> anyhow::Result<ReplayReport> {
        let kafka = self.kafka()?;
        let s = self.configured_service(service)?;
        let dlq_name = crate::transport::kafka::dlq_topic(&s.topic);
        let messages = dlq::read_all(&kafka, &dlq_name)
            .await
            .with_context(|| format!("reading {dlq_name}"))?;
        let chosen: Vec<&DlqMessage> = match selection {
            ReplaySelection::All => messages.iter().collect(),
            ReplaySelection::Offsets(wanted) => {
                let mut chosen = Vec::new();
                for (partition, offset) in wanted {
                    let found: Vec<&DlqMessage> = messages
                        .iter()
                        .filter(|m| {
                            m.offset == *offset && partition.is_none_or(|p| p == m.partition)
                        })
                        .collect();
                    match found.as_slice() {
                        [one] => chosen.push(*one),
                        [] => anyhow::bail!(
                            "{dlq_name} has no message at {}: nothing replayed (`switchyard \
                             dead list --dlq --service {}` shows what it holds)",
                            position(*partition, *offset),
                            s.name
                        ),
                        many => anyhow::bail!(
                            "offset {offset} is in partitions {} of {dlq_name}: say which, \
                             e.g. --offset {}:{offset}; nothing replayed",
                            many.iter()
                                .map(|m| m.partition.to_string())
                                .collect::<Vec<_>>()
                                .join(" and "),
                            many[0].partition
                        ),
                    }
                }
                chosen.sort_by_key(|m| (m.partition, m.offset));
                chosen.dedup_by_key(|m| (m.partition, m.offset));
                chosen
            }
        };
        dlq::replay(&kafka, &s.topic, &chosen)
            .await
            .with_context(|| format!("replaying {dlq_name} to {}", s.topic))?;
        DlqReplayed {
            service: &s.name,
            topic: &s.topic,
            messages: chosen.len(),
        }
        .emit();
        Ok(ReplayReport {
            dlq: dlq_name,
            topic: s.topic.clone(),
            replayed: chosen.iter().map(|m| (m.partition, m.offset)).collect(),
        })
    }
}

fn position(partition: Option<i32>, offset: i64) -> String {
    match partition {
        Some(p) => format!("partition {p} offset {offset}"),
        None => format!("offset {offset}"),
    }
}

/// An operator put dead rows back to `pending`.
pub struct DeadRowsRequeued<'a> {
    pub service: &'a str,
    pub rows: usize,
    pub actor: &'a str,
    pub note: &'a str,
}

impl DeadRowsRequeued<'_> {
    pub fn emit(&self) {
        tracing::info!(
            service = self.service,
            rows = self.rows,
            actor = self.actor,
            note = self.note,
            "dead rows requeued"
        );
        counter!("switchyard_dead_requeued_total", "service" => self.service.to_owned())
            .increment(self.rows as u64);
    }
}

/// An operator deleted dead rows.
pub struct DeadRowsPurged<'a> {
    pub service: &'a str,
    pub rows: usize,
    pub actor: &'a str,
    pub note: &'a str,
}

impl DeadRowsPurged<'_> {
    pub fn emit(&self) {
        tracing::info!(
            service = self.service,
            rows = self.rows,
            actor = self.actor,
            note = self.note,
            "dead rows purged"
        );
        counter!("switchyard_dead_purged_total", "service" => self.service.to_owned())
            .increment(self.rows as u64);
    }
}

/// An operator sent dead-lettered messages back to their service's topic.
pub struct DlqReplayed<'a> {
    pub service: &'a str,
    pub topic: &'a str,
    pub messages: usize,
}

impl DlqReplayed<'_> {
    pub fn emit(&self) {
        tracing::info!(
            service = self.service,
            topic = self.topic,
            messages = self.messages,
            "dead-letter messages replayed"
        );
        counter!("switchyard_dlq_replayed_total", "service" => self.service.to_owned())
            .increment(self.messages as u64);
    }
}
