//! The embedded default: one SQLite file, one host. A [`Dialect`] of the one store.
//!
//! Writes take SQLite's single write lock with `BEGIN IMMEDIATE`
//! ([`Dialect::begin_write`]), so the status check and the writes of a consume transaction see
//! the same snapshot; having no row locks, the status re-read adds no lock suffix. WAL mode
//! lets the relay read while a consumer commits. `synchronous = FULL`: a commit survives power
//! loss, not only a crash. The WAL is checkpointed by a task of the store, beside the writers
//! (`checkpoint.rs`), not inside whichever commit filled it. Single host: a running host holds
//! an exclusive lock on `<file>.host-lock` ([`SqliteHostLock`]), and a second host started on
//! the same file is refused with an error saying so (commands such as `publish` and `status` do
//! not take it, so they work beside a running host).

mod checkpoint;
mod handler_sql;
mod migrate;

use super::sql::{Dialect, SqlStore, claimed_rows, hold_keys_sql, insert_returning, types_sql};
use super::{Claim, Hosting, NewRow, OutboxRow, StoreError, StoreResult, Timestamp, db};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// The store on a SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

/// The single-host lock of a SQLite store: the lock file beside the database, held open (and
/// locked) from [`Store::acquire_host`](crate::store::Store::acquire_host) until the store is
/// dropped or the process dies.
pub struct SqliteHostLock {
    /// The database file (`None` in memory), whose lock file marks the running host.
    path: Option<PathBuf>,
    /// The held lock file.
    held: Mutex<Option<std::fs::File>>,
}

impl SqlStore<Sqlite> {
    /// Opens (creating if missing) the database file named by `sqlite://PATH`.
    ///
    /// # Errors
    /// A database error if the file cannot be opened.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let (url, synchronous) = synchronous_setting(url)?;
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(db("parse sqlite url"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(false);
        let file = options.get_filename();
        let path = (!file.as_os_str().is_empty() && !file.to_string_lossy().starts_with(':'))
            .then(|| file.to_owned());
        // A file's WAL is checkpointed by the store's own task, outside the writer turn
        // (`checkpoint.rs`); in memory there is no WAL.
        let on_file = path.is_some();
        let options = if on_file {
            options.pragma("wal_autocheckpoint", "0")
        } else {
            options
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(db("connect sqlite"))?;
        let lock = SqliteHostLock {
            path,
            held: Mutex::new(None),
        };
        let store = SqlStore::new(pool, lock);
        if on_file {
            checkpoint::spawn(options, store.writer_turn_weak());
        }
        Ok(store)
    }
}

/// The URL's `synchronous` parameter (`full`, the default, or `normal`), and the URL without it
/// for sqlx. `full`: a commit is on disk before it returns, so it survives power loss; `normal`
/// (WAL mode): a commit survives the process being killed but the last commits before a power
/// loss or OS crash may be lost, and a commit costs no fsync (docs/BENCHMARKS.md, latency).
///
/// # Errors
/// Another value, naming the two allowed.
fn synchronous_setting(url: &str) -> StoreResult<(String, SqliteSynchronous)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), SqliteSynchronous::Full));
    };
    let mut synchronous = SqliteSynchronous::Full;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = match value.to_ascii_lowercase().as_str() {
                    "full" => SqliteSynchronous::Full,
                    "normal" => SqliteSynchronous::Normal,
                    other => {
                        return Err(StoreError::Setting(format!(
                            "database_url: synchronous={other} is not supported: use \
                             synchronous=full (the default: commits survive power loss) or \
                             synchronous=normal (commits survive a crash of the host, not of \
                             the machine; no fsync per commit)"
                        )));
                    }
                }
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, synchronous))
}

/// Inserts `pending` rows on a connection the caller controls (its own transaction): one
/// multi-row `INSERT ... RETURNING id` per table and chunk.
///
/// # Errors
/// The database error of the failing statement.
pub async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[NewRow],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    insert_returning::<Sqlite>(conn, rows, now).await
}

impl Dialect for Sqlite {
    const BACKEND: crate::handler_sql::Backend = crate::handler_sql::Backend::Sqlite;

