//! The operator's dead-letter statements (`switchyard dead`), written once for every backend:
//! listing and showing dead rows, requeueing them (back to `pending`, attempts reset, due now)
//! and purging them, each requeue or purge recorded in `switchyard_dead_letter_actions` in the
//! same transaction.
//!
//! Safe while hosts run: every statement that writes names `status = 'dead'` in its `WHERE`,
//! and the rows are first locked ([`Dialect::ROW_LOCK`]; SQLite's `BEGIN IMMEDIATE` holds its
//! one write lock) and re-read inside the transaction, so a row a host consumed or another
//! operator requeued meanwhile is left alone. Claims never wait on these locks: they only take
//! `pending` rows. It must never change a row that is not `dead`, nor run DDL: a missing
//! actions table is an error that says to migrate.

use super::{Dialect, SqlStore, push_list};
use crate::store::dead::{
    ActedRow, DEAD_LETTER_ACTIONS, DeadAction, DeadChange, DeadFilter, DeadPage, DeadRow,
    DeadSelection, WholeRow,
};
use crate::store::{StoreResult, Timestamp, db};
use crate::text::{cut, cut_reason};
use sqlx::{
    AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type,
};

/// What an operator does to the selected dead rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadOp {
    /// Back to `pending`: `retry_count` 0, `last_error` and the old due time cleared, due now.
    Requeue,
    /// Deleted.
    Purge,
}

impl DeadOp {
    fn as_str(self) -> &'static str {
        match self {
            DeadOp::Requeue => "requeue",
            DeadOp::Purge => "purge",
        }
    }
}

/// A row selected for an action, read under its lock.
struct Candidate {
    id: i64,
    status: Option<String>,
    biz_type: String,
    retry_count: i32,
    last_error: Option<String>,
}

