//! The host's `sql` import (contract 0.2.0) made typed: parameters from plain Rust values, a
//! row read by column name whatever spelling each backend returns, and the host's errors as a
//! [`Failure`]. Statements use `?` placeholders and run unchanged on SQLite, MariaDB and
//! PostgreSQL; datetimes travel as RFC 3339 text (see `wit/handler.wit`).
//!
//! Error mapping, so that handler code only meets a constraint where it asked for one:
//! - [`insert`] and [`execute_or_conflict`] return a `constraint` error as a value (a unique
//!   key saying "already there"); only that statement was undone and the handler goes on.
//! - Every other error is [`Failure::Retry`] naming the statement's kind and the host's
//!   reason: a `database` error forces a retry anyway, and a `refused` statement or a spent
//!   `budget` comes from the route's grant or limits, which an operator can fix while the row
//!   waits (it still ends dead at `max_attempts`).

use crate::bindings::switchyard::handler::sql as host;
use crate::{Failure, HandlerResult as Step};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// A time as a datetime column takes it: RFC 3339 UTC with milliseconds (`DATETIME(3)`).
pub fn db_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at
        .replace_nanosecond(u32::from(at.millisecond()) * 1_000_000)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// A time read back from a datetime column: RFC 3339 (what the host returns), or the
/// `YYYY-MM-DD HH:MM:SS[.fff]` text a SQLite column may hold when something other than a
/// handler wrote it, taken as UTC.
pub fn parse_db_time(value: &str) -> Option<OffsetDateTime> {
    let value = value.trim();
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Some(t);
    }
    let plain = format_description!(
        version = 2,
        "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(value, &plain)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Text cut to at most 2,000 bytes on a character boundary (SmartFlow's `last_error` rule; the
/// host cuts reasons the same way): a database message can be long.
pub fn cut(text: &str) -> String {
    const MAX: usize = 2000;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A statement parameter or a returned column value (the contract's `value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

/// A time binds as RFC 3339 UTC text with milliseconds (the contract's datetime form).
impl From<OffsetDateTime> for Value {
    fn from(v: OffsetDateTime) -> Self {
        Value::Text(db_time(v))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    fn to_host(&self) -> host::Value {
        match self {
            Value::Null => host::Value::Null,
            Value::Bool(b) => host::Value::Boolean(*b),
            Value::Int(i) => host::Value::Integer(*i),
            Value::Real(r) => host::Value::Real(*r),
            Value::Text(t) => host::Value::Text(t.clone()),
            Value::Blob(b) => host::Value::Blob(b.clone()),
        }
    }

    fn from_host(v: host::Value) -> Value {
        match v {
            host::Value::Null => Value::Null,
            host::Value::Boolean(b) => Value::Bool(b),
            host::Value::Integer(i) => Value::Int(i),
            host::Value::Real(r) => Value::Real(r),
            host::Value::Text(t) => Value::Text(t),
            host::Value::Blob(b) => Value::Blob(b),
        }
    }
}

/// The rows of a query, with their column names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }
}

/// One row, read by column name (case-insensitive: PostgreSQL folds unquoted names).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Row<'_> {
    /// The value of `column`.
    ///
    /// # Errors
    /// Retry when the query did not select that column (a statement and its reader disagree).
    pub fn get(&self, column: &str) -> Step<&Value> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| Failure::Retry(format!("sql: the query returned no column {column}")))
    }

    fn wrong(column: &str, want: &str, got: &Value) -> Failure {
        Failure::Retry(format!(
            "sql: column {column} should be {want}, got {got:?}: does the table's DDL match \
             the statement?"
        ))
    }

    /// An integer column, or `None` for NULL. Backends differ in what an integer comes back
    /// as (a boolean from a `TINYINT(1)`, a whole real or decimal text from an aggregate), so
    /// all of those are accepted.
    ///
    /// # Errors
    /// Retry naming the column when it holds something else.
    pub fn opt_i64(&self, column: &str) -> Step<Option<i64>> {
        match self.get(column)? {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(*i)),
            Value::Bool(b) => Ok(Some(i64::from(*b))),
            #[allow(clippy::cast_possible_truncation, reason = "checked to be whole first")]
            Value::Real(r) if r.fract() == 0.0 && r.abs() < 9.0e15 => Ok(Some(*r as i64)),
            Value::Text(t) if t.trim().parse::<i64>().is_ok() => Ok(t.trim().parse().ok()),
            other => Err(Self::wrong(column, "an integer", other)),
        }
    }

    /// A NOT NULL integer column.
    ///
    /// # Errors
    /// Retry naming the column when it is NULL or not an integer.
    pub fn i64(&self, column: &str) -> Step<i64> {
        self.opt_i64(column)?
            .ok_or_else(|| Self::wrong(column, "an integer", &Value::Null))
    }

    /// A boolean column (a boolean, or 0/1 where the backend stores booleans as integers).
    ///
    /// # Errors
    /// Retry naming the column when it holds something else.
    pub fn bool(&self, column: &str) -> Step<bool> {
        match self.get(column)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(i) => Ok(*i != 0),
            other => Err(Self::wrong(column, "a boolean", other)),
        }
    }

    /// A text column, or `None` for NULL. UTF-8 bytes are text too: MariaDB reports a text
    /// column with a binary collation (`utf8mb4_bin`, which SmartFlow's DDL uses so keys
    /// compare byte for byte) as binary, and the host passes it on as a blob.
    ///
    /// # Errors
    /// Retry naming the column when it holds something else.
    pub fn opt_text(&self, column: &str) -> Step<Option<String>> {
        match self.get(column)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Int(i) => Ok(Some(i.to_string())),
            Value::Blob(b) => match std::str::from_utf8(b) {
                Ok(t) => Ok(Some(t.to_owned())),
                Err(_) => Err(Self::wrong(column, "text", &Value::Blob(b.clone()))),
            },
            other => Err(Self::wrong(column, "text", other)),
        }
    }

    /// A NOT NULL text column.
    ///
    /// # Errors
    /// Retry naming the column when it is NULL or not text.
    pub fn text(&self, column: &str) -> Step<String> {
        self.opt_text(column)?
            .ok_or_else(|| Self::wrong(column, "text", &Value::Null))
    }

    /// A datetime column (RFC 3339 text from the host), or `None` for NULL.
    ///
    /// # Errors
    /// Retry naming the column when it is not a time.
    pub fn opt_time(&self, column: &str) -> Step<Option<OffsetDateTime>> {
        match self.opt_text(column)? {
            None => Ok(None),
            Some(t) => parse_db_time(&t)
                .map(Some)
                .ok_or_else(|| Self::wrong(column, "a datetime", &Value::Text(t))),
        }
    }
}

