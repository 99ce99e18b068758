//! The consume transaction, written once for every backend: outcomes, state writes and new
//! rows of one batch, and the failed-attempt rule.
//!
//! It runs in a write transaction begun by [`Dialect::begin_write`]. The batch's rows are
//! locked with [`Dialect::ROW_LOCK`] (`FOR UPDATE` on the servers, in primary-key order so two
//! hosts applying overlapping batches queue up instead of deadlocking; SQLite already holds
//! its write lock) before their status is re-read; a row another host or an earlier attempt
//! already made final is skipped with its effects.

use super::{Dialect, SqlStore, push_list};
use crate::store::{
    ApplyReport, Backoff, BatchOutcomes, RowOutcome, RowState, Status, StoreResult, Timestamp, db,
    later,
};
use crate::text::cut_reason;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};
use std::collections::BTreeMap;
use std::time::Duration;

/// A row's state with its own attempt ceiling (SmartFlow's per-row `max_retry` column).
#[derive(Debug, Clone, Copy)]
pub(super) struct Locked {
    pub state: RowState,
    pub max_attempts: i32,
}

/// What one group of failed attempts writes: `retry_count`, whether the rows go dead,
/// `last_error`, and the delay until `next_retry_at` (unused for dead rows).
type FailureKey = (i32, bool, String, Duration);

/// Failed attempts grouped by what they write, so a batch of failures with the same reason is
/// one UPDATE rather than one per row.
type FailureGroups = BTreeMap<FailureKey, Vec<i64>>;

