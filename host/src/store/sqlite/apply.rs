//! The consume transaction on SQLite: outcomes, state writes and emits of one batch.

use crate::store::{
    AppliedBatch, ApplyReport, Backoff, RowOutcome, RowState, Status, StoreResult, Timestamp,
    cut_error, db, later,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, SqliteConnection};
use std::collections::BTreeMap;

/// States of `ids` in `table`, read on the caller's connection (inside its transaction).
pub(super) async fn row_states(
    conn: &mut SqliteConnection,
    table: &str,
    ids: &[i64],
) -> StoreResult<BTreeMap<i64, RowState>> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT id, status, retry_count FROM {table} WHERE id IN ("
        ));
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(")");
        for r in q
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(db("read row statuses"))?
        {
            let status: String = r.get(1);
            // An unknown status written by someone else is treated as final: never touch it.
            let status = Status::parse(&status).unwrap_or(Status::Dead);
            out.insert(
                r.get::<i64, _>(0),
                RowState {
                    status,
                    retry_count: r.get(2),
                },
            );
        }
    }
    Ok(out)
}

/// One failed attempt: SmartFlow's `retry_count+1`, then dead or pending after the backoff.
pub(super) async fn fail_one(
    conn: &mut SqliteConnection,
    table: &str,
    id: i64,
    reason: &str,
    policy: &Backoff,
    now: Timestamp,
) -> StoreResult<bool> {
    let sql = format!("SELECT retry_count, max_retry, status FROM {table} WHERE id = ?");
    let Some(row) = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("lock row"))?
    else {
        return Ok(false);
    };
    let status: String = row.get(2);
    if Status::parse(&status).is_none_or(Status::is_final) {
        return Ok(false);
    }
    let failures = row.get::<i32, _>(0).saturating_add(1);
    let max_retry: i32 = row.get(1);
    let error = cut_error(reason);
    if failures >= max_retry {
        let sql = format!(
            "UPDATE {table} SET status = 'dead', retry_count = ?, last_error = ?, updated_at = ? WHERE id = ?"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(failures)
            .bind(format!(
                "retries exhausted after {failures} attempts: {error}"
            ))
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db("mark dead after retries"))?;
        return Ok(true);
    }
    let next = later(now, policy.delay(failures as u32));
    let sql = format!(
        "UPDATE {table} SET status = 'pending', retry_count = ?, next_retry_at = ?, last_error = ?, \
         updated_at = ? WHERE id = ?"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(failures)
        .bind(next)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db("schedule retry"))?;
    Ok(false)
}

/// Applies a batch inside the caller's `BEGIN IMMEDIATE` transaction.
pub(super) async fn apply_batch(
    conn: &mut SqliteConnection,
    table: &str,
    batch: &AppliedBatch,
    policy: &Backoff,
    now: Timestamp,
) -> StoreResult<ApplyReport> {
    let ids: Vec<i64> = batch.rows.iter().map(|(id, _)| *id).collect();
    let current = row_states(conn, table, &ids).await?;
    let mut report = ApplyReport::default();
    // Final value per key, in batch order: later events overwrite earlier ones.
    let mut writes: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
    let mut emits = Vec::new();
    let mut consumed: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (id, outcome) in &batch.rows {
        match current.get(id) {
            Some(s) if !s.status.is_final() => {}
            _ => {
                report.skipped += 1;
                continue;
            }
        }
        match outcome {
            RowOutcome::Consumed { version, effects } => {
                for (k, v) in &effects.writes {
                    writes.insert(k, v.as_deref());
                }
                emits.extend(effects.emits.iter().cloned());
                consumed.entry(version.as_str()).or_default().push(*id);
                report.consumed += 1;
            }
            RowOutcome::Failed { reason } => {
                if fail_one(conn, table, *id, reason, policy, now).await? {
                    report.dead += 1;
                } else {
                    report.retried += 1;
                }
            }
            RowOutcome::Dead { reason } => {
                let sql = format!(
                    "UPDATE {table} SET status = 'dead', last_error = ?, updated_at = ? WHERE id = ?"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(cut_error(reason))
                    .bind(now)
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("mark dead"))?;
                report.dead += 1;
            }
        }
    }
    for (version, ids) in consumed {
        for chunk in ids.chunks(800) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "UPDATE {table} SET status = 'consumed', consumed_at = "
            ));
            q.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(", handler_version = ");
            q.push_bind(version.to_owned()).push(" WHERE id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            q.build()
                .execute(&mut *conn)
                .await
                .map_err(db("mark consumed"))?;
        }
    }
    write_state(conn, &batch.service, &writes, now).await?;
    if !emits.is_empty() {
        super::insert_rows(conn, &emits, now).await?;
        for e in &emits {
            *report.emitted.entry(e.table.clone()).or_default() += 1;
        }
    }
    Ok(report)
}

async fn write_state(
    conn: &mut SqliteConnection,
    service: &str,
    writes: &BTreeMap<&str, Option<&[u8]>>,
    now: Timestamp,
) -> StoreResult<()> {
    let (sets, deletes) = crate::store::split_writes(writes);
    for chunk in sets.chunks(200) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO switchyard_state (service, state_key, value, updated_at) ",
        );
        q.push_values(chunk, |mut b, (k, v)| {
            b.push_bind(service.to_owned())
                .push_bind((*k).to_owned())
                .push_bind(v.to_vec())
                .push_bind(now);
        });
        q.push(" ON CONFLICT (service, state_key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at");
        q.build()
            .execute(&mut *conn)
            .await
            .map_err(db("write state"))?;
    }
    for chunk in deletes.chunks(500) {
        let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM switchyard_state WHERE service = ");
        q.push_bind(service.to_owned()).push(" AND state_key IN (");
        let mut sep = q.separated(", ");
        for k in chunk {
            sep.push_bind((*k).to_owned());
        }
        q.push(")");
        q.build()
            .execute(&mut *conn)
            .await
            .map_err(db("delete state"))?;
    }
    Ok(())
}
