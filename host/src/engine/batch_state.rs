//! What a batch's handlers reach of the database: their batch's earlier acked state writes (the
//! overlay), committed state read under the key's lock, and `sql` statements — all inside the
//! batch's consume transaction. The transaction is opened at the batch's first state read or
//! statement (a batch whose handlers use neither keeps the plain commit path) and commits with
//! the batch's outcomes, so no other host can change a key or a row between a handler reading
//! it and this batch writing it.
//!
//! Invocations of one batch run one at a time. A batch first runs optimistically: statements
//! run without a savepoint (the usual invocation is acknowledged, and a savepoint costs a round
//! trip per event). If an invocation that wrote through `sql` is not acknowledged (or a
//! statement fails so its writes cannot be kept), nothing of the batch may commit: the
//! transaction is broken and the batch runs again *carefully*, each invocation's statements
//! after a savepoint taken at its first one, released when it is acknowledged and rolled back
//! otherwise ([`BatchState::end_invocation`]). Once careful, a batch stays careful in its later
//! runs, so a handler that fails often costs one rerun per batch, not one per failure.

use crate::handler_sql::{Backend, RowAllowance, SqlFailure, SqlOutput, SqlStatement};
use crate::runtime::{BatchAccess, StateWrite};
use crate::store::{ConsumeTx, Savepoint, Store};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The batch's consume transaction.
pub(super) enum Tx {
    /// No committed state read and no statement yet.
    Closed,
    /// Open; `busy` while a read or statement is running on it (one cancelled midway, by a
    /// deadline, leaves the connection in an unknown state: the transaction is then broken).
    Open { tx: Box<dyn ConsumeTx>, busy: bool },
    /// A read or statement failed (a deadlock between hosts, a lost connection) or was cut off
    /// by its invocation's deadline: nothing of the batch may commit; it is handled again from
    /// the start, without `culprit` (the outbox id of the invocation that was cut off, whose
    /// failed attempt is recorded instead).
    Broken {
        reason: String,
        culprit: Option<i64>,
        /// The invocation whose read or statement failed, when the failure looked transient
        /// (a deadlock, a lost connection): not blamed at once, but the consumer blames it if it
        /// breaks the same batch again and again (a statement that always fails that way).
        suspect: Option<i64>,
        /// The batch ran optimistically and an invocation's writes must be undone: run it
        /// again with a savepoint per invocation (an expected path, not a database failure).
        careful: bool,
    },
}

/// The transaction and what the running invocation did with it.
struct Slot {
    tx: Tx,
    /// The outbox id of the invocation running now.
    invocation: Option<i64>,
    /// Whether the running invocation has taken its savepoint.
    savepoint: bool,
    /// The running invocation's deadline, milliseconds: its statements' server-side limit.
    deadline_ms: u64,
    /// Whether any `sql` statement ran in the transaction.
    ran_sql: bool,
    /// Savepoints per invocation (a careful rerun); else the optimistic first run.
    careful: bool,
    /// The running invocation wrote through `sql` (optimistic run: nothing to roll back to).
    wrote: bool,
}

/// What the commit takes from a batch's state.
pub(super) struct Taken {
    pub tx: Tx,
    /// Whether handlers' `sql` statements ran in `tx`: its rows cannot be committed apart from
    /// it (their statements would be lost).
    pub ran_sql: bool,
}

pub(super) struct BatchState {
    store: Arc<dyn Store>,
    overlay: Mutex<HashMap<String, Option<Vec<u8>>>>,
    slot: tokio::sync::Mutex<Slot>,
}

impl BatchState {
    /// `careful`: take a savepoint per invocation (see the module's doc).
    pub(super) fn new(store: Arc<dyn Store>, careful: bool) -> BatchState {
        BatchState {
            store,
            overlay: Mutex::new(HashMap::new()),
            slot: tokio::sync::Mutex::new(Slot {
                tx: Tx::Closed,
                invocation: None,
                savepoint: false,
                deadline_ms: 0,
                ran_sql: false,
                careful,
                wrote: false,
            }),
        }
    }

    /// Makes an acked invocation's writes visible to the batch's later handlers.
    pub(super) fn remember(&self, writes: &[StateWrite]) {
        let mut overlay = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in writes {
            overlay.insert(k.clone(), v.clone());
        }
    }