/// What an insert met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// The row was inserted.
    Done,
    /// A constraint refused it (usually a unique key: the row is already there); the database's message. Only this statement was undone.
    Conflict(String),
}

fn failure(kind: &str, statement: &str, e: host::Error) -> Failure {
    let verb = statement.split_whitespace().next().unwrap_or("statement");
    let (what, why) = match e {
        host::Error::Refused(m) => ("refused", m),
        host::Error::Budget(m) => ("over budget", m),
        host::Error::Constraint(m) => ("refused by a constraint", m),
        host::Error::Database(m) => ("failed", m),
    };
    Failure::Retry(cut(&format!("sql {kind} {verb} {what}: {why}")))
}

fn params(values: &[Value]) -> Vec<host::Value> {
    values.iter().map(Value::to_host).collect()
}

/// Runs a SELECT.
///
/// # Errors
/// Retry with the host's reason (see the module doc).
pub fn query(statement: &str, values: &[Value]) -> Step<Rows> {
    let rows =
        host::query(statement, &params(values)).map_err(|e| failure("query", statement, e))?;
    Ok(Rows {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|r| r.into_iter().map(Value::from_host).collect())
            .collect(),
    })
}

/// Runs an INSERT, UPDATE or DELETE and returns how many rows it changed. A constraint error
/// is a failure here: use [`insert`] or [`execute_or_conflict`] where one is expected.
///
/// # Errors
/// Retry with the host's reason (see the module doc).
pub fn execute(statement: &str, values: &[Value]) -> Step<u64> {
    host::execute(statement, &params(values)).map_err(|e| failure("execute", statement, e))
}

