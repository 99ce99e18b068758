//! Running a handler's checked statement (the `sql` import) on the batch's consume
//! transaction: the invocation's savepoint, reading a SELECT's rows within the invocation's
//! allowance, and sorting a failure into what the host does about it ([`SqlFailure`]).
//!
//! Per backend ([`Dialect::run_handler_sql`]): binding values (PostgreSQL binds by the types the
//! server infers; MySQL binds RFC 3339 text as a DATETIME) and reading them back.

use crate::handler_sql::{RowAllowance, SqlFailure, SqlOutput, SqlValue};
use futures::TryStreamExt;
use sqlx::error::ErrorKind;
use sqlx::{AssertSqlSafe, Column, Database, Executor, Row, SqlSafeStr, Statement};

/// The statements of one savepoint (the same on the three backends).
pub(crate) struct SavepointSql {
    pub take: &'static str,
    pub release: &'static str,
    /// Undoes what ran since `take` and ends the savepoint, in one round trip.
    pub roll_back_and_release: &'static str,
}

/// The savepoint of the invocation whose statements are running.
pub(crate) const INVOCATION_SAVEPOINT: SavepointSql = SavepointSql {
    take: "SAVEPOINT switchyard_invocation",
    release: "RELEASE SAVEPOINT switchyard_invocation",
    roll_back_and_release: "ROLLBACK TO SAVEPOINT switchyard_invocation; \
                            RELEASE SAVEPOINT switchyard_invocation",
};

/// The savepoint around one write on a backend where a failed statement aborts the whole
/// transaction (PostgreSQL), so a constraint error undoes only that statement.
pub(crate) const STATEMENT_SAVEPOINT: SavepointSql = SavepointSql {
    take: "SAVEPOINT switchyard_statement",
    release: "RELEASE SAVEPOINT switchyard_statement",
    roll_back_and_release: "ROLLBACK TO SAVEPOINT switchyard_statement; \
                            RELEASE SAVEPOINT switchyard_statement",
};

/// Which (table, column) pairs are datetime columns, as the server's catalog said, remembered
/// for the life of the store (MySQL binds RFC 3339 text by it; a column altered later keeps its
/// first answer until the host restarts). Keyed table, then column, so a lookup (one per text
/// parameter of every statement) borrows the names instead of copying them.
#[derive(Debug, Default)]
pub struct ColumnKinds(std::sync::Mutex<ColumnsByTable>);

type ColumnsByTable = std::collections::HashMap<String, std::collections::HashMap<String, bool>>;

impl ColumnKinds {
    pub fn datetime(&self, table: &str, column: &str) -> Option<bool> {
        let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known.get(table)?.get(column).copied()
    }

    pub fn remember(&self, table: &str, column: &str, datetime: bool) {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry(table.to_owned())
            .or_default()
            .insert(column.to_owned(), datetime);
    }
}

/// A session setting that bounds how long the server runs one statement.
pub struct StatementLimit {
    /// The statement setting it, for a limit in milliseconds.
    pub set: fn(u64) -> String,
    /// The statement putting the session's default back when the transaction ends; `None`
    /// where the setting ends with the transaction anyway (PostgreSQL's `SET LOCAL`).
    pub reset: Option<&'static str>,
    /// The same limit as a prefix of each limited statement, where the server has one
    /// (MariaDB's `SET STATEMENT ... FOR`, used when the store found a MariaDB server): no round
    /// trip to set it, none to reset it, and nothing left on the session if the transaction is
    /// rolled back instead of committed.
    pub per_statement: Option<fn(u64) -> String>,
}

