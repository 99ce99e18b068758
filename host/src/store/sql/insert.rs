//! Writing new `pending` outbox rows, shared by every dialect: the multi-row INSERTs, the
//! `RETURNING id` variant (SQLite, PostgreSQL; MySQL computes its ids in `mysql/mod.rs`), and
//! putting the ids back in the order of the rows given.

use super::Dialect;
use crate::store::{NewRow, StoreResult, Timestamp, db};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};
use std::collections::BTreeMap;

/// The multi-row INSERTs that write `rows` as new `pending` outbox rows: one per table and
/// chunk of at most `per_statement` rows, in table order and then row order, each with its
/// number of rows. The caller appends whatever its server needs to report the new ids.
pub(crate) fn insert_statements<D: Database>(
    rows: &[NewRow],
    now: Timestamp,
    per_statement: usize,
) -> Vec<(usize, QueryBuilder<D>)>
where
    i32: Type<D> + for<'q> Encode<'q, D>,
    String: Type<D> + for<'q> Encode<'q, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D>,
{
    let mut by_table: BTreeMap<&str, Vec<&NewRow>> = BTreeMap::new();
    for row in rows {
        by_table.entry(row.table.as_str()).or_default().push(row);
    }
    let mut statements = Vec::new();
    for (table, rows) in by_table {
        for chunk in chunks_within(&rows, per_statement, |r| {
            r.payload.len() + r.message_key.len()
        }) {
            let mut q = QueryBuilder::<D>::new(format!(
                "INSERT INTO {table} (biz_type, service_name, topic, message_key, payload, status, \
                 retry_count, max_retry, next_retry_at, created_at, updated_at, chain_depth, \
                 traceparent) "
            ));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.biz_type.clone())
                    .push_bind(r.service_name.clone())
                    .push_bind(r.topic.clone())
                    .push_bind(r.message_key.clone())
                    .push_bind(r.payload.clone())
                    .push_bind("pending".to_owned())
                    .push_bind(0i32)
                    .push_bind(r.max_attempts)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(r.chain_depth)
                    // NULL for no trace, without an `Option` bound on every caller's backend.
                    .push("NULLIF(")
                    .push_bind_unseparated(r.traceparent.clone().unwrap_or_default())
                    .push_unseparated(", '')");
            });
            statements.push((chunk.len(), q));
        }
    }
    statements
}

/// Bytes of bound values one multi-row statement may carry: far below MySQL's smallest default
/// `max_allowed_packet` (4 MiB before 8.0; MariaDB's is 16 MiB), so a batch of large payloads
/// is several statements instead of one the server refuses. A single row larger than this
/// still goes alone in its own statement.
pub(crate) const MAX_STATEMENT_BYTES: usize = 2 << 20;

/// `items` cut into consecutive chunks of at most `max_rows` items and, unless one item alone
/// is larger, at most [`MAX_STATEMENT_BYTES`] as measured by `size`.
pub(crate) fn chunks_within<T>(
    items: &[T],
    max_rows: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        let rows = i - start;
        if rows > 0 && (rows >= max_rows || bytes.saturating_add(n) > MAX_STATEMENT_BYTES) {
            chunks.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(n);
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    chunks
}

/// The ids of rows written by [`insert_statements`] (table order, then row order), put back in
/// the order of `rows`, so `ids[i]` is the id of `rows[i]` also when the rows span tables.
pub(crate) fn in_input_order(rows: &[NewRow], ids: Vec<i64>) -> Vec<i64> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    // Stable, like the grouping of `insert_statements`: by table, then in input order.
    order.sort_by(|&a, &b| rows[a].table.cmp(&rows[b].table));
    let mut out = vec![0; rows.len()];
    for (position, id) in order.into_iter().zip(ids) {
        out[position] = id;
    }
    out
}

/// Inserts `pending` rows with `INSERT ... RETURNING id` (SQLite, PostgreSQL) on a connection
/// the caller controls: one multi-row statement per table and chunk of
/// [`Dialect::ROWS_PER_INSERT`]; the ids in the order of `rows`.
pub(crate) async fn insert_returning<D: Dialect>(
    conn: &mut D::Connection,
    rows: &[NewRow],
    now: Timestamp,
) -> StoreResult<Vec<i64>>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    i32: Type<D> + for<'q> Encode<'q, D>,
    i64: Type<D> + for<'r> Decode<'r, D>,
    String: Type<D> + for<'q> Encode<'q, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D>,
{
    let mut ids = Vec::with_capacity(rows.len());
    for (_, mut q) in insert_statements::<D>(rows, now, D::ROWS_PER_INSERT) {
        q.push(" RETURNING id");
        let returned: Vec<i64> = q
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(db("insert outbox rows"))?;
        ids.extend(returned);
    }
    Ok(in_input_order(rows, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_cut_by_rows_and_by_bytes() {
        let sizes = [1usize, 1, 1, 1, 1];
        let by_rows = chunks_within(&sizes, 2, |n| *n);
        assert_eq!(
            by_rows.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        let big = [
            MAX_STATEMENT_BYTES / 2,
            MAX_STATEMENT_BYTES / 2,
            1,
            MAX_STATEMENT_BYTES * 3,
        ];
        let by_bytes = chunks_within(&big, 100, |n| *n);
        assert_eq!(
            by_bytes.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [2, 1, 1]
        );
        assert!(chunks_within(&[] as &[usize], 10, |n| *n).is_empty());
    }

    #[test]
    fn ids_of_rows_spanning_tables_come_back_in_input_order() {
        let row = |table: &str| NewRow {
            table: table.into(),
            biz_type: String::new(),
            service_name: String::new(),
            topic: String::new(),
            message_key: String::new(),
            payload: String::new(),
            max_attempts: 1,
            chain_depth: 0,
            traceparent: None,
        };
        let rows = [row("b"), row("a"), row("b"), row("a")];
        // Written a, a, b, b: ids 10, 11 in table a, 20, 21 in table b.
        assert_eq!(
            in_input_order(&rows, vec![10, 11, 20, 21]),
            [20, 10, 21, 11]
        );
    }
}
