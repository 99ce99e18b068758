//! Outbox-table migrations on the servers (MySQL/MariaDB, PostgreSQL): each table gets the
//! templates of its backend's [`ServerSchema`] it has not had yet, recorded in
//! `switchyard_outbox_migrations`. Only ever adds: it must never alter or drop what a table
//! already has, and renames only indexes it created itself under names other than GORM's
//! (`Step::RenameIndex`, MySQL), so SmartFlow's AutoMigrate finds them by name. (SQLite, whose DDL is transactional, applies its templates its own way,
//! in `store/sqlite/migrate.rs`.)

use crate::store::template::{Step, steps};
use crate::store::{StoreError, StoreResult, Timestamp, db};
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool,
    QueryBuilder, Row, Type,
};
use std::collections::BTreeMap;

/// What the additive outbox migration needs to know of a server: its templates and how to
/// read its catalog. Each statement binds with the server's own placeholders.
pub(crate) struct ServerSchema {
    /// Outbox-table templates, in order; `{table}` is replaced by the validated table name.
    /// Append only: an applied version is never edited.
    pub templates: &'static [(i64, &'static str)],
    /// `COUNT(*)` of the columns named `$2` of table `$1`.
    pub has_column: &'static str,
    /// `(index name, column name)` of every index of table `$1`, columns in key order.
    pub index_columns: &'static str,
    /// Records `(table_name, version, applied_at)` in `switchyard_outbox_migrations`, doing
    /// nothing if it is already there.
    pub record_migration: &'static str,
}

/// Applies the outbox templates each table has not had yet.
///
/// # Errors
/// The failing statement, named by table and template version.
pub(crate) async fn outbox_tables<D: Database>(
    pool: &Pool<D>,
    tables: &[String],
    schema: &ServerSchema,
) -> StoreResult<()>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    i64: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    String: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
    Timestamp: Type<D> + for<'q> Encode<'q, D>,
{
    // Each step is guarded by a check of what exists rather than by a transaction (DDL
    // commits implicitly in MySQL), so an interrupted migration resumes where it stopped,
    // and a table SmartFlow (or an earlier run) created is only ever added to.
    let mut conn = pool.acquire().await.map_err(db("acquire connection"))?;
    for table in tables {
        let mut q = QueryBuilder::<D>::new(
            "SELECT version FROM switchyard_outbox_migrations WHERE table_name = ",
        );
        q.push_bind(table.clone());
        let applied: Vec<i64> = q
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(db("read outbox migrations"))?;
        for (version, template) in schema.templates {
            if applied.contains(version) {
                continue;
            }
            for step in steps(&template.replace("{table}", table)) {
                let sql = match step {
                    Step::AddColumn { column, sql } => {
                        if has_column::<D>(&mut conn, schema, table, &column).await? {
                            continue;
                        }
                        sql
                    }
                    Step::AddIndex { columns, sql } => {
                        let indexes = indexes::<D>(&mut conn, schema, table).await?;
                        if indexes.values().any(|cols| cols == &columns) {
                            continue;
                        }
                        sql
                    }
                    Step::RenameIndex { from, to, sql } => {
                        let indexes = indexes::<D>(&mut conn, schema, table).await?;
                        if !indexes.contains_key(&from) || indexes.contains_key(&to) {
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
            sqlx::query(schema.record_migration)
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
async fn has_column<D: Database>(
    conn: &mut D::Connection,
    schema: &ServerSchema,
    table: &str,
    column: &str,
) -> StoreResult<bool>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    i64: Type<D> + for<'r> Decode<'r, D>,
    String: Type<D> + for<'q> Encode<'q, D>,
{
    let n: i64 = sqlx::query_scalar(schema.has_column)
        .bind(table.to_owned())
        .bind(column.to_owned())
        .fetch_one(&mut *conn)
        .await
        .map_err(db("read information_schema.columns"))?;
    Ok(n > 0)
}

/// The indexes of `table`: name -> columns (lowercase, in key order).
async fn indexes<D: Database>(
    conn: &mut D::Connection,
    schema: &ServerSchema,
    table: &str,
) -> StoreResult<BTreeMap<String, Vec<String>>>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    usize: ColumnIndex<D::Row>,
    String: Type<D> + for<'q> Encode<'q, D> + for<'r> Decode<'r, D>,
{
    let rows = sqlx::query(schema.index_columns)
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
    Ok(indexes)
}