    /// Called before the invocation of outbox row `id` runs, with its deadline.
    pub(super) async fn begin_invocation(&self, id: i64, deadline_ms: u64) {
        let mut slot = self.slot.lock().await;
        slot.invocation = Some(id);
        slot.savepoint = false;
        slot.wrote = false;
        slot.deadline_ms = deadline_ms;
    }

    /// Called after it: its `sql` statements stand (`keep`, an acknowledged invocation) or are
    /// undone.
    pub(super) async fn end_invocation(&self, keep: bool) {
        let mut slot = self.slot.lock().await;
        settle(&mut slot);
        slot.invocation = None;
        let wrote = std::mem::take(&mut slot.wrote);
        if !slot.careful && wrote && !keep && matches!(slot.tx, Tx::Open { .. }) {
            careful_rerun(
                &mut slot,
                "an invocation that wrote through sql was not acknowledged",
            );
            return;
        }
        if !std::mem::take(&mut slot.savepoint) {
            return;
        }
        let Tx::Open { tx, .. } = &mut slot.tx else {
            return;
        };
        let step = if keep {
            Savepoint::Release
        } else {
            Savepoint::RollBack
        };
        if let Err(e) = tx.savepoint(step).await {
            broken(
                &mut slot,
                format!("ending an invocation's savepoint failed: {e:?}"),
            );
        }
    }

    /// The transaction, for the commit; later reads open a new one.
    pub(super) async fn take_tx(&self) -> Taken {
        let mut slot = self.slot.lock().await;
        settle(&mut slot);
        Taken {
            tx: std::mem::replace(&mut slot.tx, Tx::Closed),
            ran_sql: std::mem::take(&mut slot.ran_sql),
        }
    }

    /// Opens the transaction on first use.
    ///
    /// # Errors
    /// Why it cannot be used: it failed earlier in the batch, or cannot begin.
    async fn open(&self, slot: &mut Slot) -> Result<(), String> {
        settle(slot);
        match slot.tx {
            Tx::Open { .. } => Ok(()),
            Tx::Closed => {
                let tx = self
                    .store
                    .begin_consume()
                    .await
                    .map_err(|e| e.to_string())?;
                slot.tx = Tx::Open { tx, busy: false };
                Ok(())
            }
            Tx::Broken { .. } => Err("the batch's transaction failed; it will run again".into()),
        }
    }
}

/// A read or statement cancelled midway (its invocation's deadline dropped it) left `busy`
/// set: the connection is in an unknown state, so the transaction counts as broken, and the
/// invocation that was cut off is its culprit.
fn settle(slot: &mut Slot) {
    if let Tx::Open { busy: true, .. } = slot.tx {
        slot.tx = Tx::Broken {
            reason: "a state read or sql statement was cut off by its invocation's deadline".into(),
            culprit: slot.invocation,
            suspect: None,
            careful: false,
        };
        slot.savepoint = false;
    }
}

fn set_busy(slot: &mut Slot, value: bool) {
    if let Tx::Open { busy, .. } = &mut slot.tx {
        *busy = value;
    }
}

fn broken(slot: &mut Slot, reason: String) {
    slot.tx = Tx::Broken {
        reason,
        culprit: None,
        suspect: slot.invocation,
        careful: false,
    };
    slot.savepoint = false;
}

/// The server stopped a read or statement at the limit set to the running invocation's
/// deadline: that invocation is the culprit, as when the host's own timer cuts it off
/// ([`settle`]).
fn cut_off(slot: &mut Slot, reason: String) {
    slot.tx = Tx::Broken {
        reason,
        culprit: slot.invocation,
        suspect: None,
        careful: false,
    };
    slot.savepoint = false;
}

