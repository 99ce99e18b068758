//! The one store: [`SqlStore`], generic over a [`Dialect`]; SQLite, MySQL/MariaDB and
//! PostgreSQL are its three dialects.
//!
//! Written once here: the consume transaction and the failed-attempt rule (`apply.rs`), the
//! additive outbox-table migration of the servers (`migrate.rs`), the outbox INSERT
//! (`insert.rs`), the `hold_key_order` condition (`hold_keys_sql`), the reading of claimed
//! rows (`claimed_rows`), the plain reads (`next_due`, `table_status`, `state_get`,
//! `row_states`) and an operator's dead-letter statements (`dead.rs`: list, show, requeue,
//! purge, only ever on `dead` rows). `QueryBuilder` renders `?` or `$n` placeholders by itself.
//!
//! What really differs stays in each backend's folder, behind the [`Dialect`] hooks:
//! - how a write transaction begins ([`Dialect::begin_write`]: SQLite takes its write lock
//!   up front with `BEGIN IMMEDIATE`, the servers a plain `BEGIN`);
//! - the row-lock suffix of the status re-read ([`Dialect::ROW_LOCK`]: `FOR UPDATE`, or
//!   nothing on SQLite, whose write lock already covers the whole file);
//! - the single-host lock ([`Dialect::acquire_host`]: SQLite's lock file; the servers are
//!   shared);
//! - the state-table upsert ([`Dialect::UPSERT_STATE`]) and how many rows or ids one
//!   statement may bind ([`Dialect::ROWS_PER_INSERT`], [`Dialect::IDS_PER_LIST`]);
//! - migrations ([`Dialect::migrate`]: SQLite's DDL is transactional, MySQL's is not);
//! - reading the ids of inserted rows (`RETURNING` or `LAST_INSERT_ID()`) and the claim
//!   (`SKIP LOCKED` and `UPDATE ... RETURNING` where the server has them); the requeues and
//!   relocations (`requeue.rs`) are written once, with [`Dialect::SKIP_LOCKED`].
//!
//! Generic rather than a macro: the code reads as ordinary Rust, and the sqlx bounds it needs
//! are written once per `impl` block ([`SqlStore`]'s `where` clauses), not per function.

mod apply;
mod consume;
pub(crate) mod dead;
mod group_insert;
pub mod handler_sql;
mod insert;
pub(crate) mod migrate;
mod requeue;
mod retention;
mod write_tx;

pub(crate) use insert::{in_input_order, insert_returning, insert_statements};
pub(crate) use write_tx::{WriteTx, WriterTurn};

use super::dead::{DeadAction, DeadChange, DeadFilter, DeadPage, DeadSelection, WholeRow};
use super::{
    ApplyReport, Backlog, Backoff, BatchOutcomes, Claim, Hosting, NewRow, OutboxRow, Relocation,
    RowState, Store, StoreResult, TableStatus, Timestamp, db,
};
use crate::handler_sql::{RowAllowance, SqlFailure, SqlOutput, SqlStatement};
use async_trait::async_trait;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool,
    QueryBuilder, Row, Transaction, Type,
};
use std::collections::BTreeMap;

/// Appends `(v1, v2, ...)` binding each value: the list of an `IN` clause (ids, keys). The
/// caller keeps each list under [`Dialect::IDS_PER_LIST`].
pub(crate) fn push_list<D, T>(q: &mut QueryBuilder<D>, values: impl IntoIterator<Item = T>)
where
    D: Database,
    T: for<'q> Encode<'q, D> + Type<D>,
{
    q.push("(");
    let mut sep = q.separated(", ");
    for v in values {
        sep.push_bind(v);
    }
    q.push(")");
}

/// What differs between the backends a [`SqlStore`] runs on. Each statement here binds with
/// the backend's own placeholders.
pub trait Dialect: Database {
    /// What [`Dialect::acquire_host`] keeps for the life of the store: SQLite's held lock
    /// file; nothing on a server that many hosts share.
    type HostLock: Send + Sync + 'static;

    /// Appended to the status re-read of a write transaction (`SELECT ... ORDER BY id`) to lock
    /// the rows until commit, so a concurrent host cannot make them final in between. Servers:
    /// `" FOR UPDATE"`; SQLite: empty, its `BEGIN IMMEDIATE` already holds the file's one
    /// write lock (and it has no row locks).
    const ROW_LOCK: &'static str;

    /// Appended to a read of rows a write transaction will change but must not wait for:
    /// servers `" FOR UPDATE SKIP LOCKED"` (a row locked by a consume or claim in progress is
    /// left to it); SQLite: empty (one writer).
    const SKIP_LOCKED: &'static str;

