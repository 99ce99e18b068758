//! SmartFlow's two JSON shapes: the payload wrapper stored in the outbox row, and the envelope
//! that travels on the transport. Pure functions, no I/O.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// SmartFlow's event version for an event that names none (producer, handler emit, or a row
/// whose wrapper lacks it).
pub const DEFAULT_EVENT_VERSION: &str = "v1";

/// The `payload` column: `{event_id?, event_type, event_version? ("v1"), aggregate_id?, payload}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Parses and checks a stored wrapper (SmartFlow rejects invalid JSON, an empty event type
    /// or an empty payload).
    ///
    /// # Errors
    /// [`EnvelopeError`] saying which rule failed.
    pub fn parse(text: &str) -> Result<Wrapper, EnvelopeError> {
        let w: Wrapper =
            serde_json::from_str(text).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        if w.event_type.trim().is_empty() {
            return Err(EnvelopeError::EmptyEventType);
        }
        if w.payload.is_null() || w.payload.as_str() == Some("") {
            return Err(EnvelopeError::EmptyPayload);
        }
        Ok(w)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The message value on the transport, exactly SmartFlow's field names.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<'a> {
    pub outbox_id: i64,
    #[serde(default)]
    pub event_id: String,
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub event_version: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub aggregate_id: String,
    #[serde(borrow)]
    pub payload: Option<&'a RawValue>,
}

/// Builds the envelope bytes for a row; `event_id` defaults to the outbox id, the version to
/// `v1`.
pub fn encode(outbox_id: i64, service_name: &str, wrapper: &Wrapper) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        outbox_id: i64,
        event_id: String,
        event_type: &'a str,
        event_version: &'a str,
        service_name: &'a str,
        aggregate_id: &'a str,
        payload: &'a serde_json::Value,
    }
    let out = Out {
        outbox_id,
        event_id: wrapper
            .event_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| outbox_id.to_string()),
        event_type: &wrapper.event_type,
        event_version: wrapper
            .event_version
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_EVENT_VERSION),
        service_name,
        aggregate_id: wrapper.aggregate_id.as_deref().unwrap_or(""),
        payload: &wrapper.payload,
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
        let w = Wrapper::parse(r#"{"event_type":"task.x","payload":{"a":1}}"#).unwrap();
        let bytes = encode(42, "task", &w);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["event_id"], "42");
        assert_eq!(v["event_version"], "v1");
        assert_eq!(v["payload"]["a"], 1);
        let env = decode(&bytes).unwrap();
        assert_eq!((env.outbox_id, env.event_type.as_str()), (42, "task.x"));
    }

    #[test]
    fn wrapper_rules_match_smartflow() {
        assert_eq!(
            Wrapper::parse(r#"{"payload":{}}"#).unwrap_err(),
            EnvelopeError::EmptyEventType
        );
        assert_eq!(
            Wrapper::parse(r#"{"event_type":"a"}"#).unwrap_err(),
            EnvelopeError::EmptyPayload
        );
        assert!(matches!(Wrapper::parse("{"), Err(EnvelopeError::Json(_))));
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
