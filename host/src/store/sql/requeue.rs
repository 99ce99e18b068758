//! Rows handed out again, written once for every backend: the visibility timeout (a failed
//! attempt, so a row nobody consumes ends `dead` rather than being published forever), the
//! plain requeue of `published` rows (a lost in-process queue, a hand-back to another relay),
//! and the move of a claimed row to its owner's table (a legacy shared table drained).

use super::{Dialect, SqlStore, push_list};
use crate::store::{Backoff, Relocation, Status, StoreResult, Timestamp, db};
use crate::text::cut_reason;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

/// `last_error` of a row the visibility timeout requeues.
pub(crate) const STALE_REASON: &str = "published but not consumed within the visibility timeout";

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    i32: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    i64: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    String: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    Vec<u8>: Type<D> + for<'q> Encode<'q, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D>,
{
    /// Ids of rows `published` at or before `cutoff`, locked for this transaction; rows locked
    /// by a consume or claim in progress are skipped ([`Dialect::SKIP_LOCKED`]), never waited
    /// for: whoever holds them decides their fate.
    async fn published_before(
        conn: &mut D::Connection,
        table: &str,
        cutoff: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        let mut q = QueryBuilder::<D>::new(format!(
            "SELECT id FROM {table} WHERE status = 'published' AND published_at <= "
        ));
        q.push_bind(cutoff)
            .push(" ORDER BY id")
            .push(D::SKIP_LOCKED);
        q.build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(db("find published rows"))
    }

    pub(super) async fn requeue_stale_in(
        conn: &mut D::Connection,
        table: &str,
        cutoff: Timestamp,
        now: Timestamp,
        policy: &Backoff,
    ) -> StoreResult<u64> {
        let ids = Self::published_before(conn, table, cutoff).await?;
        let failures: Vec<(i64, String)> = ids
            .iter()
            .map(|id| (*id, STALE_REASON.to_owned()))
            .collect();
        Self::fail_many(conn, table, &failures, policy, now).await?;
        Ok(ids.len() as u64)
    }

    pub(super) async fn requeue_published_in(
        conn: &mut D::Connection,
        table: &str,
        now: Timestamp,
        reason: &str,
    ) -> StoreResult<u64> {
        // Locked by this transaction: every one of them is updated.
        let ids = Self::published_before(conn, table, now).await?;
        for chunk in ids.chunks(D::IDS_PER_LIST) {
            let mut q = QueryBuilder::<D>::new(format!(
                "UPDATE {table} SET status = 'pending', next_retry_at = "
            ));
            q.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(", last_error = ")
                .push_bind(cut_reason(reason))
                .push(" WHERE status = 'published' AND id IN ");
            push_list(&mut q, chunk.iter().copied());
            q.build()
                .execute(&mut *conn)
                .await
                .map_err(db("requeue published rows"))?;
        }
        Ok(ids.len() as u64)
    }

    pub(super) async fn relocate_in(
        conn: &mut D::Connection,
        table: &str,
        moves: &[Relocation],
        now: Timestamp,
    ) -> StoreResult<Vec<(i64, i64)>> {
        let ids: Vec<i64> = moves.iter().map(|m| m.id).collect();
        let states = Self::read_row_states(conn, table, &ids, true).await?;
        // Only rows still under this relay's claim move: one consumed, dead or requeued
        // meanwhile has been decided by someone else.
        let live: Vec<&Relocation> = moves
            .iter()
            .filter(|m| {
                states
                    .get(&m.id)
                    .is_some_and(|s| s.state.status == Status::Published)
            })
            .collect();
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<_> = live.iter().map(|m| m.row.clone()).collect();
        let new_ids = D::insert_rows(conn, &rows, now).await?;
        let mut moved = Vec::with_capacity(live.len());
        for (m, new_id) in live.into_iter().zip(new_ids) {
            let note = format!(
                "moved to {} as row {new_id}: event type {} is owned by service {}",
                m.row.table, m.row.biz_type, m.row.service_name
            );
            let mut q = QueryBuilder::<D>::new(format!(
                "UPDATE {table} SET status = 'consumed', handler_version = 'moved', consumed_at = "
            ));
            q.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(", last_error = ")
                .push_bind(note)
                .push(" WHERE id = ")
                .push_bind(m.id);
            q.build()
                .execute(&mut *conn)
                .await
                .map_err(db("mark a moved row"))?;
            moved.push((m.id, new_id));
        }
        Ok(moved)
    }
}
