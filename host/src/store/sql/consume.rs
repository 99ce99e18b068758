//! The consume transaction of a [`SqlStore`](super::SqlStore) opened before a batch's handlers
//! run: a state read locks the key's row (`FOR UPDATE`), or, for a key without a value yet,
//! its row in `switchyard_state_locks` (an upsert) before reading again; the batch's outcomes
//! are applied and committed in the same transaction.

use super::handler_sql::{INVOCATION_SAVEPOINT, classify, plain};
use super::{Dialect, SqlStore};
use crate::handler_sql::{RowAllowance, SqlFailure, SqlOutput, SqlStatement};
use crate::store::{
    ApplyReport, Backoff, BatchOutcomes, ConsumeTx, Savepoint, StoreResult, Timestamp, db,
};
use async_trait::async_trait;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type,
};

pub(super) struct SqlConsumeTx<D: Dialect> {
    pub(super) tx: super::WriteTx<D>,
    /// The statement limit set in this transaction, milliseconds (see
    /// [`ConsumeTx::limit_statements`]).
    pub(super) limit_ms: Option<u64>,
    /// Where the limit is taken per statement: the prefix each limited statement gets (a
    /// state read, a state key's lock, a handler's statement), formatted once when the limit
    /// is set rather than for every statement.
    pub(super) prefix: Option<String>,
    /// The limit as a prefix, where the server takes it per statement
    /// (`StatementLimit::per_statement`).
    pub(super) limit_per_statement: Option<fn(u64) -> String>,
    pub(super) columns: std::sync::Arc<super::handler_sql::ColumnKinds>,
}

impl<D: Dialect> SqlConsumeTx<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    String: Type<D> + for<'q> Encode<'q, D>,
    Vec<u8>: Type<D> + for<'r> Decode<'r, D>,
{
    /// `sql` under the transaction's statement limit, where it is taken per statement.
    fn limited(&self, sql: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}{sql}"),
            None => sql.to_owned(),
        }
    }

    /// The key's value, its row locked until the transaction ends.
    async fn read_locked(&mut self, service: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut q = QueryBuilder::<D>::new(
            self.limited("SELECT value FROM switchyard_state WHERE service = "),
        );
        q.push_bind(service.to_owned())
            .push(" AND state_key = ")
            .push_bind(key.to_owned())
            .push(D::ROW_LOCK);
        q.build_query_scalar()
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db("read state"))
    }
}

#[async_trait]
impl<D: Dialect> ConsumeTx for SqlConsumeTx<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    i32: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    i64: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    String: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    Vec<u8>: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
{
    async fn state_get_locked(&mut self, service: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        // A key with a value: its row lock is enough (one statement, the common case).
        if let Some(value) = self.read_locked(service, key).await? {
            return Ok(Some(value));
        }
        let Some(lock_key) = D::LOCK_STATE_KEY else {
            // A single-writer backend: the transaction's write lock covers every key.
            return Ok(None);
        };
        // No value yet, so no row to lock: take the key's lock row instead, then read again
        // (a host that wrote the key meanwhile has committed by the time the lock is ours).
        let mut lock = QueryBuilder::<D>::new(
            self.limited("INSERT INTO switchyard_state_locks (service, state_key) "),
        );
        lock.push_values([(service, key)], |mut b, (s, k)| {
            b.push_bind(s.to_owned()).push_bind(k.to_owned());
        });
        lock.push(lock_key);
        lock.build()
            .execute(&mut *self.tx)
            .await
            .map_err(db("lock state key"))?;
        self.read_locked(service, key).await
    }

    async fn apply(
        &mut self,
        table: &str,
        batch: &BatchOutcomes,
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<ApplyReport> {
        SqlStore::<D>::apply_batch(&mut self.tx, table, batch, policy, now).await
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        // Set for the session only where the server takes no per-statement limit.
        let session_limit = self.limit_ms.is_some() && self.limit_per_statement.is_none();
        if let (true, Some(reset)) = (
            session_limit,
            D::STATEMENT_LIMIT.as_ref().and_then(|l| l.reset),
        ) {
            // A session setting (MySQL) outlives the transaction: put the default back.
            (&mut *self.tx)
                .execute(reset)
                .await
                .map_err(db("reset the statement limit"))?;
        }
        self.tx.commit().await.map_err(db("commit consume"))
    }

    async fn savepoint(&mut self, step: Savepoint) -> Result<(), SqlFailure> {
        let sql = &INVOCATION_SAVEPOINT;
        let text = match step {
            Savepoint::Take => sql.take,
            Savepoint::Release => sql.release,
            Savepoint::RollBack => sql.roll_back_and_release,
        };
        plain::<D>(&mut self.tx, text).await
    }

    async fn limit_statements(&mut self, ms: u64) -> Result<(), SqlFailure> {
        let Some(limit) = &D::STATEMENT_LIMIT else {
            return Ok(());
        };
        if self.limit_ms == Some(ms) {
            return Ok(());
        }
        if let Some(per_statement) = self.limit_per_statement {
            // Nothing to send: each limited statement carries it.
            self.prefix = Some(per_statement(ms));
            self.limit_ms = Some(ms);
            return Ok(());
        }
        (&mut *self.tx)
            .execute(AssertSqlSafe((limit.set)(ms)))
            .await
            .map_err(classify)?;
        self.limit_ms = Some(ms);
        Ok(())
    }

    async fn run_sql(
        &mut self,
        statement: SqlStatement<'_>,
        allowance: RowAllowance,
    ) -> Result<SqlOutput, SqlFailure> {
        let limited;
        let statement = match self.prefix {
            Some(_) => {
                limited = self.limited(statement.sql);
                SqlStatement {
                    sql: &limited,
                    ..statement
                }
            }
            None => statement,
        };
        D::run_handler_sql(&mut self.tx, statement, allowance, &self.columns).await
    }
}