/// Sorts a database error: a constraint the handler can see, a statement stopped by the
/// invocation's statement limit, a transaction that can no longer be used (the batch runs
/// again), or a failure of this statement (the invocation is retried).
pub fn classify(error: sqlx::Error) -> SqlFailure {
    let sqlx::Error::Database(db) = &error else {
        // A lost connection, a pool or protocol error: the transaction is gone.
        return SqlFailure::Broken(error.to_string());
    };
    let message = db.message().to_owned();
    if stopped_by_the_statement_limit(db.as_ref()) {
        return SqlFailure::CutOff(message);
    }
    match db.kind() {
        ErrorKind::UniqueViolation
        | ErrorKind::ForeignKeyViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::CheckViolation => SqlFailure::Constraint(message),
        _ if crate::store::is_transient(db.as_ref()) => SqlFailure::Broken(message),
        _ => SqlFailure::Statement(message),
    }
}

/// Whether the server stopped a handler's statement at the limit the host set for its
/// invocation ([`StatementLimit`]): PostgreSQL's `statement_timeout` (57014 with that cause),
/// MySQL/MariaDB's `innodb_lock_wait_timeout` (error 1205, whose SQLSTATE `HY000` is shared, so
/// its message tells it). Transient errors elsewhere, but here the culprit is known: the
/// invocation that ran the statement, whose deadline it is.
pub(crate) fn stopped_by_the_statement_limit(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code().unwrap_or_default();
    (code == "57014" && db.message().contains("statement timeout"))
        || db.message().contains("Lock wait timeout")
}

/// Runs `sql` (a savepoint statement) on the transaction's connection.
pub(crate) async fn plain<'c, D: Database>(
    conn: &'c mut D::Connection,
    sql: &'static str,
) -> Result<(), SqlFailure>
where
    &'c mut D::Connection: Executor<'c, Database = D>,
{
    conn.execute(sql).await.map(|_| ()).map_err(classify)
}

/// The column names of a SELECT, from its prepared statement (sqlx keeps it in the
/// connection's statement cache, so the query that follows reuses it): a query returning no
/// rows still names its columns.
pub(crate) async fn column_names<'c, D: Database>(
    conn: &'c mut D::Connection,
    sql: &str,
) -> Result<Vec<String>, SqlFailure>
where
    &'c mut D::Connection: Executor<'c, Database = D>,
{
    let prepared = conn
        .prepare(AssertSqlSafe(sql.to_owned()).into_sql_str())
        .await
        .map_err(classify)?;
    Ok(prepared
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect())
}

/// Reads a SELECT's rows from `rows`, decoding each value with `value`, and stops with a budget
/// failure as soon as the rows or their bytes pass `allowance` (so a huge result is never held).
/// `columns` are the statement's column names ([`column_names`]).
pub(crate) async fn read_rows<R, S>(
    columns: Vec<String>,
    mut rows: S,
    allowance: RowAllowance,
    value: impl Fn(&R, usize) -> Result<SqlValue, String>,
) -> Result<SqlOutput, SqlFailure>
where
    R: Row,
    S: futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
{
    let (mut columns, mut out, mut bytes) = (columns, Vec::new(), 0usize);
    while let Some(row) = rows.try_next().await.map_err(classify)? {
        if columns.len() != row.columns().len() {
            columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
        }
        if out.len() as u64 >= allowance.rows {
            return Err(SqlFailure::Budget(format!(
                "the query returns more than the {} rows this invocation may still read \
                 (limits.max_sql_rows): add a LIMIT or a narrower WHERE",
                allowance.rows
            )));
        }
        let mut values = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            let v = value(&row, i)
                .map_err(|e| SqlFailure::Statement(format!("column {name} cannot be read: {e}")))?;
            bytes = bytes.saturating_add(v.size());
            values.push(v);
        }
        if bytes > allowance.bytes {
            return Err(SqlFailure::Budget(format!(
                "the query returns more than the {} bytes this invocation may still read \
                 (limits.max_sql_bytes): select fewer columns or rows",
                allowance.bytes
            )));
        }
        out.push(values);
    }
    Ok(SqlOutput::Rows {
        columns,
        rows: out,
        bytes,
    })
}
