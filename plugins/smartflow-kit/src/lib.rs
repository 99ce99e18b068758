//! Helpers shared by SmartFlow's handler components (task, agent, memory, active-scheduler,
//! notification): the failure type every handler returns, payload and version checks, times as
//! the business tables hold them, the 30-minute notification window, and [`db`], the typed
//! wrapper over the host's `sql` import through which every component reaches its tables.
//!
//! Everything outside [`db`] is plain Rust, unit-tested on the build machine; [`db`] is the one
//! module that calls a host import (each component generates its own bindings for the rest).
//! It must never decide a business rule or name a table: those live in the component that owns
//! the event type.

pub mod db;

use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Why a handler did not succeed; each component maps it to the contract's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The payload can never succeed (bad field, unsupported version): the row goes dead.
    Dead(String),
    /// Transient (the host refused a state operation, a send failed): try again later.
    Retry(String),
}

/// Result of a handler step.
pub type Step<T> = Result<T, Failure>;

/// Shorthand for a dead outcome with a reason.
pub fn dead<T>(reason: impl Into<String>) -> Step<T> {
    Err(Failure::Dead(reason.into()))
}

/// SmartFlow's v1 events accept the producer's default version spellings.
///
/// # Errors
/// Dead, naming the version and event type, for anything but `""`, `"v1"` or `"1"`.
pub fn check_v1(event_type: &str, version: &str) -> Step<()> {
    match version {
        "" | "v1" | "1" => Ok(()),
        other => dead(format!(
            "unsupported event_version {other:?} for {event_type}: expected \"v1\""
        )),
    }
}

/// The scheduler and notification events accept exactly `""` or `"1"` (SmartFlow's rule:
/// even `"v1"` is refused there).
///
/// # Errors
/// Dead, naming the version and event type.
pub fn check_version_1(event_type: &str, version: &str) -> Step<()> {
    match version {
        "" | "1" => Ok(()),
        other => dead(format!(
            "unsupported event_version {other:?} for {event_type}: only \"1\" is accepted"
        )),
    }
}

/// Parses a payload, turning a JSON or shape error into a dead reason naming the event type.
///
/// # Errors
/// Dead with serde's message (which names the field and position).
pub fn parse_payload<T: DeserializeOwned>(event_type: &str, payload: &[u8]) -> Step<T> {
    serde_json::from_slice(payload)
        .map_err(|e| Failure::Dead(format!("invalid {event_type} payload: {e}")))
}

/// Parses an RFC 3339 time field.
///
/// # Errors
/// Dead naming the field and the value.
pub fn parse_time(field: &str, value: &str) -> Step<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| Failure::Dead(format!("{field} is not an RFC 3339 time ({value:?}): {e}")))
}

/// A required, non-empty RFC 3339 time field.
///
/// # Errors
/// Dead if missing, empty or malformed.
pub fn required_time(field: &str, value: Option<&str>) -> Step<OffsetDateTime> {
    match value {
        Some(v) if !v.is_empty() => parse_time(field, v),
        _ => dead(format!("{field} is required (an RFC 3339 time)")),
    }
}

/// A required, non-empty string field (surrounding whitespace does not count).
///
/// # Errors
/// Dead saying the field is empty.
pub fn required<'a>(field: &str, value: &'a str) -> Step<&'a str> {
    let v = value.trim();
    if v.is_empty() {
        dead(format!("{field} must not be empty"))
    } else {
        Ok(v)
    }
}

/// A positive id field.
///
/// # Errors
/// Dead saying the field must be positive and what it was.
pub fn positive(field: &str, value: i64) -> Step<i64> {
    if value > 0 {
        Ok(value)
    } else {
        dead(format!("{field} must be positive, got {value}"))
    }
}

/// A text field that must fit its column (`VARCHAR(n)`): longer is dead, since a server
/// would refuse it on every attempt.
///
/// # Errors
/// Dead naming the field, its length and the limit.
pub fn max_len<'a>(field: &str, value: &'a str, max: usize) -> Step<&'a str> {
    if value.len() > max {
        dead(format!(
            "{field} is {} bytes, at most {max} are accepted",
            value.len()
        ))
    } else {
        Ok(value)
    }
}

/// The consume-time clock (the guest's wall clock, read while the event is handled): what
/// SmartFlow's handlers used as `time.Now()`.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from(std::time::SystemTime::now())
}

/// A time as the business tables take it: RFC 3339 UTC with milliseconds (`DATETIME(3)`).
pub fn db_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
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

/// Text cut to at most 2,000 bytes on a character boundary (SmartFlow's `last_error` rule).
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

/// RFC 3339 (UTC, seconds) of the start of the 30-minute window holding `at`: SmartFlow's
/// notification dedupe window (`:00` and `:30` boundaries).
pub fn window_start(at: OffsetDateTime) -> String {
    let secs = at.unix_timestamp();
    let start = secs - secs.rem_euclid(30 * 60);
    OffsetDateTime::from_unix_timestamp(start)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Formats a time as RFC 3339 UTC.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_start_floors_to_the_half_hour_in_utc() {
        let t = parse_time("t", "2026-11-29T09:44:59+02:00").unwrap();
        assert_eq!(window_start(t), "2026-11-29T07:30:00Z");
        let t = parse_time("t", "2026-11-29T09:30:00Z").unwrap();
        assert_eq!(window_start(t), "2026-11-29T09:30:00Z");
        let t = parse_time("t", "2026-11-29T09:29:59.9Z").unwrap();
        assert_eq!(window_start(t), "2026-11-29T09:00:00Z");
    }

    #[test]
    fn database_times_round_trip_in_every_spelling_a_backend_returns() {
        for (text, utc) in [
            ("2026-12-02T06:00:00Z", "2026-12-02T06:00:00Z"),
            ("2026-12-02T07:00:00.5+01:00", "2026-12-02T06:00:00.5Z"),
            ("2026-12-02 06:00:00", "2026-12-02T06:00:00Z"),
            ("2026-12-02 06:00:00.250", "2026-12-02T06:00:00.25Z"),
        ] {
            assert_eq!(
                parse_db_time(text).map(rfc3339).as_deref(),
                Some(utc),
                "{text}"
            );
        }
        assert_eq!(parse_db_time("soon"), None);
        let t = parse_time("t", "2026-12-02T06:00:00.123789Z").unwrap();
        assert_eq!(
            db_time(t),
            "2026-12-02T06:00:00.123Z",
            "milliseconds, like DATETIME(3)"
        );
    }

    #[test]
    fn lengths_and_reasons_are_bounded() {
        assert!(max_len("trigger_id", "abc", 3).is_ok());
        assert_eq!(
            max_len("trigger_id", "abcd", 3),
            dead("trigger_id is 4 bytes, at most 3 are accepted")
        );
        let long = "é".repeat(1500);
        let c = cut(&long);
        assert!(c.len() <= 2000 && long.starts_with(&c));
    }

    #[test]
    fn versions_follow_each_events_rule() {
        assert!(check_v1("e", "v1").is_ok() && check_v1("e", "").is_ok());
        assert!(check_v1("e", "v2").is_err());
        assert!(check_version_1("e", "1").is_ok() && check_version_1("e", "").is_ok());
        assert_eq!(
            check_version_1("e", "v1"),
            dead("unsupported event_version \"v1\" for e: only \"1\" is accepted")
        );
    }
}
