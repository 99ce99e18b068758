//! Outbox-table migrations of a [`SqlStore`]: each service's table gets the templates of
//! [`Dialect::OUTBOX_TEMPLATES`] it has not had yet, recorded in
//! `switchyard_outbox_migrations`. Only ever adds: it must never rename, alter or drop what a
//! table already has.

use super::{Dialect, SqlStore};
use crate::catalog::Service;
use crate::store::template::{Step, steps};
use crate::store::{StoreError, StoreResult, Timestamp, db};
use sqlx::{
    AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type,
};
use std::collections::BTreeMap;
use std::sync::Arc;

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    i64: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    String: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D>,
{
    /// Applies the outbox templates each service's table has not had yet.
    pub(super) async fn migrate_outbox_tables(&self, services: &[Arc<Service>]) -> StoreResult<()> {
        // Each step is guarded by a check of what exists rather than by a transaction (DDL
        // commits implicitly in MySQL), so an interrupted migration resumes where it stopped,
        // and a table SmartFlow (or an earlier run) created is only ever added to.
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("acquire connection"))?;
        for service in services {
            let table = &service.table;
            let mut q = QueryBuilder::<D>::new(
                "SELECT version FROM switchyard_outbox_migrations WHERE table_name = ",
            );
            q.push_bind(table.clone());
            let applied: Vec<i64> = q
                .build_query_scalar()
                .fetch_all(&mut *conn)
                .await
                .map_err(db("read outbox migrations"))?;
            for (version, template) in D::OUTBOX_TEMPLATES {
                if applied.contains(version) {
                    continue;
                }
                for step in steps(&template.replace("{table}", table)) {
                    let sql = match step {
                        Step::AddColumn { column, sql } => {
                            if Self::has_column(&mut conn, table, &column).await? {
                                continue;
                            }
                            sql
                        }
                        Step::AddIndex { columns, sql } => {
                            if Self::has_index(&mut conn, table, &columns).await? {
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
                sqlx::query(D::RECORD_MIGRATION)
                    .bind(table.clone())
                    .bind(*version)
                    .bind(crate::store::now())
                    .execute(&mut *conn)
                    .await
                    .map_err(db("record outbox migration"))?;
            }
        }
        Ok(())
    }

    /// Whether `table` has a column named `column`.
    async fn has_column(conn: &mut D::Connection, table: &str, column: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(D::HAS_COLUMN)
            .bind(table.to_owned())
            .bind(column.to_owned())
            .fetch_one(&mut *conn)
            .await
            .map_err(db("read information_schema.columns"))?;
        Ok(n > 0)
    }

    /// Whether `table` has an index on exactly `columns`, in that order (whatever its name).
    async fn has_index(
        conn: &mut D::Connection,
        table: &str,
        columns: &[String],
    ) -> StoreResult<bool> {
        let rows = sqlx::query(D::INDEX_COLUMNS)
            .bind(table.to_owned())
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
}
