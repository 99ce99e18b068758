//! Committing what a consumer decided for a batch: ONE store transaction for every row's
//! outcome and the acked rows' effects, then the log line and metric per event, then the
//! relays of the tables that received emitted rows are woken.
//!
//! A failing commit never wedges the service. A connection-level failure (the database is
//! unreachable, a deadlock) retries the same rows after a pause, and gives up at shutdown
//! (nothing is acknowledged to the transport, so the rows are delivered again). A statement
//! the database refuses (a constraint, a value its column cannot hold) is a problem of some
//! row: the rows are split in halves and each half committed on its own, down to the single
//! rows that cannot commit, which are recorded as failed attempts carrying the database's
//! error (they are retried, then dead at `max_attempts`); every other row commits.
//! Known limit: a row committed after an isolated row may have read that row's state writes
//! through the batch overlay, though they were never stored (docs/SECURITY.md).
//!
//! When the batch's handlers read committed state, the batch already has a transaction that
//! holds those keys' locks (`batch_state`): the outcomes commit in it. If it failed (a read
//! or the apply hit a deadlock between hosts, or the connection was lost), nothing of the batch
//! committed and the whole batch runs again ([`BatchEnd::Rerun`]): its handlers' reads are
//! void with the transaction. Only a statement the database refuses falls back to the
//! isolating path above, in new transactions (whose commits no longer hold the read locks: a
//! rare path, where a concurrent host's write between the rollback and the commit would win).

use super::Shared;
use super::batch_state::{Taken, Tx};
use crate::catalog::{Catalog, Service};
use crate::config::Config;
use crate::store::{ApplyReport, BatchOutcomes, RowOutcome, StoreError, now};
use crate::telemetry::{EventHandled, LoopError};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ERROR_BACKOFF: Duration = Duration::from_millis(500);

/// One handled event, for its log line after the commit.
pub(super) struct Handled {
    pub id: i64,
    pub event_type: String,
    pub label: &'static str,
    pub version: Arc<str>,
    pub micros: u128,
}

/// How handling a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchEnd {
    /// Every outcome is committed: acknowledge the batch.
    Committed,
    /// Nothing of it committed and its handlers' reads and statements are void: run it again,
    /// `without` the row whose invocation was cut off midway (its failed attempt is recorded),
    /// `careful`ly (a savepoint per invocation) when the optimistic run had to be undone;
    /// `suspect`: the row whose read or statement failed transiently (see `consumer`).
    Rerun {
        without: Option<i64>,
        careful: bool,
        suspect: Option<i64>,
    },
    /// Nothing of it committed, and the database refused a row whose handlers' `sql`
    /// statements ran in the batch's transaction: run it again committing each event on its own,
    /// so the refused row fails alone.
    Isolate,
    /// The host is stopping before it could commit: do not acknowledge it.
    Stopped,
}

