//! The embedded default: one SQLite file, one host.
//!
//! Writes take SQLite's single write lock with `BEGIN IMMEDIATE`, so the status check and the
//! writes of a consume transaction see the same snapshot. WAL mode lets the relay read while a
//! consumer commits. `synchronous = FULL`: a commit survives power loss, not only a crash.
//! Single host: a running host holds an exclusive lock on `<file>.host-lock`, and a second
//! host started on the same file is refused with an error saying so (commands such as
//! `publish` and `status` do not take it, so they work beside a running host).

mod apply;
mod migrate;

use super::sql::{claimed_rows, insert_statements};
use super::{
    Backoff, Hosting, NewRow, OutboxRow, RowState, Store, StoreError, StoreResult, TableStatus,
    Timestamp, db,
};
use crate::catalog::Service;
use crate::store::{AppliedBatch, ApplyReport};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, Row, Sqlite, SqliteConnection, SqlitePool};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Bound parameters per statement stay well under SQLite's limit (32766).
const ROWS_PER_INSERT: usize = 200;

pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file (`None` in memory), whose lock file marks the running host.
    path: Option<std::path::PathBuf>,
    /// The held lock file, released when the store is dropped (or the process dies).
    host_lock: std::sync::Mutex<Option<std::fs::File>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `sqlite://PATH`.
    ///
    /// # Errors
    /// A database error if the file cannot be opened.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db("parse sqlite url"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(false);
        let file = options.get_filename();
        let path = (!file.as_os_str().is_empty() && !file.to_string_lossy().starts_with(':'))
            .then(|| file.to_owned());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db("connect sqlite"))?;
        Ok(SqliteStore {
            pool,
            path,
            host_lock: std::sync::Mutex::new(None),
        })
    }

    /// The pool, for callers that enqueue inside their own transactions.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn write_tx(&self) -> StoreResult<sqlx::pool::PoolConnection<Sqlite>> {
        self.pool.acquire().await.map_err(db("acquire connection"))
    }
}

/// Inserts `pending` rows on a connection the caller controls (its own transaction).
///
/// # Errors
/// The database error of the failing statement.
pub async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[NewRow],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(rows.len());
    for (_, mut q) in insert_statements::<Sqlite>(rows, now, ROWS_PER_INSERT) {
        q.push(" RETURNING id");
        let returned = q
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(db("insert outbox rows"))?;
        for r in returned {
            ids.push(r.get::<i64, _>(0));
        }
    }
    Ok(ids)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self, services: &[Arc<Service>]) -> StoreResult<()> {
        migrate::run(&self.pool, services).await
    }

    async fn acquire_host(&self) -> StoreResult<Hosting> {
        let Some(path) = &self.path else {
            return Ok(Hosting::Exclusive); // in memory: nobody else can open it
        };
        let mut held = self.host_lock.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return Ok(Hosting::Exclusive);
        }
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".host-lock");
        let lock = std::path::PathBuf::from(lock_path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| StoreError::LockFile {
                lock: lock.display().to_string(),
                source,
            })?;
        // An advisory lock held by the open file: the kernel releases it when the host exits,
        // however it exits, so a crashed host never leaves a stale lock behind.
        match file.try_lock() {
            Ok(()) => {
                *held = Some(file);
                Ok(Hosting::Exclusive)
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::HostLocked {
                path: path.display().to_string(),
                lock: lock.display().to_string(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::LockFile {
                lock: lock.display().to_string(),
                source,
            }),
        }
    }

    async fn insert(&self, rows: &[NewRow], now: Timestamp) -> StoreResult<Vec<i64>> {
        let mut conn = self.write_tx().await?;
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin insert"))?;
        let ids = insert_rows(&mut tx, rows, now).await?;
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
        let hold = if hold_keys {
            format!(
                " AND NOT (c.message_key <> '' AND EXISTS (SELECT 1 FROM {table} e \
                 WHERE e.message_key = c.message_key AND e.id < c.id \
                 AND e.status = 'pending' AND e.next_retry_at > ?1))"
            )
        } else {
            String::new()
        };
        let sql = format!(
            "UPDATE {table} SET status = 'published', publish_count = publish_count + 1, \
             published_at = ?1, updated_at = ?1 \
             WHERE id IN (SELECT c.id FROM {table} c WHERE c.status = 'pending' \
             AND c.next_retry_at <= ?1{hold} ORDER BY c.next_retry_at, c.id LIMIT ?2) \
             RETURNING id, biz_type, service_name, message_key, payload, retry_count"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("claim due rows"))?;
        Ok(claimed_rows(rows))
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
        let mut conn = self.write_tx().await?;
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin fail attempts"))?;
        for (id, reason) in failures {
            apply::fail_one(&mut tx, table, *id, reason, policy, now).await?;
        }
        tx.commit().await.map_err(db("commit fail attempts"))?;
        Ok(())
    }

    async fn requeue_stale(
        &self,
        table: &str,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let sql = format!(
            "UPDATE {table} SET status = 'pending', next_retry_at = ?, updated_at = ?, \
             last_error = 'published but not consumed within the visibility timeout' \
             WHERE status = 'published' AND published_at <= ?"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(now)
            .bind(cutoff)
            .execute(&self.pool)
            .await
            .map_err(db("requeue stale rows"))?;
        Ok(done.rows_affected())
    }

    async fn row_states(&self, table: &str, ids: &[i64]) -> StoreResult<BTreeMap<i64, RowState>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("acquire connection"))?;
        apply::row_states(&mut conn, table, ids).await
    }

    async fn next_due(&self, table: &str) -> StoreResult<Option<Timestamp>> {
        let sql = format!("SELECT MIN(next_retry_at) FROM {table} WHERE status = 'pending'");
        sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(db("next due"))
    }

    async fn state_get(&self, service: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT value FROM switchyard_state WHERE service = ? AND state_key = ?")
            .bind(service)
            .bind(key)
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
        let mut conn = self.write_tx().await?;
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin apply"))?;
        let report = apply::apply_batch(&mut tx, table, batch, policy, now).await?;
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
