//! What crosses the `sql` import between the runtime (which checks a handler's statement), the
//! engine (which owns the batch's transaction) and the store (which runs it): the backend a
//! statement is checked for, typed values, rows, and how a statement can fail.
//!
//! Datetimes travel as RFC 3339 text ([`rfc3339`] parses the exact forms a datetime column is
//! bound from; [`format_utc`] is how one reads back).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// The database a statement runs on: its SQL dialect and placeholder style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    MySql,
    Postgres,
}

/// One parameter or one column value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl SqlValue {
    /// Bytes it occupies, for the invocation's `max_sql_bytes` budget.
    pub fn size(&self) -> usize {
        match self {
            SqlValue::Null | SqlValue::Bool(_) => 1,
            SqlValue::Int(_) | SqlValue::Float(_) => 8,
            SqlValue::Text(s) => s.len(),
            SqlValue::Bytes(b) => b.len(),
        }
    }
}

/// A statement that passed the route's check, ready for the database.
#[derive(Debug, Clone, Copy)]
pub struct SqlStatement<'a> {
    /// As rendered for the backend (placeholders numbered for PostgreSQL).
    pub sql: &'a str,
    pub params: &'a [SqlValue],
    /// INSERT, UPDATE or DELETE (else a SELECT).
    pub writes: bool,
    /// Each parameter's (table, column) where the statement names it plainly, in order.
    pub targets: &'a [Option<(String, String)>],
    /// Whether a failed write must be undone alone so the invocation can go on (the batch's
    /// careful run). In the optimistic run it need not: any failure there reruns the batch
    /// carefully, so a backend where a failed statement aborts the transaction (PostgreSQL)
    /// skips the savepoint around each write.
    pub careful: bool,
}

/// What a query may still return in this invocation; reading stops past it.
#[derive(Debug, Clone, Copy)]
pub struct RowAllowance {
    pub rows: u64,
    pub bytes: usize,
}

/// What a statement returned.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlOutput {
    /// A SELECT's rows.
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<SqlValue>>,
        /// Bytes of the values, charged to the invocation's budget.
        bytes: usize,
    },
    /// Rows an INSERT, UPDATE or DELETE changed.
    Changed(u64),
}

/// Why a statement did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlFailure {
    /// A unique, foreign key, not-null or check constraint: only this statement is undone.
    Constraint(String),
    /// Any other error of this statement (a value its column cannot hold, an unknown column):
    /// the invocation is retried.
    Statement(String),
    /// The transaction is unusable (a deadlock between hosts, a lost connection): the batch
    /// runs again.
    Broken(String),
    /// The server stopped the statement at the invocation's statement limit (its deadline): the
    /// invocation has run out its deadline and fails with it; the batch's transaction is gone
    /// and its other events run again without it.
    CutOff(String),
    /// The query returned more than the invocation's allowance.
    Budget(String),
}

/// The instant an RFC 3339 text names, if it is exactly one (`2026-12-02T06:00:00Z`,
/// `2026-12-02T08:00:00.5+02:00`): what a datetime column is bound from.
pub fn rfc3339(text: &str) -> Option<OffsetDateTime> {
    // A cheap shape test first: most text parameters are not datetimes.
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `at` in UTC, as RFC 3339 with `Z` (fractional seconds only when there are any).
pub fn format_utc(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// A datetime without a zone (MySQL `DATETIME`, PostgreSQL `timestamp`), read as UTC: the host's
/// sessions run in UTC.
pub fn format_naive(at: PrimitiveDateTime) -> String {
    format_utc(at.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_text_is_recognised_exactly() {
        let at = rfc3339("2026-12-02T08:00:00.5+02:00").unwrap();
        assert_eq!(format_utc(at), "2026-12-02T06:00:00.5Z");
        assert_eq!(
            format_utc(rfc3339("2026-12-02T06:00:00Z").unwrap()),
            "2026-12-02T06:00:00Z"
        );
        for not in [
            "2026-12-02",
            "2026-12-02 06:00:00",
            "hello",
            "2026-13-02T06:00:00Z",
            "",
        ] {
            assert!(rfc3339(not).is_none(), "{not}");
        }
    }
}