/// Runs a statement where a constraint error is an answer, not a failure.
///
/// # Errors
/// Retry with the host's reason for every error but a constraint.
pub fn execute_or_conflict(statement: &str, values: &[Value]) -> Step<Result<u64, String>> {
    match host::execute(statement, &params(values)) {
        Ok(n) => Ok(Ok(n)),
        Err(host::Error::Constraint(m)) => Ok(Err(m)),
        Err(e) => Err(failure("execute", statement, e)),
    }
}

/// Runs an INSERT whose unique key may already hold the row: [`Insert::Conflict`] then.
///
/// # Errors
/// Retry with the host's reason for every error but a constraint.
pub fn insert(statement: &str, values: &[Value]) -> Step<Insert> {
    Ok(match execute_or_conflict(statement, values)? {
        Ok(_) => Insert::Done,
        Err(m) => Insert::Conflict(m),
    })
}

/// `?, ?, ?` for `n` parameters (an `IN (...)` list).
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(columns: &[&str], values: Vec<Value>) -> Rows {
        Rows {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: vec![values],
        }
    }

    #[test]
    fn a_row_reads_each_backends_spelling_of_a_type() {
        let r = rows(
            &["ID", "done", "n", "at", "gone", "sum"],
            vec![
                Value::Int(7),
                Value::Int(1),
                Value::Text("12".into()),
                Value::Text("2026-12-02T06:00:00Z".into()),
                Value::Null,
                Value::Real(3.0),
            ],
        );
        let row = r.first().unwrap();
        assert_eq!(row.i64("id"), Ok(7), "column names are case-insensitive");
        assert_eq!(row.bool("done"), Ok(true), "an integer 1 is true");
        assert_eq!(row.i64("n"), Ok(12), "decimal text from an aggregate");
        assert_eq!(row.i64("sum"), Ok(3), "a whole real");
        assert_eq!(row.opt_text("gone"), Ok(None));
        let bin = rows(&["kind"], vec![Value::Blob(b"message".to_vec())]);
        assert_eq!(
            bin.first().unwrap().text("kind"),
            Ok("message".to_owned()),
            "a utf8mb4_bin column MariaDB reports as binary"
        );
        let raw = rows(&["kind"], vec![Value::Blob(vec![0xff, 0xfe])]);
        assert!(
            raw.first().unwrap().text("kind").is_err(),
            "not UTF-8: not text"
        );
        assert_eq!(
            row.opt_time("at").unwrap().map(db_time).as_deref(),
            Some("2026-12-02T06:00:00Z")
        );
    }

    #[test]
    fn a_wrong_or_missing_column_is_a_retry_naming_it() {
        let r = rows(&["priority"], vec![Value::Text("high".into())]);
        let row = r.first().unwrap();
        let Err(Failure::Retry(reason)) = row.i64("priority") else {
            panic!("text read as an integer")
        };
        assert!(
            reason.contains("column priority should be an integer"),
            "{reason}"
        );
        assert!(
            matches!(row.get("title"), Err(Failure::Retry(r)) if r.contains("no column title"))
        );
        assert!(matches!(row.i64("priority"), Err(Failure::Retry(_))));
        let null = rows(&["n"], vec![Value::Null]);
        assert!(
            null.first().unwrap().i64("n").is_err(),
            "NULL is not an integer"
        );
    }

    #[test]
    fn parameters_convert_from_plain_rust_values() {
        assert_eq!(Value::from(Some(3_i64)), Value::Int(3));
        assert_eq!(Value::from(None::<&str>), Value::Null);
        assert_eq!(Value::from("a"), Value::Text("a".into()));
        let t = parse_db_time("2026-12-02T07:00:00.123456+01:00").unwrap();
        assert_eq!(
            Value::from(t),
            Value::Text("2026-12-02T06:00:00.123Z".into())
        );
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
