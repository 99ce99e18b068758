//! Retention, written once for every backend: deleting `consumed` rows older than a cutoff,
//! optionally copying them to `<table>_archive` first, and creating that archive table (only
//! from `switchyard migrate`).
//!
//! A round never blocks a claim: it picks the ids in a plain read (no lock), then, in one short
//! write transaction, locks exactly those ids by primary key with [`Dialect::SKIP_LOCKED`]
//! (`WHERE id IN (...)` alone: no range or gap locks on MySQL's status index, which a new
//! pending row's INSERT would wait for), re-checks that each locked row is still `consumed`,
//! and deletes (and archives) exactly those by primary key. Claims touch only `pending` rows,
//! so they never meet these locks. Hosts sharing a database may run rounds at once: a row
//! another round holds is skipped, one it deleted is gone, and no row is archived twice. It
//! must never touch a row that is not `consumed`, nor run DDL outside `migrate_archives`.

use super::{Dialect, SqlStore, push_list};
use crate::store::{StoreResult, Timestamp, db};
use sqlx::{
    AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type,
};

/// The columns an archive table holds: SmartFlow's and Switchyard's, in the outbox's order.
pub(crate) const ARCHIVE_COLUMNS: &str = "id, biz_type, service_name, topic, message_key, \
     payload, status, retry_count, max_retry, next_retry_at, last_error, published_at, \
     consumed_at, created_at, updated_at, handler_version, publish_count, chain_depth";

/// The archive table of an outbox table (a validated name, so its suffix is safe too).
pub(crate) fn archive_table(table: &str) -> String {
    format!("{table}_archive")
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    i64: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    String: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
{
    /// One retention round: see the module doc. Returns the rows deleted.
    pub(super) async fn retention_round(
        &self,
        table: &str,
        cutoff: Timestamp,
        limit: u32,
        archive: bool,
    ) -> StoreResult<u64> {
        // "Consumed at": `consumed_at`, or `updated_at` for a legacy row consumed by a
        // program that did not set it; a row with neither is never old.
        let mut q = QueryBuilder::<D>::new(format!(
            "SELECT id FROM {table} WHERE status = 'consumed' \
             AND COALESCE(consumed_at, updated_at) < "
        ));
        // No `ORDER BY`: any old rows will do, and without one every backend stops at the
        // first `limit` it finds (SQLite sorted all consumed rows by id first: 1 s a round on
        // a 1,000,000-row table).
        q.push_bind(cutoff).push(" LIMIT ").push(limit.to_string());
        let ids: Vec<i64> = q
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(db("select old consumed rows"))?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write("begin retention").await?;
        let mut deleted = 0;
        for chunk in ids.chunks(D::IDS_PER_LIST) {
            // Locked by primary key alone (`ORDER BY id` keeps MySQL on it): a `status`
            // condition, or the covering status index, could lead MySQL to scan that index,
            // whose next-key locks would block a new pending row's INSERT. The status is
            // re-checked on the locked rows instead, which no one else changes before the
            // commit.
            let mut q =
                QueryBuilder::<D>::new(format!("SELECT id, status FROM {table} WHERE id IN "));
            push_list(&mut q, chunk.iter().copied());
            q.push(" ORDER BY id").push(D::SKIP_LOCKED);
            let locked: Vec<i64> = q
                .build_query_as::<(i64, String)>()
                .fetch_all(&mut *tx)
                .await
                .map_err(db("lock old consumed rows"))?
                .into_iter()
                .filter(|(_, status)| status == "consumed")
                .map(|(id, _)| id)
                .collect();
            if locked.is_empty() {
                continue;
            }
            if archive {
                let mut q = QueryBuilder::<D>::new(format!(
                    "INSERT INTO {} ({ARCHIVE_COLUMNS}) SELECT {ARCHIVE_COLUMNS} FROM {table} \
                     WHERE id IN ",
                    archive_table(table)
                ));
                push_list(&mut q, locked.iter().copied());
                q.push(" ORDER BY id");
                q.build()
                    .execute(&mut *tx)
                    .await
                    .map_err(db("archive old consumed rows"))?;
            }
            let mut q = QueryBuilder::<D>::new(format!("DELETE FROM {table} WHERE id IN "));
            push_list(&mut q, locked.iter().copied());
            if D::ORDERED_DELETE {
                q.push(format!(" ORDER BY id LIMIT {}", locked.len()));
            }
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(db("delete old consumed rows"))?;
            // Locked (on SQLite: under the write lock) and consumed: each goes.
            deleted += locked.len() as u64;
        }
        tx.commit().await.map_err(db("commit retention"))?;
        Ok(deleted)
    }

    /// Fails with the database's "no such table" when `table`'s archive is missing.
    pub(super) async fn check_archive(&self, table: &str) -> StoreResult<()> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {ARCHIVE_COLUMNS} FROM {} WHERE 1 = 0",
            archive_table(table)
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db("read the archive table"))?;
        Ok(())
    }

    /// Creates each table's archive if missing: the outbox's columns, no rows, no indexes
    /// (`CREATE TABLE ... AS SELECT`, the one form the three backends share).
    pub(super) async fn create_archives(&self, tables: &[String]) -> StoreResult<()> {
        for table in tables {
            sqlx::query(AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS {} AS SELECT {ARCHIVE_COLUMNS} FROM {table} WHERE 1 = 0",
                archive_table(table)
            )))
            .execute(&self.pool)
            .await
            .map_err(db("create the archive table"))?;
        }
        Ok(())
    }
}
