//! PostgreSQL, shared by any number of hosts.
//!
//! Owns the outbox and state tables on a PostgreSQL server. A claim is one statement: an
//! `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`, so two relays never claim the
//! same row in the same attempt; a consume locks its batch rows `FOR UPDATE` before re-reading
//! their status. Sessions run at PostgreSQL's default READ COMMITTED. It must never alter or
//! drop what an adopted table already has: migrations only add what is missing.

mod handler_sql;
mod migrate;

use super::sql::{Dialect, SqlStore, claimed_rows, hold_keys_sql, insert_returning, types_sql};
use super::{Claim, Hosting, NewRow, OutboxRow, StoreResult, Timestamp, db};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// How long a caller waits for a pooled connection before the attempt fails (and the engine
/// logs and backs off): short, so a database outage shows up in the logs within seconds.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store on a PostgreSQL server.
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (`postgresql://` too).
    ///
    /// Connects a pool of at most `connections`.
    ///
    /// # Errors
    /// A database error if the URL is malformed or the server cannot be reached.
    pub async fn connect(url: &str, connections: u32) -> StoreResult<PgStore> {
        // Notices such as "relation already exists, skipping" from idempotent DDL are noise.
        let options = PgConnectOptions::from_str(url)
            .map_err(db("parse postgres url"))?
            .options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db("connect postgres"))?;
        Ok(SqlStore::new(pool, ()))
    }
}

/// Inserts `pending` rows on a connection the caller controls (its own transaction): one
/// multi-row `INSERT ... RETURNING id` per table and chunk.
///
/// # Errors
/// The database error of the failing statement.
pub async fn insert_rows(
    conn: &mut PgConnection,
    rows: &[NewRow],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    insert_returning::<Postgres>(conn, rows, now).await
}

impl Dialect for Postgres {
    const BACKEND: crate::handler_sql::Backend = crate::handler_sql::Backend::Postgres;

    const LAST_ERROR_CONTAINS: [&'static str; 2] = ["strpos(last_error, ", ") > 0"];

    const STATEMENT_LIMIT: Option<crate::store::sql::handler_sql::StatementLimit> =
        Some(crate::store::sql::handler_sql::StatementLimit {
            // Covers lock waits too. LOCAL: it ends with the transaction, so nothing to reset
            // (set before any savepoint, so a savepoint's rollback keeps it).
            set: |ms| format!("SET LOCAL statement_timeout = {}", ms.max(1)),
            reset: None,
            per_statement: None,
        });

    /// Shared by any number of hosts: nothing to hold.
    type HostLock = ();

    /// Row locks until commit.
    const ROW_LOCK: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    /// Takes the key's lock row whether it existed or not.
    const LOCK_STATE_KEY: Option<&'static str> =
        Some(" ON CONFLICT (service, state_key) DO UPDATE SET state_key = excluded.state_key");

    /// The primary key is `(service, state_key)`.
    const UPSERT_STATE: &'static str = " ON CONFLICT (service, state_key) DO UPDATE SET \
         value = excluded.value, updated_at = excluded.updated_at";

    /// 11 parameters per outbox row stays far below the 65535 bind cap.
    const ROWS_PER_INSERT: usize = 500;

    const IDS_PER_LIST: usize = 1000;

    /// A plain `BEGIN` (READ COMMITTED): the consume locks its rows with
    /// [`Dialect::ROW_LOCK`].
    async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin().await
    }

    fn acquire_host(_: &()) -> StoreResult<Hosting> {
        Ok(Hosting::Shared)
    }

    async fn migrate(pool: &PgPool, tables: &[String]) -> StoreResult<()> {
        migrate::host_tables(pool).await?;
        super::sql::migrate::outbox_tables(pool, tables, &migrate::SCHEMA).await
    }

    async fn insert_rows(
        conn: &mut PgConnection,
        rows: &[NewRow],
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        insert_rows(conn, rows, now).await
    }

    async fn claim_due(
        pool: &PgPool,
        table: &str,
        claim: &Claim<'_>,
    ) -> StoreResult<Vec<OutboxRow>> {
        let (now, limit, hold_keys) = (claim.now, claim.limit, claim.hold_keys);
        let types = types_sql(claim.types);
        // `FOR UPDATE OF c` locks only the candidates, never the rows the hold check reads.
        let hold = if hold_keys {
            hold_keys_sql(table, "$1")
        } else {
            String::new()
        };
        let sql = format!(
            "UPDATE {table} SET status = 'published', publish_count = publish_count + 1, \
             published_at = $1, updated_at = $1 \
             WHERE id IN (SELECT c.id FROM {table} c \
             WHERE c.status = 'pending' AND c.next_retry_at <= $1{hold}{types} \
             ORDER BY c.next_retry_at, c.id LIMIT $2 FOR UPDATE OF c SKIP LOCKED) \
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
        conn: &mut sqlx::PgConnection,
        statement: crate::handler_sql::SqlStatement<'_>,
        allowance: crate::handler_sql::RowAllowance,
        _columns: &crate::store::sql::handler_sql::ColumnKinds,
    ) -> Result<crate::handler_sql::SqlOutput, crate::handler_sql::SqlFailure> {
        handler_sql::run(conn, statement, allowance).await
    }
}