/// One failed attempt of a locked row, SmartFlow's way: `retry_count+1`, then dead at
/// `max_attempts` ("retries exhausted after N attempts: reason", cut to 2,000 bytes), else
/// pending after the backoff (or the handler's longer `hint`, see [`Backoff::delay_with`]).
/// Returns whether the row goes dead; a final row is left alone.
fn plan_failure(
    groups: &mut FailureGroups,
    (id, row): (i64, Locked),
    reason: &str,
    (policy, hint): (&Backoff, Option<Duration>),
) -> bool {
    if row.state.status.is_final() {
        return false;
    }
    let failures = row.state.retry_count.saturating_add(1);
    let dead = failures >= row.max_attempts;
    let delay = if dead {
        Duration::ZERO
    } else {
        policy.delay_with(failures as u32, hint)
    };
    let error = if dead {
        cut_reason(&format!(
            "retries exhausted after {failures} attempts: {}",
            cut_reason(reason)
        ))
    } else {
        cut_reason(reason)
    };
    groups
        .entry((failures, dead, error, delay))
        .or_default()
        .push(id);
    dead
}

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
    /// States of `ids` in `table` on the caller's connection; `lock` takes their row locks.
    pub(super) async fn read_row_states(
        conn: &mut D::Connection,
        table: &str,
        ids: &[i64],
        lock: bool,
    ) -> StoreResult<BTreeMap<i64, Locked>> {
        let mut out = BTreeMap::new();
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for chunk in sorted.chunks(D::IDS_PER_LIST) {
            let mut q = QueryBuilder::<D>::new(format!(
                "SELECT id, status, retry_count, max_retry, chain_depth FROM {table} WHERE id IN "
            ));
            push_list(&mut q, chunk.iter().copied());
            q.push(" ORDER BY id");
            if lock {
                q.push(D::ROW_LOCK);
            }
            for r in q
                .build()
                .fetch_all(&mut *conn)
                .await
                .map_err(db("read row statuses"))?
            {
                let decode = db("decode row status");
                // An unknown or unreadable status written by someone else is treated as final:
                // never touch it.
                let status = r
                    .try_get::<String, _>(1)
                    .ok()
                    .and_then(|s| Status::parse(&s))
                    .unwrap_or(Status::Dead);
                out.insert(
                    r.try_get::<i64, _>(0).map_err(decode)?,
                    Locked {
                        state: RowState {
                            status,
                            retry_count: r.try_get(2).map_err(db("decode retry_count"))?,
                            chain_depth: r.try_get(4).map_err(db("decode chain_depth"))?,
                        },
                        max_attempts: r.try_get(3).map_err(db("decode max_retry"))?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Failed attempts of rows the caller has NOT locked yet: locks them, then records them.
    /// Returns how many ended dead.
    pub(super) async fn fail_many(
        conn: &mut D::Connection,
        table: &str,
        failures: &[(i64, String)],
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let ids: Vec<i64> = failures.iter().map(|(id, _)| *id).collect();
        let states = Self::read_row_states(conn, table, &ids, true).await?;
        let mut groups = FailureGroups::new();
        let mut dead = 0;
        for (id, reason) in failures {
            if let Some(row) = states.get(id)
                && plan_failure(&mut groups, (*id, *row), reason, (policy, None))
            {
                dead += 1;
            }
        }
        Self::write_failures(conn, table, groups, now).await?;
        Ok(dead)
    }

    /// Writes planned failures: one UPDATE per group (and per [`Dialect::IDS_PER_LIST`] ids).
    async fn write_failures(
        conn: &mut D::Connection,
        table: &str,
        groups: FailureGroups,
        now: Timestamp,
    ) -> StoreResult<()> {
        for (key, ids) in groups {
            for chunk in ids.chunks(D::IDS_PER_LIST) {
                Self::write_failure(conn, table, &key, chunk, now).await?;
            }
        }
        Ok(())
    }

    /// One UPDATE of a failure group on `ids`. A dead row keeps its `next_retry_at` (when it
    /// was last due; the seed is silent, see docs/smartflow.md, "Row columns").
    async fn write_failure(
        conn: &mut D::Connection,
        table: &str,
        (failures, dead, error, delay): &FailureKey,
        ids: &[i64],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut q = QueryBuilder::<D>::new(format!("UPDATE {table} SET retry_count = "));
        q.push_bind(*failures);
        if *dead {
            q.push(", status = 'dead'");
        } else {
            q.push(", status = 'pending', next_retry_at = ")
                .push_bind(later(now, *delay));
        }
        q.push(", last_error = ")
            .push_bind(error.to_owned())
            .push(", updated_at = ")
            .push_bind(now);
        Self::run_for_ids(conn, q, ids, "record failed attempts").await
    }

    /// Appends ` WHERE id IN (...)` binding `ids` to an UPDATE and runs it.
    async fn run_for_ids(
        conn: &mut D::Connection,
        mut q: QueryBuilder<D>,
        ids: &[i64],
        op: &'static str,
    ) -> StoreResult<()> {
        q.push(" WHERE id IN ");
        push_list(&mut q, ids.iter().copied());
        q.build().execute(&mut *conn).await.map_err(db(op))?;
        Ok(())
    }

    /// Applies a batch inside the caller's transaction.
    pub(super) async fn apply_batch(
        conn: &mut D::Connection,
        table: &str,
        batch: &BatchOutcomes,
        policy: &Backoff,
        now: Timestamp,
    ) -> StoreResult<ApplyReport> {
        let ids: Vec<i64> = batch.rows.iter().map(|(id, _)| *id).collect();
        let current = Self::read_row_states(conn, table, &ids, true).await?;
        let mut report = ApplyReport::default();
        // Final value per key, in batch order: later events overwrite earlier ones.
        let mut writes: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
        let mut new_rows = Vec::new();
        let mut consumed: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        let mut dead: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut failed = FailureGroups::new();
        for (id, outcome) in &batch.rows {
            let state = match current.get(id) {
                Some(s) if !s.state.status.is_final() => *s,
                _ => {
                    report.skipped += 1;
                    continue;
                }
            };
            match outcome {
                RowOutcome::Consumed { version, effects } => {
                    for (k, v) in &effects.state_writes {
                        writes.insert(k, v.as_deref());
                    }
                    new_rows.extend(effects.new_rows.iter().cloned());
                    consumed.entry(&**version).or_default().push(*id);
                    report.consumed += 1;
                }
                RowOutcome::Retry { reason, delay } => {
                    if plan_failure(&mut failed, (*id, state), reason, (policy, *delay)) {
                        report.dead += 1;
                    } else {
                        report.retried += 1;
                    }
                }
                RowOutcome::Dead { reason } => {
                    dead.entry(cut_reason(reason)).or_default().push(*id);
                    report.dead += 1;
                }
            }
        }
        Self::write_failures(conn, table, failed, now).await?;
        for (reason, ids) in &dead {
            for chunk in ids.chunks(D::IDS_PER_LIST) {
                let mut q = QueryBuilder::<D>::new(format!(
                    "UPDATE {table} SET status = 'dead', last_error = "
                ));
                q.push_bind(reason.clone())
                    .push(", updated_at = ")
                    .push_bind(now);
                Self::run_for_ids(conn, q, chunk, "mark dead").await?;
            }
        }
        for (version, ids) in consumed {
            for chunk in ids.chunks(D::IDS_PER_LIST) {
                // A consumed row carries no error: an earlier attempt's `last_error` is cleared;
                // `next_retry_at` keeps when it was last due (the seed is silent on both: the
                // decision is in docs/smartflow.md, "Row columns").
                let mut q = QueryBuilder::<D>::new(format!(
                    "UPDATE {table} SET status = 'consumed', last_error = NULL, consumed_at = "
                ));
                q.push_bind(now)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(", handler_version = ")
                    .push_bind(version.to_owned());
                Self::run_for_ids(conn, q, chunk, "mark consumed").await?;
            }
        }
        Self::write_state(conn, &batch.service, &writes, now).await?;
        if !new_rows.is_empty() {
            D::insert_rows(conn, &new_rows, now).await?;
            for e in &new_rows {
                *report.emitted.entry(e.table.clone()).or_default() += 1;
            }
        }
        Ok(report)
    }

    async fn write_state(
        conn: &mut D::Connection,
        service: &str,
        writes: &BTreeMap<&str, Option<&[u8]>>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (sets, deletes) = crate::store::split_writes(writes);
        for chunk in
            super::insert::chunks_within(&sets, D::ROWS_PER_INSERT, |(k, v)| k.len() + v.len())
        {
            let mut q = QueryBuilder::<D>::new(
                "INSERT INTO switchyard_state (service, state_key, value, updated_at) ",
            );
            q.push_values(chunk, |mut b, (k, v)| {
                b.push_bind(service.to_owned())
                    .push_bind((*k).to_owned())
                    .push_bind(v.to_vec())
                    .push_bind(now);
            });
            q.push(D::UPSERT_STATE);
            q.build()
                .execute(&mut *conn)
                .await
                .map_err(db("write state"))?;
        }
        for chunk in deletes.chunks(D::IDS_PER_LIST) {
            let mut q = QueryBuilder::<D>::new("DELETE FROM switchyard_state WHERE service = ");
            q.push_bind(service.to_owned()).push(" AND state_key IN ");
            push_list(&mut q, chunk.iter().map(|k| (*k).to_owned()));
            q.build()
                .execute(&mut *conn)
                .await
                .map_err(db("delete state"))?;
        }
        Ok(())
    }
}
