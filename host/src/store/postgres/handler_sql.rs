//! A handler's statement on PostgreSQL. Parameters bind by the types the server infers for the
//! statement (prepared once per connection, then cached by sqlx): RFC 3339 text binds to a
//! `timestamptz`/`timestamp`/`date` column, text to `json`/`jsonb`, an integer to any integer
//! width. In a batch's careful run each write runs under its own savepoint, because a failed
//! statement aborts a PostgreSQL transaction: a constraint error then undoes only that
//! statement, as on the other backends. The optimistic run skips it (two round trips per
//! write): a failed write there reruns the batch carefully. Values read back by the column's type (datetimes as UTC RFC 3339; `numeric`,
//! `uuid` and `json` as text).

use crate::handler_sql::{
    RowAllowance, SqlFailure, SqlOutput, SqlStatement, SqlValue, format_naive, format_utc, rfc3339,
};
use crate::store::sql::handler_sql::{STATEMENT_SAVEPOINT, classify, plain, read_rows};
use sqlx::postgres::{PgArguments, PgRow, PgTypeInfo};
use sqlx::{
    Arguments, AssertSqlSafe, Column, Either, Executor, PgConnection, Postgres, Row, SqlSafeStr,
    Statement, TypeInfo, ValueRef,
};
use std::fmt::Write;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

pub(super) async fn run(
    conn: &mut PgConnection,
    statement: SqlStatement<'_>,
    allowance: RowAllowance,
) -> Result<SqlOutput, SqlFailure> {
    let (types, columns): (Vec<PgTypeInfo>, Vec<String>) = {
        let prepared = (&mut *conn)
            .prepare(AssertSqlSafe(statement.sql.to_owned()).into_sql_str())
            .await
            .map_err(classify)?;
        let types = match prepared.parameters() {
            Some(Either::Left(types)) => types.to_vec(),
            _ => Vec::new(),
        };
        let columns = prepared.columns().iter().map(|c| c.name().to_owned());
        (types, columns.collect())
    };
    if types.len() != statement.params.len() {
        return Err(SqlFailure::Statement(format!(
            "the statement has {} placeholders but {} parameters were given",
            types.len(),
            statement.params.len()
        )));
    }
    let mut args = PgArguments::default();
    for (n, (value, ty)) in statement.params.iter().zip(&types).enumerate() {
        bind(&mut args, value, ty.name())
            .map_err(|e| SqlFailure::Statement(format!("parameter {}: {e}", n + 1)))?;
    }
    let query = sqlx::query_with(AssertSqlSafe(statement.sql.to_owned()), args);
    if !statement.writes {
        return read_rows(columns, query.fetch(&mut *conn), allowance, value).await;
    }
    if !statement.careful {
        // The optimistic run: no savepoint, so a failed write (even a constraint) aborted the
        // transaction and cannot be undone alone; the batch runs again carefully.
        return match query.execute(&mut *conn).await.map_err(classify) {
            Ok(done) => Ok(SqlOutput::Changed(done.rows_affected())),
            Err(SqlFailure::Constraint(e)) => Err(SqlFailure::Statement(e)),
            Err(other) => Err(other),
        };
    }
    plain::<Postgres>(conn, STATEMENT_SAVEPOINT.take).await?;
    match query.execute(&mut *conn).await.map_err(classify) {
        Ok(done) => {
            plain::<Postgres>(conn, STATEMENT_SAVEPOINT.release).await?;
            Ok(SqlOutput::Changed(done.rows_affected()))
        }
        // The transaction is gone either way: nothing to roll back to.
        Err(f @ (SqlFailure::Broken(_) | SqlFailure::CutOff(_))) => Err(f),
        Err(failure) => {
            plain::<Postgres>(conn, STATEMENT_SAVEPOINT.roll_back_and_release).await?;
            Err(failure)
        }
    }
}

