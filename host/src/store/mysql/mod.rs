//! MySQL / MariaDB: SmartFlow's home, shared by any number of hosts.
//!
//! Owns the outbox and state tables on a MySQL-compatible server (MariaDB 10.6+ or MySQL 8, for
//! `SKIP LOCKED`). A claim selects due rows `FOR UPDATE SKIP LOCKED` and marks them `published`
//! in the same transaction, so two relays never claim the same row in the same attempt; a
//! consume locks its batch rows `FOR UPDATE` before re-reading their status. Sessions run at
//! READ COMMITTED so upserts into the state table do not take gap locks that deadlock
//! concurrent hosts. It must never alter or drop what a SmartFlow table already has:
//! migrations only add what is missing.

mod handler_sql;
mod migrate;

use super::sql::{
    Dialect, SqlStore, claimed_rows, hold_keys_sql, in_input_order, insert_statements, push_list,
    types_sql,
};
use super::{Claim, Hosting, NewRow, OutboxRow, StoreResult, Timestamp, db};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Executor, MySql, MySqlConnection, MySqlPool, QueryBuilder, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// How long a caller waits for a pooled connection before the attempt fails (and the engine
/// logs and backs off): short, so a database outage shows up in the logs within seconds.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store on a MySQL/MariaDB server.
pub type MySqlStore = SqlStore<MySql>;

impl SqlStore<MySql> {
    /// Connects to `mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (`mariadb://` is accepted
    /// as an alias).
    ///
    /// Connects a pool of at most `connections`.
    ///
    /// # Errors
    /// A database error if the URL is malformed or the server cannot be reached.
    pub async fn connect(url: &str, connections: u32) -> StoreResult<MySqlStore> {
        let url = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        };
        let options = MySqlConnectOptions::from_str(&url).map_err(db("parse mysql url"))?;
        let pool = MySqlPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    // Handlers' datetimes are UTC (`NOW()`, TIMESTAMP columns): the sql import
                    // reads a zoneless DATETIME as UTC.
                    conn.execute("SET time_zone = '+00:00'").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db("connect mysql"))?;
        // MariaDB limits a statement alone (`SET STATEMENT ... FOR`); MySQL only a session.
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&pool)
            .await
            .map_err(db("read the server version"))?;
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        Ok(SqlStore::new(pool, ()).limiting_per_statement(mariadb))
    }
}

/// Inserts `pending` rows on a connection the caller controls (its own transaction) and
/// returns their ids in the order of `rows`. One multi-row INSERT per table and chunk; MySQL has no `RETURNING`, so the ids of one statement
/// are computed from `LAST_INSERT_ID()` (the first) and `auto_increment_increment`.
///
/// # Errors
/// The database error of the failing statement.
pub async fn insert_rows(
    conn: &mut MySqlConnection,
    rows: &[NewRow],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(rows.len());
    for (n, mut q) in insert_statements::<MySql>(rows, now, MySql::ROWS_PER_INSERT) {
        let done = q
            .build()
            .execute(&mut *conn)
            .await
            .map_err(db("insert outbox rows"))?;
        // A multi-row VALUES insert is a "simple insert": InnoDB reserves its ids in one
        // block, `auto_increment_increment` apart (more than 1 on multi-primary clusters).
        let step: i64 = if n > 1 {
            sqlx::query_scalar("SELECT CAST(@@auto_increment_increment AS SIGNED)")
                .fetch_one(&mut *conn)
                .await
                .map_err(db("read auto_increment_increment"))?
        } else {
            1
        };
        let first = done.last_insert_id() as i64;
        ids.extend((0..n as i64).map(|i| first + i * step));
    }
    Ok(in_input_order(rows, ids))
}

impl Dialect for MySql {
    const BACKEND: crate::handler_sql::Backend = crate::handler_sql::Backend::MySql;

    const LAST_ERROR_CONTAINS: [&'static str; 2] = [
        "INSTR(CAST(last_error AS BINARY), CAST(",
        " AS BINARY)) > 0",
    ];

