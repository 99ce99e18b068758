//! PostgreSQL, shared by any number of hosts.
//!
//! Owns the outbox and state tables on a PostgreSQL server. A claim is one statement: an
//! `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`, so two relays never claim the
//! same row in the same attempt; a consume locks its batch rows `FOR UPDATE` before re-reading
//! their status. Sessions run at PostgreSQL's default READ COMMITTED. It must never alter or
//! drop what an adopted table already has: migrations only add what is missing.

mod apply;
mod migrate;

use super::{
    AppliedBatch, ApplyReport, Backoff, Hosting, NewRow, OutboxRow, RowState, Store, StoreResult,
    TableStatus, Timestamp, db,
};
use crate::catalog::Service;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, QueryBuilder, Row};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Rows per multi-row statement: 11 parameters each stays far below the 65535 bind cap.
const ROWS_PER_INSERT: usize = 500;

/// How long a caller waits for a pooled connection before the attempt fails (and the engine
/// logs and backs off): short, so a database outage shows up in the logs within seconds.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (`postgresql://` too).
    ///
    /// # Errors
    /// A database error if the URL is malformed or the server cannot be reached.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        // Notices such as "relation already exists, skipping" from idempotent DDL are noise.
        let options = PgConnectOptions::from_str(url)
            .map_err(db("parse postgres url"))?
            .options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db("connect postgres"))?;
        Ok(PgStore { pool })
    }

    /// The pool, for callers that enqueue inside their own transactions.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self, op: &'static str) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db(op))
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
    let mut ids = Vec::with_capacity(rows.len());
    let mut by_table: BTreeMap<&str, Vec<&NewRow>> = BTreeMap::new();
    for row in rows {
        by_table.entry(row.table.as_str()).or_default().push(row);
    }
    for (table, rows) in by_table {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Postgres>::new(format!(
                "INSERT INTO {table} (biz_type, service_name, topic, message_key, payload, status, \
                 retry_count, max_retry, next_retry_at, created_at, updated_at) "
            ));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.biz_type.clone())
                    .push_bind(r.service_name.clone())
                    .push_bind(r.topic.clone())
                    .push_bind(r.message_key.clone())
                    .push_bind(r.payload.clone())
                    .push_bind("pending")
                    .push_bind(0i32)
                    .push_bind(r.max_retry)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.push(" RETURNING id");
            let returned: Vec<i64> = q
                .build_query_scalar()
                .fetch_all(&mut *conn)
                .await
                .map_err(db("insert outbox rows"))?;
            ids.extend(returned);
        }
    }
    Ok(ids)
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self, services: &[Arc<Service>]) -> StoreResult<()> {
        migrate::run(&self.pool, services).await
    }

    async fn acquire_host(&self) -> StoreResult<Hosting> {
        Ok(Hosting::Shared)
    }

    async fn insert(&self, rows: &[NewRow], now: Timestamp) -> StoreResult<Vec<i64>> {
        let mut tx = self.begin("begin insert").await?;
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
        // `FOR UPDATE OF c` locks only the candidates, never the rows the hold check reads.
        let hold = if hold_keys {
            format!(
                " AND NOT (c.message_key <> '' AND EXISTS (SELECT 1 FROM {table} e \
                 WHERE e.message_key = c.message_key AND e.id < c.id \
                 AND e.status = 'pending' AND e.next_retry_at > $1))"
            )
        } else {
            String::new()
        };
        let sql = format!(
            "UPDATE {table} SET status = 'published', publish_count = publish_count + 1, \
             published_at = $1, updated_at = $1 \
             WHERE id IN (SELECT c.id FROM {table} c \
             WHERE c.status = 'pending' AND c.next_retry_at <= $1{hold} \
             ORDER BY c.next_retry_at, c.id LIMIT $2 FOR UPDATE OF c SKIP LOCKED) \
             RETURNING id, biz_type, service_name, message_key, payload, retry_count"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("claim due rows"))?;
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
        Ok(rows)
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
        apply::fail_many(&mut tx, table, failures, policy, now).await?;
        tx.commit().await.map_err(db("commit fail attempts"))?;
        Ok(())
    }

    async fn requeue_stale(
        &self,
        table: &str,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u64> {
        // Rows locked right now belong to a consume or a claim in progress: skip them rather
        // than wait (or deadlock) — whoever holds them decides their fate.
        let sql = format!(
            "UPDATE {table} SET status = 'pending', next_retry_at = $1, updated_at = $1, \
             last_error = 'published but not consumed within the visibility timeout' \
             WHERE id IN (SELECT id FROM {table} WHERE status = 'published' AND published_at <= $2 \
             FOR UPDATE SKIP LOCKED)"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
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
        let rows = apply::row_states(&mut conn, table, ids, false).await?;
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
        sqlx::query_scalar(
            "SELECT value FROM switchyard_state WHERE service = $1 AND state_key = $2",
        )
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
        let mut tx = self.begin("begin apply").await?;
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
