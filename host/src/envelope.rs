//! SmartFlow's two JSON shapes: the payload wrapper stored in the outbox row, and the envelope
//! that travels on the transport. Pure functions, no I/O.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// SmartFlow's event version for an event that names none (producer, handler emit, or a row
/// whose wrapper lacks it).
pub const DEFAULT_EVENT_VERSION: &str = "v1";

/// The `payload` column as `row_for` writes it: `{event_id?, event_type, event_version? ("v1"),
/// aggregate_id?, payload}`. The relay reads it back as a [`StoredWrapper`].
#[derive(Debug, Clone, Serialize)]
pub struct Wrapper {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default)]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
    #[serde(default)]
    pub payload: serde_json::Value,
}

/// Why a wrapper or envelope was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("event_type is empty")]
    EmptyEventType,
    #[error("payload is empty")]
    EmptyPayload,
    #[error("outbox_id must be positive, got {0}")]
    BadOutboxId(i64),
}

impl Wrapper {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A wrapper as the relay reads it from a claimed row: borrowed from the row's text, its
/// payload the raw JSON it is. The relay only copies the payload into the envelope, so it is
/// never parsed into a tree and written out again (that cost about twenty allocations per
/// event); the envelope carries it byte for byte as it was stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredWrapper<'a> {
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub event_version: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<Cow<'a, str>>,
    /// `None` for a missing or `null` payload.
    #[serde(default, borrow)]
    pub payload: Option<&'a RawValue>,
}

impl<'a> StoredWrapper<'a> {
    /// Parses and checks a stored wrapper (SmartFlow rejects invalid JSON, an empty event type
    /// or an empty payload).
    ///
    /// # Errors
    /// [`EnvelopeError`] saying which rule failed.
    pub fn parse(text: &'a str) -> Result<StoredWrapper<'a>, EnvelopeError> {
        let w: StoredWrapper<'a> =
            serde_json::from_str(text).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        if w.event_type.trim().is_empty() {
            return Err(EnvelopeError::EmptyEventType);
        }
        if w.payload.is_none_or(|p| p.get() == "\"\"") {
            return Err(EnvelopeError::EmptyPayload);
        }
        Ok(w)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The message value on the transport, exactly SmartFlow's field names. Its text fields borrow
/// from the message bytes (copied only where JSON escapes them).
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<'a> {
    pub outbox_id: i64,
    #[serde(default, borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    pub event_version: Cow<'a, str>,
    #[serde(default, borrow)]
    pub service_name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub aggregate_id: Cow<'a, str>,
    #[serde(borrow)]
    pub payload: Option<&'a RawValue>,
}

/// Builds the envelope bytes for a row; `event_id` defaults to the outbox id, the version to
/// `v1`.
pub fn encode(outbox_id: i64, service_name: &str, wrapper: &StoredWrapper<'_>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        outbox_id: i64,
        event_id: Cow<'a, str>,
        event_type: &'a str,
        event_version: &'a str,
        service_name: &'a str,
        aggregate_id: &'a str,
        payload: Option<&'a RawValue>,
    }
    let out = Out {
        outbox_id,
        event_id: match wrapper.event_id.as_deref() {
            Some(id) if !id.is_empty() => Cow::Borrowed(id),
            _ => Cow::Owned(outbox_id.to_string()),
        },
        event_type: &wrapper.event_type,
        event_version: wrapper
            .event_version
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_EVENT_VERSION),
        service_name,
        aggregate_id: wrapper.aggregate_id.as_deref().unwrap_or(""),
        payload: wrapper.payload,
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

/// Decodes envelope bytes. Only the JSON shape and `outbox_id > 0` are checked here; an empty
/// event type is the consumer's call (it marks the row dead).
///
/// # Errors
/// [`EnvelopeError::Json`] or [`EnvelopeError::BadOutboxId`]: the message is skipped.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let env: Envelope<'_> =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    if env.outbox_id <= 0 {
        return Err(EnvelopeError::BadOutboxId(env.outbox_id));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_with_smartflow_defaults() {
        let w = StoredWrapper::parse(r#"{"event_type":"task.x","payload":{"a":1}}"#).unwrap();
        let bytes = encode(42, "task", &w);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["event_id"], "42");
        assert_eq!(v["event_version"], "v1");
        assert_eq!(v["payload"]["a"], 1);
        let env = decode(&bytes).unwrap();
        assert_eq!((env.outbox_id, env.event_type.as_ref()), (42, "task.x"));
    }

    #[test]
    fn the_envelope_carries_the_stored_payload_byte_for_byte_and_decodes_escaped_text() {
        // A tree would sort the keys and round the decimal through an f64.
        let payload = r#"{"z":1,"a":12345678901234567890.125,"s":"\u00e9"}"#;
        let stored =
            format!(r#"{{"event_type":"task.\u0078","event_id":"e\"1","payload":{payload}}}"#);
        let w = StoredWrapper::parse(&stored).unwrap();
        assert_eq!(w.event_type, "task.x");
        let bytes = encode(7, "task", &w);
        let env = decode(&bytes).unwrap();
        assert_eq!(env.payload.map(RawValue::get), Some(payload));
        assert_eq!(
            (env.event_id.as_ref(), env.event_type.as_ref()),
            ("e\"1", "task.x")
        );
        assert_eq!(env.service_name, "task");
    }

    #[test]
    fn wrapper_rules_match_smartflow() {
        assert_eq!(
            StoredWrapper::parse(r#"{"payload":{}}"#).unwrap_err(),
            EnvelopeError::EmptyEventType
        );
        assert_eq!(
            StoredWrapper::parse(r#"{"event_type":"a"}"#).unwrap_err(),
            EnvelopeError::EmptyPayload
        );
        for empty in ["null", r#""""#] {
            assert_eq!(
                StoredWrapper::parse(&format!(r#"{{"event_type":"a","payload":{empty}}}"#))
                    .unwrap_err(),
                EnvelopeError::EmptyPayload,
                "payload {empty}"
            );
        }
        assert!(matches!(
            StoredWrapper::parse("{"),
            Err(EnvelopeError::Json(_))
        ));
    }

    #[test]
    fn envelope_with_nonpositive_outbox_id_is_refused() {
        assert_eq!(
            decode(br#"{"outbox_id":0}"#).unwrap_err(),
            EnvelopeError::BadOutboxId(0)
        );
        assert!(decode(b"not json").is_err());
    }
}
