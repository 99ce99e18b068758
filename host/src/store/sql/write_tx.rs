//! A write transaction of a [`SqlStore`](super::SqlStore), holding the store's writer turn on a
//! single-writer backend.
//!
//! SQLite has one write lock per file. Writers that find it taken wait in SQLite's busy
//! handler, which *sleeps* (1, 2, 5, … up to 100 ms per try) rather than queueing: under a
//! steady load of small commits (one enqueue per transaction beside the relay's claims and the
//! consumer's commits) a writer could sleep through many free moments, and latency grew to
//! seconds. So the host's own writers take turns first, in arrival order, on an async mutex
//! ([`Dialect::ONE_WRITER`](super::Dialect::ONE_WRITER)), and SQLite's lock is then free when
//! they ask for it; other processes (`switchyard publish`, a producer enqueueing in its own
//! transaction) still meet the busy handler, as before. The servers have row locks, so their
//! writers take no turn.

use sqlx::{Database, Transaction};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The writer turn of a single-writer store, and how many turns were taken: SQLite's
/// checkpointer (`sqlite/checkpoint.rs`) reads the count to know whether the file was written
/// since its last round.
#[derive(Default)]
pub(crate) struct WriterTurn {
    turn: Arc<Mutex<()>>,
    taken: AtomicU64,
}

impl WriterTurn {
    /// Waits for the turn, in arrival order.
    pub(crate) async fn take(&self) -> OwnedMutexGuard<()> {
        self.taken.fetch_add(1, Ordering::Relaxed);
        self.turn.clone().lock_owned().await
    }

    /// Turns taken (or asked for) since the store opened.
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }
}

/// An open write transaction and, on a single-writer backend, the writer turn it holds until
/// it commits or is dropped (rolled back).
pub(crate) struct WriteTx<D: Database> {
    tx: Transaction<'static, D>,
    /// Released after the transaction ends: field order drops `tx` (its rollback is queued on
    /// the connection) before the turn.
    _turn: Option<OwnedMutexGuard<()>>,
}

impl<D: Database> WriteTx<D> {
    pub(crate) fn new(tx: Transaction<'static, D>, turn: Option<OwnedMutexGuard<()>>) -> Self {
        WriteTx { tx, _turn: turn }
    }

    /// Commits, then gives up the turn.
    ///
    /// # Errors
    /// The database's.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl<D: Database> Deref for WriteTx<D> {
    type Target = D::Connection;

    fn deref(&self) -> &D::Connection {
        &self.tx
    }
}

impl<D: Database> DerefMut for WriteTx<D> {
    fn deref_mut(&mut self) -> &mut D::Connection {
        &mut self.tx
    }
}
