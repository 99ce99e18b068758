//! Schema on SQLite: the host tables (`sqlx::migrate!`) and, per service, the outbox-table
//! templates recorded in `switchyard_outbox_migrations`. Only ever adds: it must never rename,
//! alter or drop what a table already has.

use crate::store::{StoreError, StoreResult, db};
use sqlx::{AssertSqlSafe, Connection, SqlitePool};

/// Templates applied to every service's outbox table, in order; `{table}` is replaced by the
/// validated table name. Append only: an applied version is never edited.
const OUTBOX_TEMPLATES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../../migrations/sqlite/outbox/0001_smartflow_table.sql"),
    ),
    (
        2,
        include_str!("../../../../migrations/sqlite/outbox/0002_switchyard_columns.sql"),
    ),
    (
        3,
        include_str!("../../../../migrations/sqlite/outbox/0003_publish_count.sql"),
    ),
    (
        4,
        include_str!("../../../../migrations/sqlite/outbox/0004_chain_depth.sql"),
    ),
    (
        5,
        include_str!("../../../../migrations/sqlite/outbox/0005_traceparent.sql"),
    ),
];

/// Creates or upgrades the host tables and each outbox table. SQLite's DDL is transactional:
/// each table's missing templates are applied in one `BEGIN IMMEDIATE` transaction, so a
/// second process migrating at the same time waits, then finds them recorded.
pub(super) async fn run(pool: &SqlitePool, tables: &[String]) -> StoreResult<()> {
    sqlx::migrate!("../migrations/sqlite")
        .run(pool)
        .await
        .map_err(|e| StoreError::Migrate {
            target: "host tables".into(),
            source: e.into(),
        })?;
    let mut conn = pool.acquire().await.map_err(db("acquire connection"))?;
    for table in tables {
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin migrate"))?;
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM switchyard_outbox_migrations WHERE table_name = ?",
        )
        .bind(table)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("read outbox migrations"))?;
        for (version, template) in OUTBOX_TEMPLATES {
            if applied.contains(version) {
                continue;
            }
            let sql = template.replace("{table}", table);
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(|source| StoreError::Migrate {
                    target: format!("{table} v{version}"),
                    source,
                })?;
            sqlx::query("INSERT INTO switchyard_outbox_migrations (table_name, version, applied_at) VALUES (?, ?, ?)")
                .bind(table)
                .bind(version)
                .bind(crate::store::now())
                .execute(&mut *tx)
                .await
                .map_err(db("record outbox migration"))?;
        }
        tx.commit().await.map_err(db("commit migrate"))?;
    }
    Ok(())
}
