//! Schema on PostgreSQL: the host tables (`sqlx::migrate!`) and, per service, the outbox-table
//! templates recorded in `switchyard_outbox_migrations`. Only ever adds: it must never rename,
//! alter or drop what a table already has.

use super::super::template::{Step, steps};
use crate::catalog::Service;
use crate::store::{StoreError, StoreResult, db};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Templates applied to every service's outbox table, in order; `{table}` is replaced by the
/// validated table name. Append only: an applied version is never edited.
const OUTBOX_TEMPLATES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../../migrations/postgres/outbox/0001_smartflow_table.sql"),
    ),
    (
        2,
        include_str!("../../../../migrations/postgres/outbox/0002_switchyard_columns.sql"),
    ),
];

/// Whether `table` has a column named `column`.
async fn has_column(conn: &mut PgConnection, table: &str, column: &str) -> StoreResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
    )
    .bind(table)
    .bind(column)
    .fetch_one(&mut *conn)
    .await
    .map_err(db("read information_schema.columns"))?;
    Ok(n > 0)
}

/// Whether `table` has an index on exactly `columns`, in that order (whatever its name).
async fn has_index(conn: &mut PgConnection, table: &str, columns: &[String]) -> StoreResult<bool> {
    let rows = sqlx::query(
        // information_schema has no indexes in PostgreSQL: read pg_index, columns in key order.
        "SELECT i.indexrelid::regclass::text, a.attname::text \
         FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = to_regclass($1) ORDER BY 1, k.ord",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("read information_schema.statistics"))?;
    let mut indexes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        indexes
            .entry(r.get::<String, _>(0))
            .or_default()
            .push(r.get::<String, _>(1).to_ascii_lowercase());
    }
    Ok(indexes.values().any(|cols| cols == columns))
}

/// Creates or upgrades the host tables and each service's outbox table.
pub(super) async fn run(pool: &PgPool, services: &[Arc<Service>]) -> StoreResult<()> {
    sqlx::migrate!("../migrations/postgres")
        .run(pool)
        .await
        .map_err(|e| StoreError::Migrate {
            target: "host tables".into(),
            source: e.into(),
        })?;
    // Each step is guarded by a check of what exists, so a table SmartFlow (or an earlier
    // run) created is only ever added to.
    let mut conn = pool.acquire().await.map_err(db("acquire connection"))?;
    for service in services {
        let table = &service.table;
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM switchyard_outbox_migrations WHERE table_name = $1",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("read outbox migrations"))?;
        for (version, template) in OUTBOX_TEMPLATES {
            if applied.contains(version) {
                continue;
            }
            for step in steps(&template.replace("{table}", table)) {
                let sql = match step {
                    Step::AddColumn { column, sql } => {
                        if has_column(&mut conn, table, &column).await? {
                            continue;
                        }
                        sql
                    }
                    Step::AddIndex { columns, sql } => {
                        if has_index(&mut conn, table, &columns).await? {
                            continue;
                        }
                        sql
                    }
                    Step::Plain { sql } => sql,
                };
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await
                    .map_err(|source| StoreError::Migrate {
                        target: format!("{table} v{version}"),
                        source,
                    })?;
            }
            sqlx::query(
                "INSERT INTO switchyard_outbox_migrations (table_name, version, applied_at) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(table)
            .bind(version)
            .bind(crate::store::now())
            .execute(&mut *conn)
            .await
            .map_err(db("record outbox migration"))?;
        }
    }
    Ok(())
}
