//! A handler's statement on SQLite: values bind as they are (SQLite keeps datetimes as the text
//! it is given) and read back by each value's storage class.

use crate::handler_sql::{RowAllowance, SqlFailure, SqlOutput, SqlStatement, SqlValue};
use crate::store::sql::handler_sql::{classify, column_names, read_rows};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, AssertSqlSafe, Row, SqliteConnection, TypeInfo, ValueRef};

pub(super) async fn run(
    conn: &mut SqliteConnection,
    statement: SqlStatement<'_>,
    allowance: RowAllowance,
) -> Result<SqlOutput, SqlFailure> {
    let mut args = SqliteArguments::default();
    for p in statement.params {
        let added = match p {
            SqlValue::Null => args.add(None::<String>),
            SqlValue::Bool(b) => args.add(*b),
            SqlValue::Int(i) => args.add(*i),
            SqlValue::Float(f) => args.add(*f),
            SqlValue::Text(s) => args.add(s.as_str()),
            SqlValue::Bytes(b) => args.add(b.as_slice()),
        };
        added.map_err(|e| SqlFailure::Statement(format!("cannot bind a parameter: {e}")))?;
    }
    let query = sqlx::query_with(AssertSqlSafe(statement.sql.to_owned()), args);
    if statement.writes {
        let done = query.execute(&mut *conn).await.map_err(classify)?;
        return Ok(SqlOutput::Changed(done.rows_affected()));
    }
    let columns = column_names::<sqlx::Sqlite>(conn, statement.sql).await?;
    read_rows(columns, query.fetch(&mut *conn), allowance, value).await
}

/// A value by its storage class (SQLite's types belong to values, not columns).
fn value(row: &SqliteRow, i: usize) -> Result<SqlValue, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let info = raw.type_info();
    let decoded = match info.name() {
        "INTEGER" | "BOOLEAN" => row.try_get_unchecked::<i64, _>(i).map(SqlValue::Int),
        "REAL" => row.try_get_unchecked::<f64, _>(i).map(SqlValue::Float),
        "BLOB" => row.try_get_unchecked::<Vec<u8>, _>(i).map(SqlValue::Bytes),
        _ => row.try_get_unchecked::<String, _>(i).map(SqlValue::Text),
    };
    decoded.map_err(|e| e.to_string())
}