/// `actor` column width (VARCHAR(255) on the servers).
const MAX_ACTOR_BYTES: usize = 255;

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    i32: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    i64: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    String: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    Vec<u8>: Type<D> + for<'q> Encode<'q, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
{
    /// Appends the filter's conditions (each `AND ...`) to a statement on dead rows.
    fn push_filter(q: &mut QueryBuilder<D>, filter: &DeadFilter) {
        if let Some(t) = &filter.event_type {
            q.push(" AND biz_type = ").push_bind(t.clone());
        }
        if let Some(since) = filter.since {
            q.push(" AND COALESCE(updated_at, created_at) >= ")
                .push_bind(since);
        }
        if let Some(until) = filter.until {
            q.push(" AND COALESCE(updated_at, created_at) <= ")
                .push_bind(until);
        }
        if let Some(text) = &filter.reason {
            let [before, after] = D::LAST_ERROR_CONTAINS;
            q.push(" AND ")
                .push(before)
                .push_bind(text.clone())
                .push(after);
        }
    }

    pub(super) async fn read_dead_rows(
        &self,
        table: &str,
        filter: &DeadFilter,
        limit: Option<u64>,
    ) -> StoreResult<DeadPage> {
        let mut q = QueryBuilder::<D>::new(format!(
            "SELECT id, biz_type, message_key, retry_count, max_retry, last_error, \
             COALESCE(updated_at, created_at) FROM {table} WHERE status = 'dead'"
        ));
        Self::push_filter(&mut q, filter);
        q.push(" ORDER BY id");
        if let Some(n) = limit {
            q.push(" LIMIT ")
                .push_bind(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(db("list dead rows"))?;
        let rows = rows
            .into_iter()
            .map(|r| {
                Ok(DeadRow {
                    id: r.try_get(0)?,
                    biz_type: r.try_get(1).unwrap_or_default(),
                    message_key: r.try_get(2).unwrap_or_default(),
                    attempts: r.try_get(3).unwrap_or_default(),
                    max_attempts: r.try_get(4).unwrap_or_default(),
                    last_error: r.try_get(5).ok().flatten(),
                    dead_at: r.try_get(6).ok().flatten(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db("decode dead rows"))?;
        let mut q = QueryBuilder::<D>::new(format!(
            "SELECT COUNT(*) FROM {table} WHERE status = 'dead'"
        ));
        Self::push_filter(&mut q, filter);
        let total: i64 = q
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(db("count dead rows"))?;
        Ok(DeadPage {
            rows,
            total: total.max(0) as u64,
        })
    }

    pub(super) async fn read_whole_row(
        &self,
        table: &str,
        id: i64,
    ) -> StoreResult<Option<WholeRow>> {
        let mut q = QueryBuilder::<D>::new(format!(
            "SELECT id, biz_type, service_name, topic, message_key, payload, status, retry_count, \
             max_retry, next_retry_at, last_error, published_at, consumed_at, created_at, \
             updated_at, handler_version, publish_count, chain_depth FROM {table} WHERE id = "
        ));
        q.push_bind(id);
        let Some(r) = q
            .build()
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read a row"))?
        else {
            return Ok(None);
        };
        let text = |i: usize| r.try_get::<Option<String>, _>(i).ok().flatten();
        let time = |i: usize| r.try_get::<Option<Timestamp>, _>(i).ok().flatten();
        let int = |i: usize| r.try_get::<i32, _>(i).unwrap_or_default();
        Ok(Some(WholeRow {
            id: r.try_get(0).map_err(db("decode a row"))?,
            biz_type: text(1).unwrap_or_default(),
            service_name: text(2).unwrap_or_default(),
            topic: text(3).unwrap_or_default(),
            message_key: text(4).unwrap_or_default(),
            payload: text(5),
            status: text(6).unwrap_or_default(),
            retry_count: int(7),
            max_retry: int(8),
            next_retry_at: time(9),
            last_error: text(10),
            published_at: time(11),
            consumed_at: time(12),
            created_at: time(13),
            updated_at: time(14),
            handler_version: text(15),
            publish_count: int(16),
            chain_depth: int(17),
        }))
    }

    /// The rows `selection` names, locked for this transaction, in id order.
    async fn lock_candidates(
        conn: &mut D::Connection,
        table: &str,
        selection: &DeadSelection,
    ) -> StoreResult<Vec<Candidate>> {
        const COLUMNS: &str = "id, status, biz_type, retry_count, last_error";
        let mut statements = Vec::new();
        match selection {
            DeadSelection::Ids(ids) => {
                let mut sorted = ids.clone();
                sorted.sort_unstable();
                sorted.dedup();
                for chunk in sorted.chunks(D::IDS_PER_LIST) {
                    let mut q = QueryBuilder::<D>::new(format!(
                        "SELECT {COLUMNS} FROM {table} WHERE id IN "
                    ));
                    push_list(&mut q, chunk.iter().copied());
                    statements.push(q);
                }
            }
            DeadSelection::Matching(filter) => {
                let mut q = QueryBuilder::<D>::new(format!(
                    "SELECT {COLUMNS} FROM {table} WHERE status = 'dead'"
                ));
                Self::push_filter(&mut q, filter);
                statements.push(q);
            }
        }
        let mut out = Vec::new();
        for mut q in statements {
            q.push(" ORDER BY id").push(D::ROW_LOCK);
            for r in q
                .build()
                .fetch_all(&mut *conn)
                .await
                .map_err(db("lock dead rows"))?
            {
                out.push(Candidate {
                    id: r.try_get(0).map_err(db("decode dead rows"))?,
                    status: r.try_get::<Option<String>, _>(1).ok().flatten(),
                    biz_type: r.try_get(2).unwrap_or_default(),
                    retry_count: r.try_get(3).unwrap_or_default(),
                    last_error: r.try_get::<Option<String>, _>(4).ok().flatten(),
                });
            }
        }
        Ok(out)
    }

    /// Requeues or purges the selected dead rows in one write transaction, recording one
    /// action row per row changed.
    pub(super) async fn act_on_dead(
        &self,
        table: &str,
        selection: &DeadSelection,
        action: &DeadAction,
        op: DeadOp,
    ) -> StoreResult<DeadChange> {
        let mut tx = self.begin_write("begin dead-letter action").await?;
        // A database `migrate` has not brought to this version fails here, before any row is
        // locked, with the database's "no such table" (the CLI says to migrate).
        sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {DEAD_LETTER_ACTIONS} WHERE 1 = 0"
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("read the dead-letter actions table"))?;
        let candidates = Self::lock_candidates(&mut tx, table, selection).await?;
        if let DeadSelection::Ids(ids) = selection {
            let mut refused: Vec<(i64, Option<String>)> = Vec::new();
            for id in ids {
                match candidates.iter().find(|c| c.id == *id) {
                    Some(c) if c.status.as_deref() == Some("dead") => {}
                    Some(c) => refused.push((*id, Some(c.status.clone().unwrap_or_default()))),
                    None => refused.push((*id, None)),
                }
            }
            if !refused.is_empty() {
                refused.sort();
                refused.dedup();
                return Ok(DeadChange::NotDead(refused)); // dropped: rolled back
            }
        }
        let rows: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.status.as_deref() == Some("dead"))
            .collect();
        if rows.is_empty() {
            return Ok(DeadChange::Done(Vec::new()));
        }
        let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
        for chunk in ids.chunks(D::IDS_PER_LIST) {
            let mut q = match op {
                DeadOp::Requeue => {
                    let mut q = QueryBuilder::<D>::new(format!(
                        "UPDATE {table} SET status = 'pending', retry_count = 0, \
                         last_error = NULL, next_retry_at = "
                    ));
                    q.push_bind(action.at)
                        .push(", updated_at = ")
                        .push_bind(action.at);
                    q
                }
                DeadOp::Purge => QueryBuilder::<D>::new(format!("DELETE FROM {table}")),
            };
            q.push(" WHERE status = 'dead' AND id IN ");
            push_list(&mut q, chunk.iter().copied());
            q.build().execute(&mut *tx).await.map_err(db(match op {
                DeadOp::Requeue => "requeue dead rows",
                DeadOp::Purge => "purge dead rows",
            }))?;
        }
        let actor = cut(&action.actor, MAX_ACTOR_BYTES).to_owned();
        let note = cut_reason(&action.note);
        for chunk in rows.chunks(D::ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<D>::new(format!(
                "INSERT INTO {DEAD_LETTER_ACTIONS} (action, service, table_name, row_id, \
                 biz_type, retry_count, last_error, actor, note, acted_at) "
            ));
            q.push_values(chunk, |mut b, c| {
                b.push_bind(op.as_str().to_owned())
                    .push_bind(action.service.clone())
                    .push_bind(table.to_owned())
                    .push_bind(c.id)
                    .push_bind(c.biz_type.clone())
                    .push_bind(c.retry_count);
                match &c.last_error {
                    Some(e) => b.push_bind(e.clone()),
                    None => b.push("NULL"),
                };
                b.push_bind(actor.clone())
                    .push_bind(note.clone())
                    .push_bind(action.at);
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(db("record dead-letter actions"))?;
        }
        tx.commit().await.map_err(db("commit dead-letter action"))?;
        Ok(DeadChange::Done(
            rows.into_iter()
                .map(|c| ActedRow {
                    id: c.id,
                    biz_type: c.biz_type.clone(),
                })
                .collect(),
        ))
    }
}
