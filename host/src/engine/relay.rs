//! The relay of one service: claim due rows (marking them `published`), publish them.
//!
//! Wakes when a row is enqueued through this host, when the earliest scheduled retry is due,
//! or at the poll interval (rows written by other processes). A row whose wrapper cannot be
//! decoded is a failed attempt (it ends `dead` with the reason, never silently dropped); a
//! publish failure is a failed attempt too (back to `pending` with backoff).

use super::Shared;
use crate::catalog::Service;
use crate::config::Config;
use crate::envelope::{self, Wrapper};
use crate::store::{Timestamp, earlier, now};
use crate::telemetry::{LoopError, RelayBatchPublished, StaleRowsRequeued};
use crate::transport::Message;
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
    let mut last_sweep = Instant::now();
    loop {
        if stop.is_cancelled() {
            return;
        }
        // Read every round: a config reload may change them.
        let config = shared.config.get();
        let poll = Duration::from_millis(config.relay.poll_interval_ms);
        let visibility = Duration::from_millis(config.relay.visibility_timeout_ms);
        if last_sweep.elapsed() >= visibility / 2 {
            last_sweep = Instant::now();
            let t = now();
            match shared
                .store
                .requeue_stale(&service.table, earlier(t, visibility), t)
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
        let sleep = match shared.store.next_due(&service.table).await {
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
    let limit = config.relay.batch_size;
    let hold_keys = config
        .services
        .get(&service.name)
        .is_some_and(|s| s.hold_key_order);
    let rows = shared
        .store
        .claim_due(&service.table, now(), limit, hold_keys)
        .await?;
    if rows.is_empty() {
        return Ok(false);
    }
    let full = rows.len() as u32 >= limit;
    let mut messages = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        if let Some(reason) = &row.unreadable {
            failures.push((row.id, reason.clone()));
            continue;
        }
        match Wrapper::parse(&row.payload) {
            Ok(wrapper) => {
                let owner = if row.service_name.is_empty() {
                    &service.name
                } else {
                    &row.service_name
                };
                messages.push(Message {
                    key: row.message_key.clone(),
                    value: envelope::encode(row.id, owner, &wrapper),
                    event_type: wrapper.event_type,
                });
                ids.push(row.id);
            }
            // Permanent: every later attempt would fail the same way, so the row runs out its
            // retries quickly and ends dead with this reason.
            Err(e) => failures.push((row.id, format!("payload wrapper rejected: {e}"))),
        }
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
    let t = now();
    shared
        .store
        .fail_attempts(
            &service.table,
            &failures,
            &super::backoff(config, &service.name),
            t,
        )
        .await?;
    RelayBatchPublished {
        service: &service.name,
        published: published.len(),
        failed: failures.len(),
    }
    .emit();
    Ok(full)
}
