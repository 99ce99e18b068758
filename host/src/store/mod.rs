//! Persistence of outbox rows and handler state, behind one trait with a folder per backend.
//!
//! The store knows tables, rows and transactions; it knows nothing of WebAssembly, routes or
//! brokers. Every table name it is given comes from the [`catalog`](crate::catalog), which has
//! validated it, so splicing it into SQL is safe.
//!
//! There is one implementation of [`Store`]: [`sql::SqlStore`], generic over a
//! [`sql::Dialect`]. SQLite, MySQL/MariaDB and PostgreSQL are three dialects of it, each in
//! its own folder (`mod.rs`: connecting, the dialect hooks, the claim; `migrate.rs`: the
//! schema). The consume transaction, the failed-attempt rule and the plain reads are written
//! once, in `sql/`. The store contract suite (`tests/engine/store_contract.rs`) runs the same
//! assertions against each backend.

pub mod dead;
pub mod mysql;
pub mod postgres;
pub mod sql;
pub mod sqlite;
mod template;
mod types;

pub use types::*;

use crate::handler_sql::{RowAllowance, SqlFailure, SqlOutput, SqlStatement};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A storage failure. The engine logs it, backs off and tries again; nothing is marked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or lost the statement.
    #[error("database error during {op}: {source}")]
    Database {
        op: &'static str,
        source: sqlx::Error,
    },
    /// Applying the schema failed.
    #[error("migration of {target} failed: {source}")]
    Migrate { target: String, source: sqlx::Error },
    /// The database URL names a backend this build does not support.
    #[error(
        "unsupported database url {0:?}: use sqlite://PATH, mysql://USER@HOST/DB \
         (mariadb:// too) or postgres://USER@HOST/DB"
    )]
    UnsupportedUrl(String),
    /// A setting in the database URL the store does not accept (the message says which are).
    #[error("{0}")]
    Setting(String),
    /// The group commit carrying an enqueue ended without answering it (its task panicked).
    #[error(
        "the group commit carrying this enqueue ended without an answer, so whether it \
         committed is unknown: check the outbox table before enqueueing again"
    )]
    GroupLost,
    /// Another host already runs relays and consumers on this SQLite file.
    #[error(
        "another switchyard host is already running on {path}: SQLite is single-host (its lock \
         file {lock} is held); stop the other host, or use MySQL/MariaDB or PostgreSQL to run \
         several hosts on one database"
    )]
    HostLocked { path: String, lock: String },
    /// The lock file of a SQLite database could not be created.
    #[error("cannot create lock file {lock}: {source}")]
    LockFile {
        lock: String,
        source: std::io::Error,
    },
}

/// Shorthand for attaching the operation name to a sqlx error.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { op, source }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether a database error passes with time, whatever the statement: SQLSTATE classes 08
/// (connection exception), 40 (serialization failure, deadlock), 53 (insufficient resources)
/// and 57 (operator intervention: a server shutting down), SQLite's BUSY and LOCKED (5, 6 and
/// their extended codes) and MySQL's lock wait timeout.
pub fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code().unwrap_or_default();
    ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c))
        || matches!(
            code.as_ref(),
            "5" | "6" | "261" | "262" | "517" | "518" | "773"
        )
        || db.message().contains("Lock wait timeout")
}

/// Whether the server stopped the statement at the limit the host set for the invocation that
/// ran it ([`ConsumeTx::limit_statements`]), rather than for a reason of its own.
pub fn stopped_by_the_statement_limit(error: &StoreError) -> bool {
    matches!(error, StoreError::Database { source: sqlx::Error::Database(db), .. }
        if sql::handler_sql::stopped_by_the_statement_limit(db.as_ref()))
}

/// Whether a running host has its database to itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosting {
    /// The only host allowed (SQLite): rows left `published` at start belong to a previous
    /// run of this host.
    Exclusive,
    /// Other hosts may run on the same database (MySQL, PostgreSQL): rows `published` at start
    /// may be in flight in another host, and only the visibility timeout may requeue them.
    Shared,
}

