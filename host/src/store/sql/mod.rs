//! What the MySQL/MariaDB and PostgreSQL stores share, written once over the backend.
//!
//! [`SqlStore`] implements [`Store`] for any backend that implements [`Dialect`]: the consume
//! transaction (`apply.rs`), the outbox-table templates (`migrate.rs`) and the plain reads are
//! the same SQL on both servers, and `QueryBuilder` renders `?` or `$n` placeholders by itself.
//! What really differs stays in each backend's folder, behind [`Dialect`]: connecting, the
//! state-table upsert, reading the ids of inserted rows (`RETURNING` or `LAST_INSERT_ID()`),
//! the `SKIP LOCKED` claim and requeue, and reading the catalog. SQLite, whose transactions
//! and failure path differ, shares only the outbox INSERT ([`insert_statements`]) and the
//! reading of claimed rows ([`claimed_rows`]).
//!
//! Generic rather than a macro: the code reads as ordinary Rust, and the sqlx bounds it needs
//! are written once per `impl` block ([`SqlStore`]'s `where` clauses), not per function.

mod apply;
mod migrate;

use super::{
    AppliedBatch, ApplyReport, Backoff, Hosting, NewRow, OutboxRow, RowState, Store, StoreResult,
    TableStatus, Timestamp, db,
};
use crate::catalog::Service;
use async_trait::async_trait;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool,
    QueryBuilder, Row, Type,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The differences between the servers a [`SqlStore`] runs on. Each statement here binds
/// with the backend's own placeholders.
pub trait Dialect: Database {
    /// Appended to `INSERT INTO switchyard_state (service, state_key, value, updated_at)
    /// VALUES ...`: overwrite the value of a key that exists.
    const UPSERT_STATE: &'static str;
    /// Outbox-table templates, in order; `{table}` is replaced by the validated table name.
    /// Append only: an applied version is never edited.
    const OUTBOX_TEMPLATES: &'static [(i64, &'static str)];
    /// `COUNT(*)` of the columns named `$2` of table `$1`.
    const HAS_COLUMN: &'static str;
    /// `(index name, column name)` of every index of table `$1`, columns in key order.
    const INDEX_COLUMNS: &'static str;
    /// Records `(table_name, version, applied_at)` in `switchyard_outbox_migrations`, doing
    /// nothing if it is already there.
    const RECORD_MIGRATION: &'static str;

    /// Creates or upgrades the host's own tables (`sqlx::migrate!`).
    fn migrate_host_tables(pool: &Pool<Self>) -> impl Future<Output = StoreResult<()>> + Send;

    /// [`Store::insert`] on a connection the caller controls (its own transaction).
    fn insert_rows(
        conn: &mut Self::Connection,
        rows: &[NewRow],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;

    /// [`Store::claim_due`].
    fn claim_due(
        pool: &Pool<Self>,
        table: &str,
        now: Timestamp,
        limit: u32,
        hold_keys: bool,
    ) -> impl Future<Output = StoreResult<Vec<OutboxRow>>> + Send;

    /// [`Store::requeue_stale`].
    fn requeue_stale(
        pool: &Pool<Self>,
        table: &str,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// The multi-row INSERTs that write `rows` as new `pending` outbox rows: one per table and
/// chunk of at most `per_statement` rows, in table order and then row order, each with its
/// number of rows. The caller appends whatever its server needs to report the new ids.
pub(crate) fn insert_statements<D: Database>(
    rows: &[NewRow],
    now: Timestamp,
    per_statement: usize,
) -> Vec<(usize, QueryBuilder<D>)>
where
    i32: Type<D> + for<'q> Encode<'q, D>,
    String: Type<D> + for<'q> Encode<'q, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D>,
{
    let mut by_table: BTreeMap<&str, Vec<&NewRow>> = BTreeMap::new();
    for row in rows {
        by_table.entry(row.table.as_str()).or_default().push(row);
    }
    let mut statements = Vec::new();
    for (table, rows) in by_table {
        for chunk in rows.chunks(per_statement) {
            let mut q = QueryBuilder::<D>::new(format!(
                "INSERT INTO {table} (biz_type, service_name, topic, message_key, payload, status, \
                 retry_count, max_retry, next_retry_at, created_at, updated_at) "
            ));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.biz_type.clone())
                    .push_bind(r.service_name.clone())
                    .push_bind(r.topic.clone())
                    .push_bind(r.message_key.clone())
                    .push_bind(r.payload.clone())
                    .push_bind("pending".to_owned())
                    .push_bind(0i32)
                    .push_bind(r.max_retry)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            statements.push((chunk.len(), q));
        }
    }
    statements
}

/// Rows a claim returned (`id, biz_type, service_name, message_key, payload, retry_count`),
/// in id order.
pub(crate) fn claimed_rows<R: Row>(rows: Vec<R>) -> Vec<OutboxRow>
where
    usize: ColumnIndex<R>,
    i32: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    String: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    let mut rows: Vec<OutboxRow> = rows
        .into_iter()
        .map(|r| OutboxRow {
            id: r.get(0),
            biz_type: r.get(1),
            service_name: r.get(2),
            message_key: r.get(3),
            payload: r.get(4),
            retry_count: r.get(5),
        })
        .collect();
    rows.sort_by_key(|r| r.id);
    rows
}