/// The key's value under its lock. The server is told to give the read up at the invocation's
/// deadline, as it is for a `sql` statement: a read the host's timer abandons (a key another
/// transaction holds) must not wait on in the server, its connection taken, for the server's
/// own lock wait limit (50 s on InnoDB, none on PostgreSQL).
async fn read_locked(
    tx: &mut dyn ConsumeTx,
    deadline_ms: u64,
    service: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, SqlFailure> {
    if deadline_ms > 0 {
        tx.limit_statements(deadline_ms).await?;
    }
    tx.state_get_locked(service, key).await.map_err(|e| {
        if crate::store::stopped_by_the_statement_limit(&e) {
            SqlFailure::CutOff(e.to_string())
        } else {
            SqlFailure::Broken(e.to_string())
        }
    })
}

/// The optimistic run cannot undo an invocation's writes: the batch runs again carefully.
fn careful_rerun(slot: &mut Slot, reason: &str) {
    slot.tx = Tx::Broken {
        reason: format!("{reason}: the batch runs again with a savepoint per invocation"),
        culprit: None,
        suspect: None,
        careful: true,
    };
    slot.savepoint = false;
}

#[async_trait]
impl BatchAccess for BatchState {
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self
            .overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(v.clone());
        }
        let mut slot = self.slot.lock().await;
        self.open(&mut slot)
            .await
            .map_err(|e| format!("state read failed: {e}"))?;
        // `busy` across the await: a deadline that drops this future leaves it set.
        set_busy(&mut slot, true);
        let deadline_ms = slot.deadline_ms;
        let read = match &mut slot.tx {
            Tx::Open { tx, .. } => read_locked(tx.as_mut(), deadline_ms, service, key).await,
            _ => unreachable!("opened above"),
        };
        set_busy(&mut slot, false);
        match read {
            Ok(v) => Ok(v),
            Err(SqlFailure::CutOff(e)) => {
                let reason = format!("a state read was stopped at its deadline: {e}");
                cut_off(&mut slot, reason.clone());
                Err(reason)
            }
            Err(
                SqlFailure::Broken(e)
                | SqlFailure::Statement(e)
                | SqlFailure::Constraint(e)
                | SqlFailure::Budget(e),
            ) => {
                let reason = format!("state read failed: {e}");
                broken(&mut slot, reason.clone());
                Err(reason)
            }
        }
    }

    fn backend(&self) -> Option<Backend> {
        Some(self.store.backend())
    }

    async fn sql(
        &self,
        statement: SqlStatement<'_>,
        allowance: RowAllowance,
    ) -> Result<SqlOutput, SqlFailure> {
        let mut slot = self.slot.lock().await;
        self.open(&mut slot).await.map_err(SqlFailure::Broken)?;
        set_busy(&mut slot, true);
        let ran = run_statement(&mut slot, statement, allowance).await;
        set_busy(&mut slot, false);
        match &ran {
            Err(SqlFailure::Broken(reason)) => broken(&mut slot, reason.clone()),
            Err(SqlFailure::CutOff(reason)) => cut_off(
                &mut slot,
                format!("a sql statement was stopped at its deadline: {reason}"),
            ),
            Err(SqlFailure::Statement(_)) if !slot.careful => {
                // No savepoint to undo this invocation's statements (and on PostgreSQL the
                // failed statement aborted the transaction).
                careful_rerun(&mut slot, "a statement failed in an optimistic run");
            }
            Err(SqlFailure::Statement(_)) => {
                // Undo the invocation's statements now (it will be retried anyway): on
                // PostgreSQL the failed statement aborted the transaction until then.
                slot.savepoint = false;
                if let Tx::Open { tx, .. } = &mut slot.tx
                    && let Err(e) = tx.savepoint(Savepoint::RollBack).await
                {
                    broken(
                        &mut slot,
                        format!("undoing a failed statement failed: {e:?}"),
                    );
                }
            }
            _ => {}
        }
        ran
    }
}

/// Takes the invocation's savepoint if it has none yet, then runs the statement.
async fn run_statement(
    slot: &mut Slot,
    statement: SqlStatement<'_>,
    allowance: RowAllowance,
) -> Result<SqlOutput, SqlFailure> {
    let Tx::Open { tx, .. } = &mut slot.tx else {
        return Err(SqlFailure::Broken(
            "the batch's transaction failed; it will run again".into(),
        ));
    };
    tx.limit_statements(slot.deadline_ms).await?;
    let statement = SqlStatement {
        careful: slot.careful,
        ..statement
    };
    if slot.careful && !slot.savepoint {
        tx.savepoint(Savepoint::Take).await?;
        slot.savepoint = true;
    }
    slot.ran_sql = true;
    slot.wrote |= statement.writes;
    tx.run_sql(statement, allowance).await
}
