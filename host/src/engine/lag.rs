//! The backlog sampler: every `[admin] sample_interval_ms`, per service this host relays or
//! consumes, the rows not yet consumed (`Store::backlog`: index range reads, never a count of
//! consumed rows, never DDL), the oldest pending row's age and the consumer group's lag
//! (`Transport::lag`: Kafka's committed offsets against the high watermarks, or the embedded
//! queue's depth), emitted as gauges (`telemetry::BacklogSampled`).
//!
//! One task per host, started only where the admin endpoint serves `/metrics` (nothing else
//! shows the values). A failed reading is logged and counted, and the next round tries again;
//! it never stops the host. It changes nothing.

use super::{Shared, channel};
use crate::config::ServiceMode;
use crate::store::now;
use crate::telemetry::{BacklogSampleFailed, BacklogSampled};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a host with sampling turned off (`sample_interval_ms = 0`) looks whether a
/// config reload turned it on.
const OFF_RECHECK: Duration = Duration::from_secs(1);

/// Samples until `stop` is cancelled.
///
/// # Cancel safety
/// Cancel safe: a round only reads.
pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let interval = shared.config.get().admin.sample_interval_ms;
        let pause = if interval == 0 {
            OFF_RECHECK
        } else {
            tokio::select! {
                () = sample(&shared) => {}
                () = stop.cancelled() => return,
            }
            Duration::from_millis(interval)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One round: every service this host runs a half of.
async fn sample(shared: &Shared) {
    let catalog = shared.catalog.get();
    for service in catalog.services() {
        if service.mode == ServiceMode::External {
            continue; // another system owns its table, topic and group
        }
        let backlog = match shared.store.backlog(&service.table).await {
            Ok(b) => b,
            Err(e) => {
                BacklogSampleFailed {
                    service: &service.name,
                    source: "store",
                    error: &e,
                }
                .emit();
                continue;
            }
        };
        let lag = match shared.transport.lag(channel(service)).await {
            Ok(n) => Some(n),
            Err(e) => {
                BacklogSampleFailed {
                    service: &service.name,
                    source: "transport",
                    error: &e,
                }
                .emit();
                None
            }
        };
        let age = backlog
            .oldest_pending
            .map_or(0.0, |t| (now() - t).as_seconds_f64().max(0.0));
        BacklogSampled {
            service: &service.name,
            pending: backlog.pending,
            published: backlog.published,
            dead: backlog.dead,
            oldest_pending_age_seconds: age,
            lag,
        }
        .emit();
    }
}