/// A consume transaction opened before a batch's handlers run, so their state reads hold the
/// keys' locks until the batch's outcomes commit: no other host can change a key between a
/// handler reading it and this batch writing it (state is safe across replicas). Dropping it
/// without [`ConsumeTx::commit`] rolls everything back.
#[async_trait]
pub trait ConsumeTx: Send {
    /// A state value of a service, read under the key's lock (held until commit or rollback).
    async fn state_get_locked(&mut self, service: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;

    /// [`Store::apply`] inside this transaction.
    async fn apply(
        &mut self,
        table: &str,
        batch: &BatchOutcomes,
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<ApplyReport>;

    /// Commits the batch's outcomes, effects and the locks' release together.
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    /// Takes, releases or rolls back the savepoint of the invocation whose `sql` statements are
    /// running (one invocation at a time per transaction).
    async fn savepoint(&mut self, step: Savepoint) -> Result<(), SqlFailure>;

    /// Tells the server to give up a statement of this transaction that runs longer than `ms`
    /// (the invocation's deadline: the host stops waiting for it then, but the server would run
    /// it to its end, holding the transaction's locks), where the backend can
    /// ([`crate::store::sql::Dialect::STATEMENT_LIMIT`]). Sent only when `ms` changes and reset
    /// at commit; on MariaDB nothing is sent: each limited statement carries the limit.
    async fn limit_statements(&mut self, ms: u64) -> Result<(), SqlFailure>;

    /// Runs a handler's checked statement; a SELECT reads at most `allowance`.
    async fn run_sql(
        &mut self,
        statement: SqlStatement<'_>,
        allowance: RowAllowance,
    ) -> Result<SqlOutput, SqlFailure>;
}

/// A step of an invocation's savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Savepoint {
    /// At the invocation's first `sql` statement.
    Take,
    /// The invocation was acknowledged: its statements stand.
    Release,
    /// Retry, dead, trap, deadline or a failed statement: its statements are undone.
    RollBack,
}

/// The operations the engine needs, identical across backends.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or upgrades the host's own tables and the given outbox tables (one per
    /// service, names validated by the catalog). Only adds: never renames or drops; running it
    /// twice is a no-op.
    async fn migrate(&self, tables: &[String]) -> StoreResult<()>;

    /// Called once when a host starts relays and consumers. A single-host backend refuses a
    /// second host here (and holds its lock until the store is dropped).
    async fn acquire_host(&self) -> StoreResult<Hosting>;

    /// Inserts new `pending` rows (used by `publish` and by emits), returning their ids.
    async fn insert(&self, rows: &[NewRow], now: Timestamp) -> StoreResult<Vec<i64>>;

