//! Committing what a consumer decided for a batch: ONE store transaction for every row's
//! outcome and the acked rows' effects, then the log line and metric per event, then the
//! relays of the tables that received emitted rows are woken.

use super::Shared;
use crate::catalog::{Catalog, Service};
use crate::config::Config;
use crate::store::{BatchOutcomes, RowOutcome, now};
use crate::telemetry::{EventHandled, LoopError};
use std::time::Duration;

const ERROR_BACKOFF: Duration = Duration::from_millis(500);

/// One handled event, for its log line after the commit.
pub(super) struct Handled {
    pub id: i64,
    pub event_type: String,
    pub label: &'static str,
    pub version: String,
    pub micros: u128,
}

/// Commits `rows` (in delivery order, one `Handled` each) in one transaction, retrying the
/// whole transaction after a database error.
pub(super) async fn commit(
    shared: &Shared,
    service: &Service,
    catalog: &Catalog,
    config: &Config,
    rows: Vec<(i64, RowOutcome)>,
    logs: Vec<Handled>,
) {
    if rows.is_empty() {
        return;
    }
    let applied = BatchOutcomes {
        service: service.name.clone(),
        rows,
    };
    let report = loop {
        match shared
            .store
            .apply(&service.table, &applied, &super::backoff(config), now())
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                shared.counters.batch_commit_failed(&service.name);
                // Nothing was committed; the same batch is applied again (apply re-checks
                // every row's status, so a partial earlier success cannot double-apply).
                LoopError {
                    service: &service.name,
                    stage: "apply batch",
                    error: &e,
                }
                .emit();
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    };
    for (handled, (_, outcome)) in logs.iter().zip(&applied.rows) {
        let reason = match outcome {
            RowOutcome::Consumed { .. } => None,
            RowOutcome::Retry { reason } | RowOutcome::Dead { reason } => Some(reason.as_str()),
        };
        EventHandled {
            service: &service.name,
            event_type: &handled.event_type,
            outbox_id: handled.id,
            outcome: handled.label,
            reason,
            version: &handled.version,
            micros: handled.micros,
        }
        .emit();
    }
    for table in report.emitted.keys() {
        if let Some(owner) = catalog.services().find(|s| &s.table == table) {
            shared.wakers.wake(&owner.name);
        }
    }
    if report.retried > 0 {
        shared.wakers.wake(&service.name); // the relay recomputes when the next retry is due
    }
}