/// Adds `value` as the type the server expects (`ty`, a sqlx type name).
fn bind(args: &mut PgArguments, value: &SqlValue, ty: &str) -> Result<(), String> {
    use SqlValue as V;
    let mismatch = || {
        format!(
            "a {} cannot be bound where the statement expects {ty}",
            kind(value)
        )
    };
    let added = match (ty, value) {
        (_, V::Null) => args.add(None::<String>),
        ("BOOL", V::Bool(b)) => args.add(*b),
        ("BOOL", V::Int(i @ (0 | 1))) => args.add(*i == 1),
        ("INT2", V::Int(i)) => args.add(i16::try_from(*i).map_err(|_| out_of_range(*i, ty))?),
        ("INT4", V::Int(i)) => args.add(i32::try_from(*i).map_err(|_| out_of_range(*i, ty))?),
        ("INT8", V::Int(i)) => args.add(*i),
        ("INT2" | "INT4" | "INT8", V::Bool(b)) => return bind(args, &V::Int(i64::from(*b)), ty),
        ("FLOAT4", V::Float(f)) => args.add(*f as f32),
        ("FLOAT4", V::Int(i)) => args.add(*i as f32),
        ("FLOAT8", V::Float(f)) => args.add(*f),
        ("FLOAT8", V::Int(i)) => args.add(*i as f64),
        ("BYTEA", V::Bytes(b)) => args.add(b.clone()),
        ("BYTEA", V::Text(s)) => args.add(s.as_bytes().to_vec()),
        ("TIMESTAMPTZ", V::Text(s)) => args.add(instant(s)?),
        ("TIMESTAMP", V::Text(s)) => {
            let at = instant(s)?.to_offset(UtcOffset::UTC);
            args.add(PrimitiveDateTime::new(at.date(), at.time()))
        }
        ("DATE", V::Text(s)) => args.add(date(s)?),
        ("JSON" | "JSONB", V::Text(s)) => args.add(
            serde_json::from_str::<serde_json::Value>(s)
                .map_err(|e| format!("expects JSON text: {e}"))?,
        ),
        ("TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN", v) => args.add(match v {
            V::Text(s) => s.clone(),
            V::Int(i) => i.to_string(),
            V::Float(f) => f.to_string(),
            V::Bool(b) => b.to_string(),
            V::Bytes(_) | V::Null => return Err(mismatch()),
        }),
        ("BOOL" | "INT2" | "INT4" | "INT8" | "FLOAT4" | "FLOAT8", V::Text(_))
        | ("TIMESTAMPTZ" | "TIMESTAMP" | "DATE" | "JSON" | "JSONB" | "BYTEA", _)
        | ("BOOL" | "INT2" | "INT4" | "INT8" | "FLOAT4" | "FLOAT8", _) => return Err(mismatch()),
        (other, _) => {
            return Err(format!(
                "the statement expects {other}, which the sql import does not bind: write \
                 CAST(CAST(? AS TEXT) AS {other}) and pass text"
            ));
        }
    };
    added.map_err(|e| e.to_string())
}

fn out_of_range(i: i64, ty: &str) -> String {
    format!("{i} does not fit {ty}")
}

fn kind(value: &SqlValue) -> &'static str {
    match value {
        SqlValue::Null => "null",
        SqlValue::Bool(_) => "boolean",
        SqlValue::Int(_) => "integer",
        SqlValue::Float(_) => "real",
        SqlValue::Text(_) => "text",
        SqlValue::Bytes(_) => "blob",
    }
}

fn instant(text: &str) -> Result<OffsetDateTime, String> {
    rfc3339(text).ok_or_else(|| {
        format!("expects an RFC 3339 datetime such as 2026-12-02T06:00:00Z, got {text:?}")
    })
}

fn date(text: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format)
        .or_else(|_| instant(text).map(|at| at.to_offset(UtcOffset::UTC).date()))
        .map_err(|_| format!("expects a date such as 2026-12-02, got {text:?}"))
}

