//! A handler's statement on MySQL/MariaDB. RFC 3339 text bound to a datetime column binds as a
//! UTC `DATETIME` (the server refuses `2026-12-02T06:00:00Z` there; sessions run in UTC): the
//! column is the one the statement names for the placeholder (`runtime::sql_targets`), its type
//! from the server's catalog. Anywhere else the text stays text. Values read back by the column's type:
//! datetimes as UTC RFC 3339, `TINYINT(1)` as a boolean, an unsigned integer past `i64` and a
//! `DECIMAL` as text.

use crate::handler_sql::{
    RowAllowance, SqlFailure, SqlOutput, SqlStatement, SqlValue, format_naive, rfc3339,
};
use crate::store::sql::handler_sql::{ColumnKinds, classify, column_names, read_rows};
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::{Arguments, AssertSqlSafe, MySql, MySqlConnection, Row, TypeInfo, ValueRef};
use time::{Date, PrimitiveDateTime, Time, UtcOffset};

pub(super) async fn run(
    conn: &mut MySqlConnection,
    statement: SqlStatement<'_>,
    allowance: RowAllowance,
    columns: &ColumnKinds,
) -> Result<SqlOutput, SqlFailure> {
    let mut args = MySqlArguments::default();
    for (n, p) in statement.params.iter().enumerate() {
        let added = match p {
            SqlValue::Null => args.add(None::<String>),
            SqlValue::Bool(b) => args.add(*b),
            SqlValue::Int(i) => args.add(*i),
            SqlValue::Float(f) => args.add(*f),
            SqlValue::Text(s) => match rfc3339(s) {
                Some(at) if datetime_target(conn, statement.targets.get(n), columns).await? => {
                    let utc = at.to_offset(UtcOffset::UTC);
                    args.add(PrimitiveDateTime::new(utc.date(), utc.time()))
                }
                _ => args.add(s.as_str()),
            },
            SqlValue::Bytes(b) => args.add(b.as_slice()),
        };
        added.map_err(|e| SqlFailure::Statement(format!("cannot bind a parameter: {e}")))?;
    }
    let query = sqlx::query_with(AssertSqlSafe(statement.sql.to_owned()), args);
    if statement.writes {
        let done = query.execute(&mut *conn).await.map_err(classify)?;
        return Ok(SqlOutput::Changed(done.rows_affected()));
    }
    let columns = column_names::<sqlx::MySql>(conn, statement.sql).await?;
    read_rows(columns, query.fetch(&mut *conn), allowance, value).await
}

/// Whether a parameter goes to a datetime column (`DATETIME`, `TIMESTAMP`, `DATE`): asked of
/// the server's catalog once per column. A parameter whose column the statement does not name
/// plainly is not one (its RFC 3339 text stays text).
async fn datetime_target(
    conn: &mut MySqlConnection,
    target: Option<&Option<(String, String)>>,
    columns: &ColumnKinds,
) -> Result<bool, SqlFailure> {
    let Some(Some((table, column))) = target else {
        return Ok(false);
    };
    if let Some(known) = columns.datetime(table, column) {
        return Ok(known);
    }
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?",
    )
    .bind(table)
    .bind(column)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    let datetime = kind
        .is_some_and(|k| matches!(k.to_lowercase().as_str(), "datetime" | "timestamp" | "date"));
    columns.remember(table, column, datetime);
    Ok(datetime)
}

fn value(row: &MySqlRow, i: usize) -> Result<SqlValue, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let info = raw.type_info();
    let e = |e: sqlx::Error| e.to_string();
    Ok(match info.name() {
        "BOOLEAN" => SqlValue::Bool(row.try_get_unchecked::<bool, _>(i).map_err(e)?),
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" | "TINYINT UNSIGNED"
        | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED" => {
            SqlValue::Int(row.try_get_unchecked::<i64, _>(i).map_err(e)?)
        }
        "BIGINT UNSIGNED" => {
            let n = row.try_get_unchecked::<u64, _>(i).map_err(e)?;
            i64::try_from(n).map_or_else(|_| SqlValue::Text(n.to_string()), SqlValue::Int)
        }
        "FLOAT" => SqlValue::Float(f64::from(row.try_get_unchecked::<f32, _>(i).map_err(e)?)),
        "DOUBLE" => SqlValue::Float(row.try_get_unchecked::<f64, _>(i).map_err(e)?),
        "DATETIME" | "TIMESTAMP" => SqlValue::Text(format_naive(
            row.try_get_unchecked::<PrimitiveDateTime, _>(i)
                .map_err(e)?,
        )),
        "DATE" => SqlValue::Text(row.try_get_unchecked::<Date, _>(i).map_err(e)?.to_string()),
        "TIME" => SqlValue::Text(row.try_get_unchecked::<Time, _>(i).map_err(e)?.to_string()),
        // A `_bin` collation marks a text column binary too: its charset (not `binary`) tells.
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB"
            if <String as sqlx::Type<MySql>>::compatible(info.as_ref()) =>
        {
            SqlValue::Text(row.try_get_unchecked::<String, _>(i).map_err(e)?)
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT"
        | "GEOMETRY" => SqlValue::Bytes(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(e)?),
        // Text, DECIMAL, JSON, ENUM, SET: sent as text.
        _ => SqlValue::Text(row.try_get_unchecked::<String, _>(i).map_err(e)?),
    })
}
