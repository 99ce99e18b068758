//! Pure helpers shared by SmartFlow's handler components (agent, memory, active-scheduler,
//! notification): the failure type every handler returns, payload and version checks, state key
//! segments and the 30-minute notification window.
//!
//! It owns no state and calls no host import (each component generates its own bindings), so
//! everything here is plain Rust, unit-tested on the build machine. It must never decide a
//! business rule: those live in the component that owns the event type.

use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// One segment of a state key: `%` and `/` are percent-encoded, so an id containing `/` can
/// never reach into another key's layout (`chat/a%2Fb/...` is conversation `a/b`).
pub fn seg(value: &str) -> String {
    value.replace('%', "%25").replace('/', "%2F")
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
    fn key_segments_cannot_escape_their_slot() {
        assert_eq!(seg("a/b%c"), "a%2Fb%25c");
        assert_eq!(seg("plain-1"), "plain-1");
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
