//! Issue 13's speed scenario: a handler doing one INSERT and one UPDATE per event through the
//! `sql` import (the `sql_probe` test component, each event's payload listing the two
//! statements), against the same two statements done natively by the raw loop, batched the same
//! way (one transaction per batch of 500, each statement on its own), in the same run.

use crate::host::{BenchHost, Mode, drive};
use crate::raw::{self, Work};
use crate::{Db, Figures, Transport, component};
use serde_json::json;
use sqlx::Connection;

/// Rows of `bench_totals`: event `i` updates row `i % TOTALS`.
pub const TOTALS: i64 = 16;

/// The business tables both sides write (the host never creates them: a user's DDL).
///
/// # Errors
/// The database refuses the DDL.
pub async fn create_tables(db: Db, url: &str) -> anyhow::Result<()> {
    let totals: Vec<String> = (0..TOTALS).map(|i| format!("({i}, 0)")).collect();
    let statements = [
        "CREATE TABLE bench_items (id BIGINT PRIMARY KEY, qty BIGINT NOT NULL)".to_owned(),
        "CREATE TABLE bench_totals (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)".to_owned(),
        format!(
            "INSERT INTO bench_totals (id, n) VALUES {}",
            totals.join(", ")
        ),
    ];
    for s in statements {
        let s = sqlx::AssertSqlSafe(s);
        match db {
            Db::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(url).await?;
                sqlx::raw_sql(s).execute(&mut c).await?;
            }
            Db::Mariadb => {
                let mut c = sqlx::MySqlConnection::connect(url).await?;
                sqlx::raw_sql(s).execute(&mut c).await?;
            }
            Db::Postgres => {
                let mut c = sqlx::PgConnection::connect(url).await?;
                sqlx::raw_sql(s).execute(&mut c).await?;
            }
        }
    }
    Ok(())
}

/// Event `k`'s script for the `sql_probe` component: the same two statements as the raw loop's
/// [`Work::Sql`].
fn payload(k: usize) -> serde_json::Value {
    let k = k as i64;
    json!({"steps": [
        {"execute": "INSERT INTO bench_items (id, qty) VALUES (?, 1)", "params": [k]},
        {"execute": "UPDATE bench_totals SET n = n + 1 WHERE id = ?", "params": [k % TOTALS]},
    ]})
}

/// # Errors
/// Database, broker or component failures, named.
pub async fn sql(db: Db, transport: Transport, events: usize) -> anyhow::Result<()> {
    let (d, t) = (crate::db_name(db), crate::tr_name(transport));
    let cmd = format!("switchyard-bench sql --db {d} --transport {t} --events {events}");
    let state = raw::run_work(
        db,
        transport,
        events,
        Work::State,
        &format!("raw limit {d}+{t}"),
    )
    .await?;
    let native = raw::run_work(
        db,
        transport,
        events,
        Work::Sql,
        &format!("native INSERT + UPDATE per event {d}+{t}"),
    )
    .await?;
    // The bench's one route grants the bench tables (`host::config_text`).
    let bh = BenchHost::start(
        db,
        transport,
        Mode::Default,
        &component("sql_probe")?,
        false,
    )
    .await?;
    create_tables(db, &bh.db.url).await?;
    let handler: Figures = drive(
        bh,
        events,
        payload,
        true,
        &format!("switchyard sql handler INSERT + UPDATE {d}+{t}"),
    )
    .await?;
    crate::print_header(&cmd);
    state.print(None);
    native.print(Some(&state));
    handler.print(Some(&native));
    Ok(())
}
