//! SmartFlow's rules shared by its handler components (task, agent, memory, active-scheduler,
//! notification): version checks, payload field checks, times as the business tables hold
//! them, SmartFlow's `last_error` cut and the 30-minute notification window.
//!
//! Everything generic (the failure type, payload decoding, the typed `sql` wrapper re-exported
//! here as [`db`], state, emits, logging, the export glue) is in `switchyard-sdk`; this crate
//! is plain Rust, unit-tested on the build machine, and must never decide a rule that belongs
//! to one component or name a table: those live in the component that owns the event type.

/// SmartFlow's tables are reached through the SDK's typed `sql` wrapper.
pub use switchyard_sdk::sql as db;
pub use switchyard_sdk::sql::{cut, db_time, parse_db_time};
pub use switchyard_sdk::{Failure, dead};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Result of a handler step (the SDK's result, under SmartFlow's name for it).
pub type Step<T> = switchyard_sdk::HandlerResult<T>;

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
pub fn parse_payload<T: serde::de::DeserializeOwned>(event_type: &str, payload: &[u8]) -> Step<T> {
    switchyard_sdk::decode(event_type, payload)
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
    OffsetDateTime::from(switchyard_sdk::clock::now())
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