    const STATEMENT_LIMIT: Option<crate::store::sql::handler_sql::StatementLimit> =
        Some(crate::store::sql::handler_sql::StatementLimit {
            // InnoDB's lock wait, in whole seconds (at least 1): MySQL and MariaDB both have it. A
            // statement that computes rather than waits is not bounded here (MariaDB's
            // max_statement_time is not in MySQL): docs/SECURITY.md.
            set: |ms| {
                format!(
                    "SET SESSION innodb_lock_wait_timeout = {}",
                    ms.div_ceil(1000).max(1)
                )
            },
            reset: Some("SET SESSION innodb_lock_wait_timeout = DEFAULT"),
            // MariaDB only (MySQL has no `SET STATEMENT`): the store asks the server which it is.
            per_statement: Some(|ms| {
                format!(
                    "SET STATEMENT innodb_lock_wait_timeout = {} FOR ",
                    ms.div_ceil(1000).max(1)
                )
            }),
        });

    /// Shared by any number of hosts: nothing to hold.
    type HostLock = ();

    /// InnoDB row locks until commit.
    const ROW_LOCK: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    /// Takes the key's lock row whether it existed or not.
    const LOCK_STATE_KEY: Option<&'static str> =
        Some(" ON DUPLICATE KEY UPDATE state_key = state_key");

    /// The primary key is `(service, state_key)`.
    const UPSERT_STATE: &'static str =
        " ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)";

    /// 11 parameters per outbox row stays far below the 65535 placeholder cap.
    const ROWS_PER_INSERT: usize = 500;

    const IDS_PER_LIST: usize = 1000;
    const ORDERED_DELETE: bool = true;

    /// A plain `BEGIN` (READ COMMITTED, set per session): the consume locks its rows with
    /// [`Dialect::ROW_LOCK`].
    async fn begin_write(pool: &MySqlPool) -> Result<Transaction<'static, MySql>, sqlx::Error> {
        pool.begin().await
    }

    fn acquire_host(_: &()) -> StoreResult<Hosting> {
        Ok(Hosting::Shared)
    }

    async fn migrate(pool: &MySqlPool, tables: &[String]) -> StoreResult<()> {
        migrate::host_tables(pool).await?;
        super::sql::migrate::outbox_tables(pool, tables, &migrate::SCHEMA).await
    }

    async fn insert_rows(
        conn: &mut MySqlConnection,
        rows: &[NewRow],
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        insert_rows(conn, rows, now).await
    }

    async fn claim_due(
        pool: &MySqlPool,
        table: &str,
        claim: &Claim<'_>,
    ) -> StoreResult<Vec<OutboxRow>> {
        let (now, limit, hold_keys) = (claim.now, claim.limit, claim.hold_keys);
        let types = types_sql(claim.types);
        // A locking read does not lock the rows its subqueries read, so the hold check sees
        // waiting rows even while another transaction has them locked.
        let hold = if hold_keys {
            hold_keys_sql(table, "?")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT c.id, c.biz_type, c.service_name, c.message_key, c.payload, c.retry_count, \
             c.traceparent \
             FROM {table} c WHERE c.status = 'pending' AND c.next_retry_at <= ?{hold}{types} \
             ORDER BY c.next_retry_at, c.id LIMIT ? FOR UPDATE SKIP LOCKED"
        );
        let mut tx = pool.begin().await.map_err(db("begin claim"))?;
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        if hold_keys {
            q = q.bind(now);
        }
        let rows = q
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("claim due rows"))?;
        let rows = claimed_rows(rows);
        if rows.is_empty() {
            return Ok(rows);
        }
        let mut q = QueryBuilder::<MySql>::new(format!(
            "UPDATE {table} SET status = 'published', publish_count = publish_count + 1, published_at = "
        ));
        q.push_bind(now).push(", updated_at = ").push_bind(now);
        q.push(" WHERE id IN ");
        push_list(&mut q, rows.iter().map(|r| r.id));
        q.build()
            .execute(&mut *tx)
            .await
            .map_err(db("mark claimed rows published"))?;
        tx.commit().await.map_err(db("commit claim"))?;
        Ok(rows)
    }

    async fn run_handler_sql(
        conn: &mut sqlx::MySqlConnection,
        statement: crate::handler_sql::SqlStatement<'_>,
        allowance: crate::handler_sql::RowAllowance,
        columns: &crate::store::sql::handler_sql::ColumnKinds,
    ) -> Result<crate::handler_sql::SqlOutput, crate::handler_sql::SqlFailure> {
        handler_sql::run(conn, statement, allowance, columns).await
    }
}
