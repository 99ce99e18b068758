//! Group commit of enqueues: concurrent [`Store::insert`](crate::store::Store::insert) calls
//! that queue for a turn (SQLite's writer turn; on a server, the turn of the enqueue groups)
//! are committed together, in one transaction and one log flush, by whichever of them gets the
//! turn first. With SQLite's `synchronous = full` a commit costs an fsync, and one per enqueue
//! capped a steady stream of single-event publishes below 1,000 events/s here and let the
//! writer queue grow to seconds; on MariaDB 1,000 single-row commits a second beside the
//! consumer kept a standing queue of ~0.5 s (docs/BENCHMARKS.md).
//!
//! Each request's rows get its own `INSERT` with its own timestamp, in request order; if any
//! of them fails, the transaction is rolled back and each request runs again alone, so one
//! bad request never fails the others. The group runs in a task of its own, so a caller that
//! gives up (its future dropped) cannot leave the requests it carried unanswered; a request
//! whose caller gave up before the group began is skipped.

use super::Dialect;
use crate::store::{NewRow, StoreResult, Timestamp, db};
use sqlx::Pool;
use tokio::sync::{OwnedMutexGuard, oneshot};

/// One caller's rows, waiting for a group to carry them.
pub(super) struct Waiting {
    rows: Vec<NewRow>,
    now: Timestamp,
    reply: oneshot::Sender<StoreResult<Vec<i64>>>,
}

/// The requests waiting for the writer turn.
#[derive(Default)]
pub(super) struct InsertQueue(std::sync::Mutex<Vec<Waiting>>);

impl InsertQueue {
    /// Queues `rows`; the receiver gets their ids once a group committed them.
    pub(super) fn push(
        &self,
        rows: &[NewRow],
        now: Timestamp,
    ) -> oneshot::Receiver<StoreResult<Vec<i64>>> {
        let (reply, answer) = oneshot::channel();
        self.lock().push(Waiting {
            rows: rows.to_vec(),
            now,
            reply,
        });
        answer
    }

    /// Every request waiting now.
    pub(super) fn take(&self) -> Vec<Waiting> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Commits `group` in one transaction while holding the writer `turn`, answering each request;
/// on a failure, each request alone in its own transaction.
pub(super) async fn commit_group<D: Dialect>(
    pool: Pool<D>,
    turn: OwnedMutexGuard<()>,
    group: Vec<Waiting>,
) {
    let group: Vec<Waiting> = group.into_iter().filter(|w| !w.reply.is_closed()).collect();
    if group.len() > 1 {
        match insert_all(&pool, &group).await {
            Ok(ids) => {
                for (w, ids) in group.into_iter().zip(ids) {
                    let _ = w.reply.send(Ok(ids));
                }
                drop(turn);
                return;
            }
            Err(e) => tracing::debug!(error = %e, requests = group.len(),
                "a group of enqueues failed; each runs again alone"),
        }
    }
    for w in group {
        let one = std::slice::from_ref(&w);
        let result = insert_all(&pool, one).await.map(|mut ids| ids.remove(0));
        let _ = w.reply.send(result);
    }
    drop(turn);
}

/// Every request's rows in one transaction: their ids, request by request.
async fn insert_all<D: Dialect>(pool: &Pool<D>, group: &[Waiting]) -> StoreResult<Vec<Vec<i64>>> {
    let mut tx = D::begin_write(pool).await.map_err(db("begin insert"))?;
    let mut ids = Vec::with_capacity(group.len());
    for w in group {
        ids.push(D::insert_rows(&mut tx, &w.rows, w.now).await?);
    }
    tx.commit().await.map_err(db("commit insert"))?;
    Ok(ids)
}