/// Commits `rows` (in delivery order, one `Handled` each): in the batch's transaction `tx` if
/// its handlers opened one, else in one new transaction, isolating the rows that make it fail
/// when the database refuses a statement.
#[allow(clippy::too_many_arguments)]
pub(super) async fn commit(
    shared: &Shared,
    service: &Service,
    catalog: &Catalog,
    config: &Config,
    rows: Vec<(i64, RowOutcome)>,
    logs: Vec<Handled>,
    taken: Taken,
    stop: &CancellationToken,
) -> BatchEnd {
    if rows.is_empty() {
        // Nothing to write; an open transaction only held read locks, released either way.
        return BatchEnd::Committed;
    }
    let backoff = super::backoff(config, &service.name);
    let mut done = Done::default();
    let mut pieces: VecDeque<Vec<(i64, RowOutcome)>> = VecDeque::new();
    match taken.tx {
        Tx::Closed => pieces.push_back(rows),
        Tx::Broken {
            reason,
            culprit: None,
            careful: true,
            ..
        } => {
            // Expected (a handler's retry or dead after writing): no error, no pause.
            tracing::debug!(service = %service.name, %reason, "batch runs again carefully");
            return BatchEnd::Rerun {
                without: None,
                careful: true,
                suspect: None,
            };
        }
        Tx::Broken {
            reason,
            culprit,
            suspect,
            ..
        } => {
            if let Some(id) = culprit {
                let why = rows.iter().find_map(|(row, outcome)| match outcome {
                    RowOutcome::Retry { reason, .. } if *row == id => Some(reason.clone()),
                    _ => None,
                });
                let why = why.unwrap_or_else(|| reason.clone());
                if !fail_row(shared, service, &backoff, id, why, stop).await {
                    return BatchEnd::Stopped;
                }
            }
            return rerun(shared, service, &reason, culprit, suspect);
        }
        Tx::Open { mut tx, .. } => {
            let batch = BatchOutcomes {
                service: service.name.clone(),
                rows,
            };
            let applied = match tx.apply(&service.table, &batch, &backoff, now()).await {
                // A row another host made final after this batch read its status: its
                // invocation ran anyway, and what it read and wrote fed the later rows' writes
                // (the batch's state overlay, its `sql` statements), so committing the others
                // would count its effects twice. Nothing of this run commits; the rerun reads
                // the statuses again and leaves that row out before invoking.
                Ok(report) if report.skipped > 0 => {
                    drop(tx);
                    tracing::debug!(service = %service.name, skipped = report.skipped,
                        "rows finished elsewhere during the batch: it runs again without them");
                    return BatchEnd::Rerun {
                        without: None,
                        careful: false,
                        suspect: None,
                    };
                }
                Ok(report) => tx.commit().await.map(|()| report),
                Err(e) => {
                    // Rolled back now: a failed attempt recorded below is a write of its own,
                    // which must not wait behind this transaction (SQLite's one writer).
                    drop(tx);
                    Err(e)
                }
            };
            match applied {
                Ok(report) => done.committed(report, batch.rows),
                // The database refuses some row: find it in new transactions (below)...
                Err(e) if refused_by_the_database(&e) && !taken.ran_sql => {
                    pieces.push_back(batch.rows);
                }
                // ...unless handlers' statements ran in this one: they are gone with it, so
                // the rows must run again. One row alone is the one refused.
                Err(e) if refused_by_the_database(&e) && batch.rows.len() == 1 => {
                    let id = batch.rows[0].0;
                    let reason = format!("commit failed: {e}");
                    if !fail_row(shared, service, &backoff, id, reason.clone(), stop).await {
                        return BatchEnd::Stopped;
                    }
                    done.failed_commits.insert(id, reason);
                    done.retried = true;
                }
                Err(e) if refused_by_the_database(&e) => {
                    rerun(shared, service, &e.to_string(), None, None);
                    return BatchEnd::Isolate;
                }
                Err(e) => return rerun(shared, service, &e.to_string(), None, None),
            }
        }
    }
    // Pieces still to commit, in delivery order (a split puts its halves at the front).
    while let Some(piece) = pieces.pop_front() {
        let batch = BatchOutcomes {
            service: service.name.clone(),
            rows: piece,
        };
        let error = match shared
            .store
            .apply(&service.table, &batch, &backoff, now())
            .await
        {
            Ok(report) => {
                done.committed(report, batch.rows);
                continue;
            }
            Err(e) => e,
        };
        shared.counters.batch_commit_failed(&service.name);
        LoopError {
            service: &service.name,
            stage: "apply batch",
            error: &error,
        }
        .emit();
        let mut rows = batch.rows;
        if !refused_by_the_database(&error) {
            // Nothing was committed; the same rows are applied again (apply re-checks every
            // row's status, so a partial earlier success cannot double-apply).
            pieces.push_front(rows);
            if !pause(stop).await {
                return BatchEnd::Stopped;
            }
            continue;
        }
        if rows.len() > 1 {
            let second = rows.split_off(rows.len() / 2);
            pieces.push_front(second);
            pieces.push_front(rows);
            continue;
        }
        // One row whose effects the database refuses: a failed attempt with its error.
        let id = rows[0].0;
        let reason = format!("commit failed: {error}");
        if !fail_row(shared, service, &backoff, id, reason.clone(), stop).await {
            return BatchEnd::Stopped;
        }
        done.failed_commits.insert(id, reason);
        done.retried = true;
    }
    for handled in &logs {
        let failed = done.failed_commits.get(&handled.id);
        let (label, reason) = match (failed, done.outcomes.get(&handled.id)) {
            (Some(reason), _) => ("retry", Some(reason.as_str())),
            (None, Some(RowOutcome::Retry { reason, .. } | RowOutcome::Dead { reason })) => {
                (handled.label, Some(reason.as_str()))
            }
            _ => (handled.label, None),
        };
        EventHandled {
            service: &service.name,
            event_type: &handled.event_type,
            outbox_id: handled.id,
            outcome: label,
            reason,
            version: &handled.version,
            micros: handled.micros,
        }
        .emit();
    }
    for table in &done.emitted {
        if let Some(owner) = catalog.services().find(|s| &s.table == table) {
            shared.wakers.wake(&owner.name);
        }
    }
    if done.retried {
        shared.wakers.wake(&service.name); // the relay recomputes when the next retry is due
    }
    BatchEnd::Committed
}