fn value(row: &PgRow, i: usize) -> Result<SqlValue, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let info = raw.type_info();
    let e = |e: sqlx::Error| e.to_string();
    Ok(match info.name() {
        "BOOL" => SqlValue::Bool(row.try_get_unchecked::<bool, _>(i).map_err(e)?),
        "INT2" => SqlValue::Int(row.try_get_unchecked::<i16, _>(i).map_err(e)?.into()),
        "INT4" => SqlValue::Int(row.try_get_unchecked::<i32, _>(i).map_err(e)?.into()),
        "INT8" => SqlValue::Int(row.try_get_unchecked::<i64, _>(i).map_err(e)?),
        "OID" => SqlValue::Int(row.try_get_unchecked::<i64, _>(i).map_err(e)?),
        "FLOAT4" => SqlValue::Float(row.try_get_unchecked::<f32, _>(i).map_err(e)?.into()),
        "FLOAT8" => SqlValue::Float(row.try_get_unchecked::<f64, _>(i).map_err(e)?),
        "BYTEA" => SqlValue::Bytes(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(e)?),
        "TIMESTAMPTZ" => SqlValue::Text(format_utc(
            row.try_get_unchecked::<OffsetDateTime, _>(i).map_err(e)?,
        )),
        "TIMESTAMP" => SqlValue::Text(format_naive(
            row.try_get_unchecked::<PrimitiveDateTime, _>(i)
                .map_err(e)?,
        )),
        "DATE" => SqlValue::Text(row.try_get_unchecked::<Date, _>(i).map_err(e)?.to_string()),
        "JSON" | "JSONB" => SqlValue::Text(
            row.try_get_unchecked::<serde_json::Value, _>(i)
                .map_err(e)?
                .to_string(),
        ),
        "NUMERIC" => SqlValue::Text(numeric_text(
            row.try_get_unchecked::<&[u8], _>(i).map_err(e)?,
        )?),
        "UUID" => SqlValue::Text(uuid_text(row.try_get_unchecked::<&[u8], _>(i).map_err(e)?)?),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" | "\"CHAR\"" => {
            SqlValue::Text(row.try_get_unchecked::<String, _>(i).map_err(e)?)
        }
        other => {
            return Err(format!(
                "its type {other} is not one the sql import reads: CAST it to TEXT in the SELECT"
            ));
        }
    })
}

/// PostgreSQL's binary `numeric` (base-10000 digits) as decimal text, exactly.
fn numeric_text(buf: &[u8]) -> Result<String, String> {
    let word = |at: usize| -> Result<i16, String> {
        buf.get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated numeric".to_owned())
    };
    let (ndigits, weight) = (word(0)?.max(0) as usize, i32::from(word(2)?));
    let (sign, dscale) = (word(4)? as u16, word(6)?.max(0) as usize);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<Vec<_>, _>>()?;
    let digit = |g: i32| {
        usize::try_from(g)
            .ok()
            .and_then(|g| digits.get(g).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    }
    for g in 0..=weight {
        let _ = if g == 0 {
            write!(out, "{}", digit(g))
        } else {
            write!(out, "{:04}", digit(g))
        };
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut g = weight + 1;
        while fraction.len() < dscale {
            let _ = write!(fraction, "{:04}", digit(g));
            g += 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

fn uuid_text(b: &[u8]) -> Result<String, String> {
    if b.len() != 16 {
        return Err("a uuid that is not 16 bytes".into());
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::numeric_text;

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale]
            .into_iter()
            .chain(digits.iter().copied())
        {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    #[test]
    fn numeric_reads_as_exact_decimal_text() {
        // 12345.678 = [1, 2345, 6780] weight 1, dscale 3
        assert_eq!(
            numeric_text(&numeric(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        // -0.05 = [500] weight -1, dscale 2
        assert_eq!(
            numeric_text(&numeric(1, -1, 0x4000, 2, &[500])).unwrap(),
            "-0.05"
        );
        // 0.00001 = [1000] weight -2 (0.0000|1000), dscale 5
        assert_eq!(
            numeric_text(&numeric(1, -2, 0, 5, &[1000])).unwrap(),
            "0.00001"
        );
        // 20000 = [2] weight 1, dscale 0
        assert_eq!(numeric_text(&numeric(1, 1, 0, 0, &[2])).unwrap(), "20000");
        assert_eq!(numeric_text(&numeric(0, 0, 0, 0, &[])).unwrap(), "0");
    }
}