    /// Which database this is.
    const BACKEND: crate::handler_sql::Backend;

    /// "`last_error` contains the bound text", case-sensitive, split around its one
    /// placeholder (`dead --reason`): SQLite `instr`, PostgreSQL `strpos`, MySQL `INSTR` on
    /// binary strings (its default collations would ignore case).
    const LAST_ERROR_CONTAINS: [&'static str; 2];

    /// How the server is told to give up on a handler's statement that runs past the
    /// invocation's deadline (the host has stopped waiting for it by then, but the server would
    /// run it to its end, holding the transaction's locks): set before a transaction's first
    /// handler statement, reset before it commits. `None` where the backend cannot (SQLite).
    const STATEMENT_LIMIT: Option<handler_sql::StatementLimit>;

    /// Appended to `INSERT INTO switchyard_state (service, state_key, value, updated_at)
    /// VALUES ...`: overwrite the value of a key that exists.
    const UPSERT_STATE: &'static str;

    /// How a consume transaction locks a state key that has no value yet (no row for
    /// [`Dialect::ROW_LOCK`] to lock): appended to `INSERT INTO switchyard_state_locks
    /// (service, state_key) VALUES (..)`, an upsert that takes the key's lock row whether or
    /// not it existed. `None` on a single-writer backend, whose write lock covers every key.
    const LOCK_STATE_KEY: Option<&'static str>;

    /// Rows per multi-row INSERT (outbox rows bind 11 parameters each, state rows 4), so a
    /// statement stays under the backend's bind limit: SQLite 32766, the servers 65535.
    const ROWS_PER_INSERT: usize;

    /// Ids (or keys) per `IN (...)` list, for the same limit.
    const IDS_PER_LIST: usize;

    /// Whether a `DELETE ... WHERE id IN (...)` needs `ORDER BY id LIMIT n` to be run through
    /// the primary key: MySQL/MariaDB may otherwise scan a small table whole (or a covering
    /// secondary index), locking every row and gap, so a new row's INSERT waits for the
    /// delete's transaction (retention, `retention.rs`). Only MySQL accepts the clause.
    const ORDERED_DELETE: bool = false;

    /// Whether the backend has one write lock for the whole database (SQLite): the host's own
    /// writers then take turns on an async mutex before asking for it ([`WriteTx`] says why).
    const ONE_WRITER: bool = false;

    /// Begins a write transaction on a pooled connection. It must make the status re-read and
    /// the writes of one transaction see one snapshot: SQLite takes its write lock at the start
    /// (`BEGIN IMMEDIATE`; a deferred `BEGIN` would read, then fail to upgrade to a writer with
    /// `SQLITE_BUSY` mid-transaction); the servers begin plainly and lock rows with
    /// [`Dialect::ROW_LOCK`].
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;

    /// [`Store::acquire_host`]: a single-host backend takes (and keeps in `lock`) its host lock,
    /// refusing a second host; a shared server returns [`Hosting::Shared`].
    fn acquire_host(lock: &Self::HostLock) -> StoreResult<Hosting>;

    /// [`Store::migrate`]: the host tables (`sqlx::migrate!`) and the outbox templates. Per
    /// backend because DDL differs in kind, not only in text: SQLite applies each table's
    /// templates in one transaction, MySQL commits DDL implicitly (so the servers guard every
    /// additive step with a catalog check instead, see `migrate::outbox_tables`).
    fn migrate(
        pool: &Pool<Self>,
        tables: &[String],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// [`Store::insert`] on a connection the caller controls (its own transaction). Per
    /// backend because MySQL has no `RETURNING`.
    fn insert_rows(
        conn: &mut Self::Connection,
        rows: &[NewRow],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;

    /// [`Store::claim_due`]; use `hold_keys_sql` for the `hold_key_order` condition and
    /// `types_sql` for the event types. Per backend because of `SKIP LOCKED` and `UPDATE ...
    /// RETURNING` support.
    fn claim_due(
        pool: &Pool<Self>,
        table: &str,
        claim: &Claim<'_>,
    ) -> impl Future<Output = StoreResult<Vec<OutboxRow>>> + Send;

    /// Runs a handler's checked statement on the consume transaction's connection
    /// ([`crate::store::ConsumeTx::run_sql`]). Per backend because values bind and read back
    /// differently (`handler_sql.rs` in each backend's folder).
    fn run_handler_sql(
        conn: &mut Self::Connection,
        statement: SqlStatement<'_>,
        allowance: RowAllowance,
        columns: &handler_sql::ColumnKinds,
    ) -> impl Future<Output = Result<SqlOutput, SqlFailure>> + Send;
}

/// The `hold_key_order` condition of a claim, appended to its `WHERE` on candidate rows `c`:
/// a row whose `message_key` has an earlier row waiting for a retry (`pending`, not yet due at
/// `now`) is held back. `now` is the placeholder text the claim binds the time to (`?`, `$1`,
/// `?1`). Rows without a key are never held.
pub(crate) fn hold_keys_sql(table: &str, now: &str) -> String {
    format!(
        " AND NOT (c.message_key <> '' AND EXISTS (SELECT 1 FROM {table} e \
         WHERE e.message_key = c.message_key AND e.id < c.id \
         AND e.status = 'pending' AND e.next_retry_at > {now}))"
    )
}

/// The event-type condition of a claim, appended to its `WHERE` on candidate rows `c`. The
/// types are validated event types ([`crate::config::NameKind::EventType`]: no quote or
/// backslash can appear), listed as literals so the claim's binds stay the same on every
/// backend; a type that somehow holds one is left out rather than spliced. No types: the
/// claim takes nothing.
pub(crate) fn types_sql(types: &[String]) -> String {
    let safe: Vec<String> = types
        .iter()
        .filter(|t| !t.is_empty() && !t.contains(['\'', '\\']))
        .map(|t| format!("'{t}'"))
        .collect();
    if safe.is_empty() {
        " AND 1 = 0".to_owned()
    } else {
        format!(" AND c.biz_type IN ({})", safe.join(", "))
    }
}

/// Rows a claim returned (`id, biz_type, service_name, message_key, payload, retry_count,
/// traceparent`),
/// in id order. A column that cannot be decoded (a payload that is not UTF-8, written by
/// another program) never panics: the row comes back with `unreadable` set, and the relay
/// records a failed attempt with that reason instead of publishing it. A row whose very id
/// cannot be read is logged and left to the visibility timeout.
pub(crate) fn claimed_rows<R: Row>(rows: Vec<R>) -> Vec<OutboxRow>
where
    usize: ColumnIndex<R>,
    i32: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    String: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    let mut rows: Vec<OutboxRow> = rows
        .into_iter()
        .filter_map(|r| {
            let id: i64 = match r.try_get(0) {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!(error = %e, "a claimed row has no readable id; skipped");
                    return None;
                }
            };
            let mut unreadable = None;
            let mut text = |index: usize, column: &str| -> String {
                r.try_get(index).unwrap_or_else(|e| {
                    unreadable.get_or_insert(format!(
                        "row {id}: column {column} cannot be read ({e}); fix or delete the row"
                    ));
                    String::new()
                })
            };
            let (biz_type, service_name) = (text(1, "biz_type"), text(2, "service_name"));
            let (message_key, payload) = (text(3, "message_key"), text(4, "payload"));
            let retry_count = r.try_get(5).unwrap_or_else(|e| {
                unreadable
                    .get_or_insert(format!("row {id}: column retry_count cannot be read ({e})"));
                0
            });
            // A context that cannot be read only loses the trace, never the row.
            let traceparent = r.try_get::<Option<String>, _>(6).ok().flatten();
            Some(OutboxRow {
                id,
                biz_type,
                service_name,
                message_key,
                payload,
                retry_count,
                traceparent,
                unreadable,
            })
        })
        .collect();
    rows.sort_by_key(|r| r.id);
    rows
}

/// The store, on any [`Dialect`]: `SqliteStore`, `MySqlStore` and `PgStore` are aliases of it.
pub struct SqlStore<D: Dialect> {
    pool: Pool<D>,
    /// Kept by [`Dialect::acquire_host`] until the store is dropped.
    host_lock: D::HostLock,
    /// What the `sql` import learned of the database's columns.
    columns: std::sync::Arc<handler_sql::ColumnKinds>,
    /// The writer turn of a [`Dialect::ONE_WRITER`] backend, taken in arrival order.
    writer: std::sync::Arc<WriterTurn>,
    /// Enqueues waiting for the writer turn, committed together (`group_insert.rs`).
    inserts: std::sync::Arc<group_insert::InsertQueue>,
    /// On a server, the turn of the enqueue groups (one group commits at a time).
    insert_turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The statement limit as a prefix of each statement, where this server takes it so
    /// ([`handler_sql::StatementLimit::per_statement`]).
    limit_per_statement: Option<fn(u64) -> String>,
}

impl<D: Dialect> SqlStore<D> {
    pub(super) fn new(pool: Pool<D>, host_lock: D::HostLock) -> SqlStore<D> {
        SqlStore {
            pool,
            host_lock,
            columns: Default::default(),
            writer: Default::default(),
            inserts: Default::default(),
            insert_turn: Default::default(),
            limit_per_statement: None,
        }
    }