/// A store on a server that any number of hosts share (see `mysql` and `postgres`).
pub struct SqlStore<D: Database> {
    pool: Pool<D>,
}

impl<D: Database> SqlStore<D> {
    pub(super) fn new(pool: Pool<D>) -> SqlStore<D> {
        SqlStore { pool }
    }

    /// The pool, for callers that enqueue inside their own transactions.
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    async fn begin(&self, op: &'static str) -> StoreResult<sqlx::Transaction<'static, D>> {
        self.pool.begin().await.map_err(db(op))
    }
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D>
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
    async fn migrate(&self, services: &[Arc<Service>]) -> StoreResult<()> {
        D::migrate_host_tables(&self.pool).await?;
        self.migrate_outbox_tables(services).await
    }

    async fn acquire_host(&self) -> StoreResult<Hosting> {
        Ok(Hosting::Shared)
    }

    async fn insert(&self, rows: &[NewRow], now: Timestamp) -> StoreResult<Vec<i64>> {
        let mut tx = self.begin("begin insert").await?;
        let ids = D::insert_rows(&mut tx, rows, now).await?;
        tx.commit().await.map_err(db("commit insert"))?;
        Ok(ids)
    }

    async fn claim_due(
        &self,
        table: &str,
        now: Timestamp,
        limit: u32,
        hold_keys: bool,
    ) -> StoreResult<Vec<OutboxRow>> {
        D::claim_due(&self.pool, table, now, limit, hold_keys).await
    }

    async fn fail_attempts(
        &self,
        table: &str,
        failures: &[(i64, String)],
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<()> {
        if failures.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin("begin fail attempts").await?;
        Self::fail_many(&mut tx, table, failures, policy, now).await?;
        tx.commit().await.map_err(db("commit fail attempts"))?;
        Ok(())
    }

    async fn requeue_stale(
        &self,
        table: &str,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u64> {
        D::requeue_stale(&self.pool, table, cutoff, now).await
    }

    async fn row_states(&self, table: &str, ids: &[i64]) -> StoreResult<BTreeMap<i64, RowState>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("acquire connection"))?;
        let rows = Self::read_row_states(&mut conn, table, ids, false).await?;
        Ok(rows.into_iter().map(|(id, r)| (id, r.state)).collect())
    }

    async fn next_due(&self, table: &str) -> StoreResult<Option<Timestamp>> {
        let sql = format!("SELECT MIN(next_retry_at) FROM {table} WHERE status = 'pending'");
        sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(db("next due"))
    }

    async fn state_get(&self, service: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut q = QueryBuilder::<D>::new("SELECT value FROM switchyard_state WHERE service = ");
        q.push_bind(service.to_owned())
            .push(" AND state_key = ")
            .push_bind(key.to_owned());
        q.build_query_scalar()
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read state"))
    }

    async fn apply(
        &self,
        table: &str,
        batch: &AppliedBatch,
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<ApplyReport> {
        let mut tx = self.begin("begin apply").await?;
        let report = Self::apply_batch(&mut tx, table, batch, policy, now).await?;
        tx.commit().await.map_err(db("commit apply"))?;
        Ok(report)
    }

    async fn table_status(&self, table: &str) -> StoreResult<TableStatus> {
        let sql = format!("SELECT status, COUNT(*) FROM {table} GROUP BY status");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db("count statuses"))?;
        let counts = rows
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect();
        let oldest = self.next_due(table).await?;
        Ok(TableStatus {
            counts,
            oldest_pending: oldest,
        })
    }
}
