//! The host imports a handler sees: `state`, `emit`, `log`. Each validates its arguments
//! against where they go (the database's columns) and charges the invocation's budgets, and
//! answers a bad call with an error value (never a trap); every write only fills the
//! invocation's buffer, which the engine commits for an `ack` and drops otherwise.

use super::bindings::v0_2::switchyard::handler::{emit, log, state, types};
use super::effects::Emit;
use super::invocation::Invocation;
use crate::text::escape_controls;

/// Longest state key, bytes.
const MAX_KEY_BYTES: usize = 512;

/// Longest `message_key`, characters: SmartFlow's `varchar(128)` column.
const MAX_MESSAGE_KEY_CHARS: usize = 128;

/// Longest event type, aggregate id or version, characters (`biz_type` is `varchar(64)`; the
/// others travel inside the wrapper, and are kept as short as a type).
const MAX_NAME_CHARS: usize = 64;

impl types::Host for Invocation {}

impl state::Host for Invocation {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        // Own writes first (latest wins), then what the engine says is visible.
        if let Some((_, v)) = self
            .effects
            .state_writes
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
        {
            return Ok(Ok(v.clone()));
        }
        Ok(self.batch.get(&self.service, &key).await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > self.policy.limits.max_value_bytes {
            return Ok(Err(format!(
                "state value for {key:?} is {} bytes, limit is {} bytes (limits.max_value_bytes)",
                value.len(),
                self.policy.limits.max_value_bytes
            )));
        }
        if let Err(e) = self
            .budget
            .charge_state_write(&self.policy.limits, key.len() + value.len())
        {
            return Ok(Err(e));
        }
        self.effects.state_writes.push((key, Some(value)));
        Ok(Ok(()))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if let Err(e) = self
            .budget
            .charge_state_write(&self.policy.limits, key.len())
        {
            return Ok(Err(e));
        }
        self.effects.state_writes.push((key, None));
        Ok(Ok(()))
    }
}

/// A state key is stored in a text column: 1–512 bytes, no NUL.
fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "state key must be 1-{MAX_KEY_BYTES} bytes, got {} bytes",
            key.len()
        ));
    }
    no_nul("state key", key)
}

/// Text bound for a database text column may not hold NUL (PostgreSQL refuses it, and the
/// whole batch's commit with it).
fn no_nul(what: &str, text: &str) -> Result<(), String> {
    match text.find('\0') {
        Some(at) => Err(format!("{what} contains a NUL character at byte {at}")),
        None => Ok(()),
    }
}

/// Checks a follow-up's text fields against the columns they are stored in.
fn check_follow_up(event: &emit::FollowUp) -> Result<(), String> {
    for (what, text, max) in [
        ("event_type", &event.event_type, MAX_NAME_CHARS),
        ("event_version", &event.event_version, MAX_NAME_CHARS),
        ("aggregate_id", &event.aggregate_id, MAX_NAME_CHARS),
        ("message_key", &event.message_key, MAX_MESSAGE_KEY_CHARS),
    ] {
        no_nul(what, text)?;
        let chars = text.chars().count();
        if chars > max {
            return Err(format!(
                "{what} of {} is {chars} characters, at most {max} fit its column",
                event
                    .event_type
                    .chars()
                    .take(MAX_NAME_CHARS)
                    .collect::<String>()
            ));
        }
    }
    Ok(())
}

impl emit::Host for Invocation {
    async fn emit(&mut self, event: emit::FollowUp) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = check_follow_up(&event) {
            return Ok(Err(e));
        }
        // Refused here, while the guest can still see the error, rather than at commit.
        if let Err(e) = self.catalog.route(&event.event_type) {
            return Ok(Err(e.to_string()));
        }
        if !self.policy.emits.contains(&event.event_type) {
            return Ok(Err(format!(
                "this route ({}) may not emit {:?}: add it to the route's emits to grant it",
                self.event_type, event.event_type
            )));
        }
        if self.chain_depth >= self.policy.limits.max_hops {
            return Ok(Err(format!(
                "hop limit: this event is {} emits from its producer's and limits.max_hops is \
                 {}: a chain of emits this deep is refused (two routes emitting each other?)",
                self.chain_depth, self.policy.limits.max_hops
            )));
        }
        if event.payload.len() > self.policy.limits.max_value_bytes {
            return Ok(Err(format!(
                "payload of {} is {} bytes, limit is {} bytes (limits.max_value_bytes)",
                event.event_type,
                event.payload.len(),
                self.policy.limits.max_value_bytes
            )));
        }
        let bytes = event.event_type.len()
            + event.event_version.len()
            + event.aggregate_id.len()
            + event.message_key.len()
            + event.payload.len();
        if let Err(e) = self.budget.charge_emit(&self.policy.limits, bytes) {
            return Ok(Err(e));
        }
        let payload: serde_json::Value = match serde_json::from_slice(&event.payload) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(format!(
                    "payload of {} is not JSON: {e}",
                    event.event_type
                )));
            }
        };
        if payload.is_null() {
            return Ok(Err(format!(
                "payload of {} is empty: SmartFlow rejects an event without one",
                event.event_type
            )));
        }
        // Routed to its owner's table by the engine, exactly like a producer's event.
        self.effects.emits.push(Emit {
            event_type: event.event_type,
            event_version: event.event_version,
            aggregate_id: event.aggregate_id,
            message_key: event.message_key,
            payload,
        });
        Ok(Ok(()))
    }
}

impl log::Host for Invocation {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        // One budget with stdout and stderr; past it the message is dropped and counted.
        if !self.output.admit(message.len()) {
            return Ok(());
        }
        let message = escape_controls(&message);
        let (service, event_type, version, outbox_id) = (
            &self.service,
            &self.event_type,
            &self.version,
            self.outbox_id,
        );
        macro_rules! emit_log {
            ($lvl:ident) => {
                tracing::$lvl!(target: "switchyard::guest", %service, %event_type, %version, outbox_id, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit_log!(trace),
            log::Level::Debug => emit_log!(debug),
            log::Level::Info => emit_log!(info),
            log::Level::Warn => emit_log!(warn),
            log::Level::Error => emit_log!(error),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow_up(key: &str) -> emit::FollowUp {
        emit::FollowUp {
            event_type: "sink.note".into(),
            event_version: String::new(),
            aggregate_id: String::new(),
            message_key: key.into(),
            payload: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_message_key_longer_than_its_column_is_refused() {
        assert!(check_follow_up(&follow_up(&"k".repeat(128))).is_ok());
        let err = check_follow_up(&follow_up(&"k".repeat(129))).unwrap_err();
        assert!(
            err.contains("message_key") && err.contains("at most 128"),
            "{err}"
        );
        // Characters, not bytes: 128 two-byte characters fit.
        assert!(check_follow_up(&follow_up(&"é".repeat(128))).is_ok());
    }

    #[test]
    fn nul_in_text_bound_for_the_database_is_refused() {
        let err = check_follow_up(&follow_up("a\0b")).unwrap_err();
        assert!(err.contains("message_key contains a NUL"), "{err}");
        assert!(check_key("a\0b").unwrap_err().contains("NUL"));
        assert!(check_key("").is_err() && check_key(&"k".repeat(513)).is_err());
        assert!(check_key("task/1/2").is_ok());
    }
}