    /// Limits each statement of a consume transaction alone where the server can
    /// ([`handler_sql::StatementLimit::per_statement`]), instead of setting the session's.
    pub(super) fn limiting_per_statement(mut self, yes: bool) -> Self {
        self.limit_per_statement = D::STATEMENT_LIMIT
            .and_then(|l| l.per_statement)
            .filter(|_| yes);
        self
    }

    /// The pool, for callers that enqueue inside their own transactions.
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// The writer turn, for a task that must not keep the store alive (SQLite's checkpointer
    /// ends once it cannot upgrade this).
    pub(super) fn writer_turn_weak(&self) -> std::sync::Weak<WriterTurn> {
        std::sync::Arc::downgrade(&self.writer)
    }

    /// A write transaction, begun the dialect's way ([`Dialect::begin_write`]) once it is this
    /// writer's turn ([`Dialect::ONE_WRITER`]).
    async fn begin_write(&self, op: &'static str) -> StoreResult<WriteTx<D>> {
        let turn = self.writer_turn().await;
        let tx = D::begin_write(&self.pool).await.map_err(db(op))?;
        Ok(WriteTx::new(tx, turn))
    }

    /// Waits for this writer's turn on a single-writer backend; `None` on a server.
    async fn writer_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if D::ONE_WRITER {
            Some(self.writer.take().await)
        } else {
            None
        }
    }
}