    const LAST_ERROR_CONTAINS: [&'static str; 2] = ["instr(last_error, ", ") > 0"];

    const STATEMENT_LIMIT: Option<crate::store::sql::handler_sql::StatementLimit> = None;

    type HostLock = SqliteHostLock;

    /// No row locks: `BEGIN IMMEDIATE` already holds the one write lock of the file.
    const ROW_LOCK: &'static str = "";
    const SKIP_LOCKED: &'static str = "";

    /// One writer at a time: `BEGIN IMMEDIATE` already holds every key.
    const LOCK_STATE_KEY: Option<&'static str> = None;

    /// The primary key is `(service, state_key)`.
    const UPSERT_STATE: &'static str = " ON CONFLICT (service, state_key) DO UPDATE SET \
         value = excluded.value, updated_at = excluded.updated_at";

    /// 11 parameters per outbox row stays well under SQLite's 32766 bound parameters.
    const ROWS_PER_INSERT: usize = 200;

    const IDS_PER_LIST: usize = 800;

    const ONE_WRITER: bool = true;

    /// `BEGIN IMMEDIATE` on a pooled connection: the write lock is taken before the status
    /// re-read, so the re-read and the writes see one snapshot (a deferred `BEGIN` could read,
    /// then fail to upgrade to a writer with `SQLITE_BUSY` mid-transaction).
    async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn acquire_host(lock: &SqliteHostLock) -> StoreResult<Hosting> {
        let Some(path) = &lock.path else {
            return Ok(Hosting::Exclusive); // in memory: nobody else can open it
        };
        let mut held = lock.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return Ok(Hosting::Exclusive);
        }
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".host-lock");
        let lock = PathBuf::from(lock_path);
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

    async fn migrate(pool: &SqlitePool, tables: &[String]) -> StoreResult<()> {
        migrate::run(pool, tables).await
    }

    async fn insert_rows(
        conn: &mut SqliteConnection,
        rows: &[NewRow],
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        insert_rows(conn, rows, now).await
    }

    async fn claim_due(
        pool: &SqlitePool,
        table: &str,
        claim: &Claim<'_>,
    ) -> StoreResult<Vec<OutboxRow>> {
        let (now, limit, hold_keys) = (claim.now, claim.limit, claim.hold_keys);
        let types = types_sql(claim.types);
        // One statement, so one writer: SQLite needs no `SKIP LOCKED`.
        let hold = if hold_keys {
            hold_keys_sql(table, "?1")
        } else {
            String::new()
        };
        let sql = format!(
            "UPDATE {table} SET status = 'published', publish_count = publish_count + 1, \
             published_at = ?1, updated_at = ?1 \
             WHERE id IN (SELECT c.id FROM {table} c WHERE c.status = 'pending' \
             AND c.next_retry_at <= ?1{hold}{types} ORDER BY c.next_retry_at, c.id LIMIT ?2) \
             RETURNING id, biz_type, service_name, message_key, payload, retry_count, traceparent"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(db("claim due rows"))?;
        Ok(claimed_rows(rows))
    }

    async fn run_handler_sql(
        conn: &mut sqlx::SqliteConnection,
        statement: crate::handler_sql::SqlStatement<'_>,
        allowance: crate::handler_sql::RowAllowance,
        _columns: &crate::store::sql::handler_sql::ColumnKinds,
    ) -> Result<crate::handler_sql::SqlOutput, crate::handler_sql::SqlFailure> {
        handler_sql::run(conn, statement, allowance).await
    }
}

#[cfg(test)]
mod synchronous_tests {
    use super::*;

    #[test]
    fn the_synchronous_parameter_is_read_and_taken_out_of_the_url() {
        let (url, s) = synchronous_setting("sqlite://a.db").unwrap();
        assert_eq!(
            (url.as_str(), s as u8),
            ("sqlite://a.db", SqliteSynchronous::Full as u8)
        );
        let (url, s) = synchronous_setting("sqlite://a.db?synchronous=normal").unwrap();
        assert_eq!(
            (url.as_str(), s as u8),
            ("sqlite://a.db", SqliteSynchronous::Normal as u8)
        );
        let (url, _) = synchronous_setting("sqlite://a.db?mode=rwc&synchronous=FULL").unwrap();
        assert_eq!(url, "sqlite://a.db?mode=rwc");
        let e = synchronous_setting("sqlite://a.db?synchronous=off").unwrap_err();
        assert!(e.to_string().contains("synchronous=normal"), "{e}");
    }
}
