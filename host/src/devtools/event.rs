//! The input files of `switchyard test`: the event (`--event`) and the seed state (`--state`).

use super::ToolError;
use crate::runtime::EventData;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// An event file. Only `event_type` and `payload` are required; every other field takes the
/// value a producer's first delivery would have.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventFile {
    pub event_type: String,
    /// Any JSON value; the handler receives its JSON text.
    pub payload: serde_json::Value,
    /// Default: the outbox id as text, as the relay sets it.
    pub event_id: Option<String>,
    /// Default `v1`, as the producer API writes an event without a version.
    #[serde(alias = "event_version")]
    pub version: Option<String>,
    /// The message key. Default empty.
    #[serde(default, alias = "message_key")]
    pub key: String,
    #[serde(default)]
    pub aggregate_id: String,
    /// Default 1 (the first delivery); n+1 after n failed attempts.
    #[serde(default = "first")]
    pub attempt: u32,
    #[serde(default = "first_id")]
    pub outbox_id: i64,
    /// Default: the route's service (with `--config`), else `test`.
    pub service: Option<String>,
    /// Emits between the producer's event and this one. Default 0.
    #[serde(default)]
    pub chain_depth: u32,
}

fn first() -> u32 {
    1
}

fn first_id() -> i64 {
    1
}

const EVENT_EXAMPLE: &str = "write a JSON object such as {\"event_type\": \"task.record.requested\", \
     \"payload\": {\"id\": 1}}; optional: event_id, version, key, aggregate_id, attempt, \
     outbox_id, service, chain_depth";

pub(super) fn read_event(path: &Path) -> Result<EventFile, ToolError> {
    let text = std::fs::read_to_string(path).map_err(|source| ToolError::Read {
        what: "event file",
        path: path.to_owned(),
        source,
    })?;
    let event: EventFile = serde_json::from_str(&text).map_err(|e| ToolError::BadInput {
        what: "event file",
        path: path.to_owned(),
        reason: format!("{e}: {EVENT_EXAMPLE}"),
    })?;
    if event.event_type.is_empty() {
        return Err(ToolError::BadInput {
            what: "event file",
            path: path.to_owned(),
            reason: format!("event_type is empty: {EVENT_EXAMPLE}"),
        });
    }
    if event.attempt == 0 {
        return Err(ToolError::BadInput {
            what: "event file",
            path: path.to_owned(),
            reason: "attempt starts at 1 (the first delivery)".into(),
        });
    }
    Ok(event)
}

impl EventFile {
    pub(super) fn into_data(self, service: String) -> EventData {
        EventData {
            outbox_id: self.outbox_id,
            event_id: self.event_id.unwrap_or_else(|| self.outbox_id.to_string()),
            event_type: self.event_type,
            event_version: self.version.unwrap_or_else(|| "v1".into()),
            service,
            aggregate_id: self.aggregate_id,
            message_key: self.key,
            // The host hands the payload's JSON text as it was stored.
            payload: self.payload.to_string().into_bytes(),
            attempt: self.attempt,
            chain_depth: self.chain_depth,
        }
    }
}

/// A state file: a JSON object of key -> string value (the value's UTF-8 bytes are stored).
pub(super) fn read_state(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, ToolError> {
    let bad = |reason: String| ToolError::BadInput {
        what: "state file",
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ToolError::Read {
        what: "state file",
        path: path.to_owned(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "{e}: write a JSON object of key to string value, e.g. {{\"counter\": \"2\"}}"
        ))
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad(
            "must be a JSON object of key to string value, e.g. {\"counter\": \"2\"}".into(),
        ));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s.into_bytes())),
            other => Err(bad(format!(
                "the value of {k:?} is {other}, not a string: state values are bytes, write \
                 them as strings (a JSON value as its text, e.g. \"{{\\\"a\\\": 1}}\")"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_with_only_type_and_payload_gets_a_first_deliverys_defaults() {
        let event: EventFile =
            serde_json::from_str(r#"{"event_type": "t.x", "payload": {"a": 1}}"#).unwrap();
        let data = event.into_data("svc".into());
        assert_eq!(
            (
                data.outbox_id,
                data.event_id.as_str(),
                data.event_version.as_str()
            ),
            (1, "1", "v1")
        );
        assert_eq!((data.attempt, data.chain_depth), (1, 0));
        assert_eq!(data.service, "svc");
        assert_eq!(data.payload, br#"{"a":1}"#);
    }

    #[test]
    fn the_column_names_are_accepted_for_key_and_version() {
        let event: EventFile = serde_json::from_str(
            r#"{"event_type": "t.x", "payload": 1, "message_key": "k", "event_version": "2",
                "outbox_id": 9}"#,
        )
        .unwrap();
        let data = event.into_data("svc".into());
        assert_eq!(
            (
                data.message_key.as_str(),
                data.event_version.as_str(),
                data.event_id.as_str()
            ),
            ("k", "2", "9")
        );
    }
}