/// A grouped insert's answer; a dropped sender means the group's task ended without one (a
/// panic), and nothing says whether its transaction committed.
fn group_answer(
    answer: Result<StoreResult<Vec<i64>>, tokio::sync::oneshot::error::RecvError>,
) -> StoreResult<Vec<i64>> {
    answer.unwrap_or(Err(super::StoreError::GroupLost))
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
    async fn migrate(&self, tables: &[String]) -> StoreResult<()> {
        D::migrate(&self.pool, tables).await
    }

    async fn acquire_host(&self) -> StoreResult<Hosting> {
        D::acquire_host(&self.host_lock)
    }

    async fn insert(&self, rows: &[NewRow], now: Timestamp) -> StoreResult<Vec<i64>> {
        // Enqueues that arrive together commit together (`group_insert.rs`): on SQLite they
        // take the writer turn, on a server the turn of the inserts alone.
        let gate = async {
            match self.writer_turn().await {
                Some(turn) => turn,
                None => self.insert_turn.clone().lock_owned().await,
            }
        };
        let mut answer = self.inserts.push(rows, now);
        let turn = tokio::select! {
            // A group led by an earlier caller carried these rows.
            done = &mut answer => return group_answer(done),
            turn = gate => turn,
        };
        let group = self.inserts.take();
        if !group.is_empty() {
            tokio::spawn(group_insert::commit_group(self.pool.clone(), turn, group));
        }
        group_answer(answer.await)
    }

    async fn claim_due(&self, table: &str, claim: &Claim<'_>) -> StoreResult<Vec<OutboxRow>> {
        // SQLite's claim is one UPDATE on the pool: a write, so it takes its turn too.
        let _turn = self.writer_turn().await;
        D::claim_due(&self.pool, table, claim).await
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
        let mut tx = self.begin_write("begin fail attempts").await?;
        Self::fail_many(&mut tx, table, failures, policy, now).await?;
        tx.commit().await.map_err(db("commit fail attempts"))?;
        Ok(())
    }

    async fn requeue_stale(
        &self,
        table: &str,
        cutoff: Timestamp,
        now: Timestamp,
        policy: &Backoff,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write("begin requeue").await?;
        let n = Self::requeue_stale_in(&mut tx, table, cutoff, now, policy).await?;
        tx.commit().await.map_err(db("commit requeue"))?;
        Ok(n)
    }

    async fn requeue_published(
        &self,
        table: &str,
        now: Timestamp,
        reason: &str,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write("begin requeue published").await?;
        let n = Self::requeue_published_in(&mut tx, table, now, reason).await?;
        tx.commit().await.map_err(db("commit requeue published"))?;
        Ok(n)
    }

    async fn relocate(
        &self,
        table: &str,
        moves: &[Relocation],
        now: Timestamp,
    ) -> StoreResult<Vec<(i64, i64)>> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write("begin relocate").await?;
        let moved = Self::relocate_in(&mut tx, table, moves, now).await?;
        tx.commit().await.map_err(db("commit relocate"))?;
        Ok(moved)
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

    async fn next_due(&self, table: &str, types: &[String]) -> StoreResult<Option<Timestamp>> {
        // The claim's own type condition, on the same alias: a row no claim will take must
        // not wake the relay (its due time is past, so it would wake it at once, forever).
        let types = types_sql(types);
        let sql =
            format!("SELECT MIN(c.next_retry_at) FROM {table} c WHERE c.status = 'pending'{types}");
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

    fn backend(&self) -> crate::handler_sql::Backend {
        D::BACKEND
    }

    async fn begin_consume(&self) -> StoreResult<Box<dyn crate::store::ConsumeTx>> {
        let tx = self.begin_write("begin consume").await?;
        Ok(Box::new(consume::SqlConsumeTx {
            tx,
            limit_ms: None,
            prefix: None,
            limit_per_statement: self.limit_per_statement,
            columns: self.columns.clone(),
        }))
    }

    async fn apply(
        &self,
        table: &str,
        batch: &BatchOutcomes,
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<ApplyReport> {
        let mut tx = self.begin_write("begin apply").await?;
        let report = Self::apply_batch(&mut tx, table, batch, policy, now).await?;
        tx.commit().await.map_err(db("commit apply"))?;
        Ok(report)
    }

    async fn dead_rows(
        &self,
        table: &str,
        filter: &DeadFilter,
        limit: Option<u64>,
    ) -> StoreResult<DeadPage> {
        self.read_dead_rows(table, filter, limit).await
    }

    async fn whole_row(&self, table: &str, id: i64) -> StoreResult<Option<WholeRow>> {
        self.read_whole_row(table, id).await
    }

    async fn requeue_dead(
        &self,
        table: &str,
        selection: &DeadSelection,
        action: &DeadAction,
    ) -> StoreResult<DeadChange> {
        self.act_on_dead(table, selection, action, dead::DeadOp::Requeue)
            .await
    }

    async fn purge_dead(
        &self,
        table: &str,
        selection: &DeadSelection,
        action: &DeadAction,
    ) -> StoreResult<DeadChange> {
        self.act_on_dead(table, selection, action, dead::DeadOp::Purge)
            .await
    }

    async fn delete_consumed(
        &self,
        table: &str,
        cutoff: Timestamp,
        limit: u32,
        archive: bool,
    ) -> StoreResult<u64> {
        self.retention_round(table, cutoff, limit, archive).await
    }

    async fn archive_ready(&self, table: &str) -> StoreResult<()> {
        self.check_archive(table).await
    }

    async fn migrate_archives(&self, tables: &[String]) -> StoreResult<()> {
        self.create_archives(tables).await
    }

    async fn table_status(&self, table: &str, own_types: &[String]) -> StoreResult<TableStatus> {
        let sql = format!("SELECT status, COUNT(*) FROM {table} GROUP BY status");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db("count statuses"))?;
        let counts = rows
            .into_iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("decode status counts"))?;
        let oldest: Option<Timestamp> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT MIN(next_retry_at) FROM {table} WHERE status = 'pending'"
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(db("oldest pending"))?;
        let own = types_sql(own_types).replace("c.biz_type", "biz_type");
        let sql = format!(
            "SELECT COUNT(*) FROM {table} WHERE status IN ('pending', 'published') \
             AND NOT (1 = 1{own})"
        );
        let foreign = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(db("count rows of other services' types"))?;
        Ok(TableStatus {
            counts,
            oldest_pending: oldest,
            foreign,
        })
    }

    async fn backlog(&self, table: &str) -> StoreResult<Backlog> {
        // Three range reads on the (status, next_retry_at) index; `consumed` is never counted.
        let sql = format!(
            "SELECT status, COUNT(*) FROM {table} \
             WHERE status IN ('pending', 'published', 'dead') GROUP BY status"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db("count backlog"))?;
        let mut backlog = Backlog::default();
        for r in rows {
            let (status, n) = (|| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))()
                .map_err(db("decode backlog counts"))?;
            match status.as_str() {
                "pending" => backlog.pending = n,
                "published" => backlog.published = n,
                "dead" => backlog.dead = n,
                _ => {}
            }
        }
        backlog.oldest_pending = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT MIN(next_retry_at) FROM {table} WHERE status = 'pending'"
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(db("oldest pending"))?;
        Ok(backlog)
    }
}