    /// Claims up to `claim.limit` due rows of `claim.types` (`pending`, `next_retry_at <=
    /// claim.now`, in `next_retry_at, id` order) by marking them `published` in one statement,
    /// and returns them in id order. Marking before publishing is the lease: a relay that dies
    /// after claiming leaves rows `published`, which the visibility timeout hands out again;
    /// and a consumer's retry that lands before the relay finishes is never overwritten. Rows
    /// locked by another host's claim are skipped, never waited for. With `hold_keys`, a row
    /// whose `message_key` has an earlier row waiting for a retry (`pending`, not yet due) is
    /// held back too. Rows of other types are never claimed.
    async fn claim_due(&self, table: &str, claim: &Claim<'_>) -> StoreResult<Vec<OutboxRow>>;

    /// Records failed attempts (publish failures, undecodable rows, handler failures):
    /// `retry_count+1`, back to `pending` after the backoff, or `dead` once the row's
    /// `max_retry` is reached (its text then starts "retries exhausted after N attempts: ").
    /// Rows already final are left alone.
    async fn fail_attempts(
        &self,
        table: &str,
        failures: &[(i64, String)],
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// The visibility timeout: rows `published` before `cutoff` and never consumed (their
    /// message was lost, or no consumer took it) each get a failed attempt (the rule of
    /// [`Store::fail_attempts`]), so a row nobody consumes ends `dead` instead of being
    /// published forever. Rows locked by a consume in progress are left to it. Returns how
    /// many.
    async fn requeue_stale(
        &self,
        table: &str,
        cutoff: Timestamp,
        now: Timestamp,
        policy: &Backoff,
    ) -> StoreResult<u64>;

    /// Every `published` row back to `pending`, due now, with `reason` as its `last_error`,
    /// counting no attempt: for rows whose delivery is known lost through no fault of theirs
    /// (the in-process queue of a previous run), or handed back to another relay (`switchyard
    /// release`, a rollback). Returns how many.
    async fn requeue_published(
        &self,
        table: &str,
        now: Timestamp,
        reason: &str,
    ) -> StoreResult<u64>;

    /// Moves claimed rows of `table` to their owners' tables in one transaction: each
    /// [`Relocation::row`] is inserted `pending`, and its source row, if still `published`,
    /// becomes `consumed` with `handler_version = 'moved'` and a `last_error` naming where it
    /// went. Returns `(source id, new id)` of the rows moved.
    async fn relocate(
        &self,
        table: &str,
        moves: &[Relocation],
        now: Timestamp,
    ) -> StoreResult<Vec<(i64, i64)>>;

    /// Current status and failure count of the given rows (absent ids are not in the table).
    async fn row_states(&self, table: &str, ids: &[i64]) -> StoreResult<BTreeMap<i64, RowState>>;

    /// When the earliest `pending` row of `types` (what the relay claims) becomes due, so the
    /// relay can sleep exactly that long.
    async fn next_due(&self, table: &str, types: &[String]) -> StoreResult<Option<Timestamp>>;

    /// A committed state value of a service.
    async fn state_get(&self, service: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Opens a [`ConsumeTx`] (a write transaction begun the backend's way).
    async fn begin_consume(&self) -> StoreResult<Box<dyn ConsumeTx>>;

    /// Which database this is (the dialect handlers' `sql` statements are checked for).
    fn backend(&self) -> crate::handler_sql::Backend;

    /// Applies one consumed batch of one service in ONE transaction: outcomes of rows still
    /// open, and the acked ones' state writes and new rows. Rows found already `consumed` or
    /// `dead` inside the transaction are skipped with their effects.
    async fn apply(
        &self,
        table: &str,
        batch: &BatchOutcomes,
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<ApplyReport>;

    /// Counts by status, the oldest due pending row, and the rows not yet final whose type is
    /// not one of `own_types` (the service's), for `switchyard status`.
    async fn table_status(&self, table: &str, own_types: &[String]) -> StoreResult<TableStatus>;

    /// The `dead` rows of `table` that `filter` selects, in id order, at most `limit`, and how
    /// many match in all (`switchyard dead list`). Reads only.
    async fn dead_rows(
        &self,
        table: &str,
        filter: &dead::DeadFilter,
        limit: Option<u64>,
    ) -> StoreResult<dead::DeadPage>;

    /// One row of `table` with every column, whatever its status (`switchyard dead show`).
    async fn whole_row(&self, table: &str, id: i64) -> StoreResult<Option<dead::WholeRow>>;

    /// The selected rows that are still `dead` back to `pending` in one transaction:
    /// `retry_count` 0, `last_error` cleared, due at `action.at`; one row per requeued row
    /// in `switchyard_dead_letter_actions` (who, when, why, and the attempts and last error the
    /// row had). Rows named by id that are not dead refuse the whole requeue
    /// ([`dead::DeadChange::NotDead`]); a row that stopped being dead meanwhile is never
    /// touched. Safe while hosts run: only `dead` rows are locked and written.
    async fn requeue_dead(
        &self,
        table: &str,
        selection: &dead::DeadSelection,
        action: &dead::DeadAction,
    ) -> StoreResult<dead::DeadChange>;

    /// Deletes the selected rows that are still `dead`, recorded as [`Store::requeue_dead`]
    /// records its rows; never deletes a row in any other status.
    async fn purge_dead(
        &self,
        table: &str,
        selection: &dead::DeadSelection,
        action: &dead::DeadAction,
    ) -> StoreResult<dead::DeadChange>;

    /// The rows of `table` not yet consumed, by status, and the oldest pending row's due
    /// time: index range reads only (`status`, `next_retry_at`), cheap enough to run every few
    /// seconds on a table of millions of consumed rows. Never DDL.
    async fn backlog(&self, table: &str) -> StoreResult<Backlog>;

    /// One retention round: deletes at most `limit` `consumed` rows of `table` consumed
    /// (`consumed_at`, else `updated_at`) before `cutoff`, copying them to `<table>_archive`
    /// first when `archive`. Picks the ids in a plain read, then deletes exactly those still
    /// `consumed` by primary key in one short transaction, skipping rows another host holds:
    /// claims never wait for it, and it never touches a row that is not `consumed`. Returns the
    /// rows deleted.
    async fn delete_consumed(
        &self,
        table: &str,
        cutoff: Timestamp,
        limit: u32,
        archive: bool,
    ) -> StoreResult<u64>;

    /// Fails (the database's "no such table") when `<table>_archive` is missing.
    async fn archive_ready(&self, table: &str) -> StoreResult<()>;

    /// Creates `<table>_archive` for each table where it is missing (`switchyard migrate` only).
    async fn migrate_archives(&self, tables: &[String]) -> StoreResult<()>;
}

/// Opens the store named by a database URL.
///
/// # Errors
/// [`StoreError::UnsupportedUrl`] for an unknown scheme; a database error if it cannot connect.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    open_with(url, SERVER_CONNECTIONS).await
}

/// Connections a host keeps to a database server unless its consumers need more.
pub const SERVER_CONNECTIONS: u32 = 8;

/// As [`open`], with a server's pool sized for `connections` (SQLite keeps its own few: its
/// writers take turns anyway).
///
/// # Errors
/// As [`open`].
pub async fn open_with(url: &str, connections: u32) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Ok(Arc::new(
            mysql::MySqlStore::connect(url, connections).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PgStore::connect(url, connections).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
