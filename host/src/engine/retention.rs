//! The retention loop of one service whose table this host owns (mode `full` or `relay`):
//! deletes `consumed` rows older than the service's `consumed_max_age` (or moves them to
//! `<table>_archive`), at most `batch_size` per round, each round one short transaction that
//! claims never wait for (`Store::delete_consumed`). A full round is followed by the next at
//! once; otherwise the loop sleeps `interval`. It reads the config every round, so a reload
//! applies at the next one; with `consumed_max_age` off it only sleeps. It must never touch a
//! row that is not `consumed` (`dead` rows stay until `switchyard dead purge`).

use super::Shared;
use crate::catalog::Service;
use crate::store::{earlier, now};
use crate::telemetry::{ConsumedRowsDeleted, LoopError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Pause after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn run(shared: Arc<Shared>, service: Arc<Service>, stop: CancellationToken) {
    loop {
        if stop.is_cancelled() {
            return;
        }
        let retention = shared.config.get().retention_for(&service.name);
        let mut pause = retention.interval;
        if let Some(max_age) = retention.consumed_max_age {
            let cutoff = earlier(now(), max_age);
            match shared
                .store
                .delete_consumed(
                    &service.table,
                    cutoff,
                    retention.batch_size,
                    retention.archive,
                )
                .await
            {
                Ok(rows) => {
                    ConsumedRowsDeleted {
                        service: &service.name,
                        rows,
                        archived: retention.archive,
                    }
                    .emit();
                    if rows >= u64::from(retention.batch_size) {
                        pause = Duration::ZERO; // more old rows may wait
                    }
                }
                Err(e) => {
                    LoopError {
                        service: &service.name,
                        stage: "retention",
                        error: &e,
                    }
                    .emit();
                    pause = pause.min(ERROR_BACKOFF);
                }
            }
        }
        if pause.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
    }
}
