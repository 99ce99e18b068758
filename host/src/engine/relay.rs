//! The relay of one service: claim due rows (marking them `published`), publish them.
//!
//! Wakes when a row is enqueued through this host, when the earliest scheduled retry is due,
//! or at the poll interval (rows written by other processes). A row whose wrapper cannot be
//! decoded is a failed attempt (it ends `dead` with the reason, never silently dropped); a
//! publish failure is a failed attempt too (back to `pending` with backoff).
//!
//! It claims only rows of event types this host routes (a row of another type waits,
//! `pending`, for a host that routes it), and moves a row whose type another service owns to
//! that service's table (a legacy shared table drained, a type a config change moved) instead
//! of publishing it where no consumer would take it. It also runs the visibility timeout,
//! which counts a failed attempt, so no row is published forever; for a service in `consume`
//! mode (another system's relay) it runs only that sweep.

use super::Shared;
use crate::catalog::Catalog;
use crate::catalog::Service;
use crate::config::Config;
use crate::envelope::{self, StoredWrapper};
use crate::store::{Claim, Timestamp, earlier, now};
use crate::telemetry::{LoopError, RelayBatchPublished, RowsRelocated, StaleRowsRequeued};
use crate::transport::Message;
use futures::FutureExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Pause after a store or transport error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(500);

pub(super) async fn run(
    shared: Arc<Shared>,
    service: Arc<Service>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    // Sweep at once: a row left `published` by a host that stopped is due for its attempt.
    let mut last_sweep: Option<Instant> = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        // Read every round: a config reload may change them.
        let config = shared.config.get();
        let poll = Duration::from_millis(config.relay.poll_interval_ms);
        let visibility = Duration::from_millis(config.relay.visibility_timeout_ms);
        if last_sweep.is_none_or(|at| at.elapsed() >= visibility / 2) {
            last_sweep = Some(Instant::now());
            let t = now();
            let policy = super::backoff(&config, &service.name);
            match shared
                .store
                .requeue_stale(&service.table, earlier(t, visibility), t, &policy)
                .await
            {
                Ok(rows) => StaleRowsRequeued {
                    service: &service.name,
                    rows,
                }
                .emit(),
                Err(e) => LoopError {
                    service: &service.name,
                    stage: "requeue stale",
                    error: &e,
                }
                .emit(),
            }
        }
        if !service.mode.relays() {
            // `consume` mode: another system's relay publishes; only the sweep is ours.
            tokio::select! {
                _ = tokio::time::sleep(visibility / 2) => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let full = match relay_once(&shared, &service, &config).await {
            Ok(full) => full,
            Err(e) => {
                LoopError {
                    service: &service.name,
                    stage: "relay",
                    error: &e,
                }
                .emit();
                tokio::select! {
                    _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
        };
        if full {
            continue; // more rows are due right now
        }
        if wake.notified().now_or_never().is_some() {
            // Rows were enqueued while this round ran: claim again at once, without first
            // asking the database when the next row is due (under a steady stream of
            // enqueues that query was a round trip in every round, between an enqueue and
            // its claim).
            continue;
        }
        let catalog = shared.catalog.get();
        let sleep = match shared
            .store
            .next_due(&service.table, catalog.routed_types())
            .await
        {
            Ok(Some(due)) => until(due).min(poll),
            _ => poll,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// How long from now until `t` (zero if past).
fn until(t: Timestamp) -> Duration {
    let delta = t - now();
    Duration::try_from(delta).unwrap_or(Duration::ZERO)
}

/// One claim → publish → mark round. Returns whether the claim was full (more may be due).
async fn relay_once(shared: &Shared, service: &Service, config: &Config) -> anyhow::Result<bool> {
    let catalog = shared.catalog.get();
    let claim = Claim {
        now: now(),
        limit: config.relay.batch_size,
        hold_keys: config
            .services
            .get(&service.name)
            .is_some_and(|s| s.hold_key_order),
        types: catalog.routed_types(),
    };
    let rows = shared.store.claim_due(&service.table, &claim).await?;
    if rows.is_empty() {
        return Ok(false);
    }
    let full = rows.len() as u32 >= claim.limit;
    let mut span = shared.traces.relay_batch(
        &service.name,
        &service.topic,
        rows.iter().map(|r| r.traceparent.as_deref()),
    );
    let mut messages = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let mut moves = Vec::new();
    let mut failures = Vec::new();
    for row in &rows {
        if let Some(reason) = &row.unreadable {
            failures.push((row.id, reason.clone()));
            continue;
        }
        match StoredWrapper::parse(&row.payload) {
            Ok(wrapper) => match other_owner(&catalog, service, &row.biz_type) {
                Some(owner) => {
                    moves.push(super::outbox::relocated_row(owner, row, wrapper, config))
                }
                None => {
                    // The row is in this service's table and of its type: it is this
                    // service's, whatever its (possibly empty, legacy) service_name says.
                    messages.push(Message {
                        key: row.message_key.clone(),
                        value: envelope::encode(row.id, &service.name, &wrapper),
                        event_type: wrapper.event_type.into_owned(),
                        traceparent: row.traceparent.clone(),
                    });
                    ids.push(row.id);
                }
            },
            // Permanent: every later attempt would fail the same way, so the row runs out its
            // retries quickly and ends dead with this reason.
            Err(e) => failures.push((row.id, format!("payload wrapper rejected: {e}"))),
        }
    }
    let t = now();
    if !moves.is_empty() {
        let moved = shared.store.relocate(&service.table, &moves, t).await?;
        for owner in moves.iter().map(|m| m.row.service_name.as_str()) {
            shared.wakers.wake(owner);
        }
        RowsRelocated {
            service: &service.name,
            rows: moved.len(),
        }
        .emit();
    }
    let results = shared
        .transport
        .publish(super::channel(service), messages)
        .await;
    let mut published = Vec::with_capacity(ids.len());
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(()) => published.push(id),
            Err(e) => failures.push((id, e.to_string())),
        }
    }
    shared
        .store
        .fail_attempts(
            &service.table,
            &failures,
            &super::backoff(config, &service.name),
            t,
        )
        .await?;
    span.set("switchyard.published", published.len() as i64);
    span.set("switchyard.failed", failures.len() as i64);
    if !failures.is_empty() {
        span.fail(&format!("{} rows not published", failures.len()));
    }
    RelayBatchPublished {
        service: &service.name,
        published: published.len(),
        failed: failures.len(),
    }
    .emit();
    Ok(full)
}

/// The service that owns `event_type` when it is not `service` (claims take routed types
/// only, so every claimed row has an owner).
fn other_owner<'c>(
    catalog: &'c Catalog,
    service: &Service,
    event_type: &str,
) -> Option<&'c Service> {
    catalog
        .route(event_type)
        .ok()
        .map(|r| r.service.as_ref())
        .filter(|owner| owner.name != service.name)
}