/// What the pieces of a batch ended as, for the log lines and relay wake-ups after them.
#[derive(Default)]
struct Done {
    /// Each committed row's outcome.
    outcomes: HashMap<i64, RowOutcome>,
    /// Rows whose effects the database refused: recorded as failed attempts with this reason.
    failed_commits: HashMap<i64, String>,
    /// Tables that received emitted rows.
    emitted: BTreeSet<String>,
    /// Whether any row is waiting for a retry.
    retried: bool,
}

impl Done {
    fn committed(&mut self, report: ApplyReport, rows: Vec<(i64, RowOutcome)>) {
        self.emitted.extend(report.emitted.into_keys());
        self.retried |= report.retried > 0;
        self.outcomes.extend(rows);
    }
}

/// Records a failed attempt of row `id` on its own (retried after its backoff, dead at
/// `max_attempts`), trying again until it is stored; `false` if the host stops meanwhile.
pub(super) async fn fail_row(
    shared: &Shared,
    service: &Service,
    backoff: &crate::store::Backoff,
    id: i64,
    reason: String,
    stop: &CancellationToken,
) -> bool {
    let failure = [(id, reason)];
    loop {
        match shared
            .store
            .fail_attempts(&service.table, &failure, backoff, now())
            .await
        {
            Ok(()) => return true,
            Err(e) => {
                LoopError {
                    service: &service.name,
                    stage: "record a failed commit",
                    error: &e,
                }
                .emit();
                if !pause(stop).await {
                    return false;
                }
            }
        }
    }
}

/// The batch's transaction failed: logged and counted; the caller runs the batch again
/// (`without` the row that was cut off, see [`BatchEnd::Rerun`]).
fn rerun(
    shared: &Shared,
    service: &Service,
    reason: &str,
    without: Option<i64>,
    suspect: Option<i64>,
) -> BatchEnd {
    shared.counters.batch_commit_failed(&service.name);
    LoopError {
        service: &service.name,
        stage: "consume transaction (the batch runs again)",
        error: &reason,
    }
    .emit();
    BatchEnd::Rerun {
        without,
        careful: false,
        suspect,
    }
}

/// Waits before trying again; `false` if the host is stopping meanwhile.
async fn pause(stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(ERROR_BACKOFF) => !stop.is_cancelled(),
        _ = stop.cancelled() => false,
    }
}

/// Whether the database itself refused a statement of the transaction (so some row's data is
/// the cause, and splitting the batch finds it), as opposed to a lost connection, a pool
/// timeout or a lock conflict (transient: the same rows are tried again).
fn refused_by_the_database(error: &StoreError) -> bool {
    let StoreError::Database {
        source: sqlx::Error::Database(db),
        ..
    } = error
    else {
        return false;
    };
    !crate::store::is_transient(db.as_ref())
}
