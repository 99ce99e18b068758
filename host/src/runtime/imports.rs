//! The host imports a handler sees: `state`, `emit`, `log`. Each validates its arguments and
//! answers a bad call with an error value (never a trap); every write only fills the
//! invocation's buffer, which the engine commits for an `ack` and drops otherwise.

use super::bindings::switchyard::handler::{emit, log, state, types};
use super::invocation::Invocation;
use crate::store::NewRow;

/// Longest state key, bytes.
const MAX_KEY_BYTES: usize = 512;

impl types::Host for Invocation {}

impl state::Host for Invocation {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
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
        Ok(self.reader.get(&self.service, &key).await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = self.check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > self.policy.limits.max_value_bytes {
            return Ok(Err(format!(
                "state value for {key:?} is {} bytes, limit is {} bytes",
                value.len(),
                self.policy.limits.max_value_bytes
            )));
        }
        self.effects.state_writes.push((key, Some(value)));
        Ok(Ok(()))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = self.check_key(&key) {
            return Ok(Err(e));
        }
        self.effects.state_writes.push((key, None));
        Ok(Ok(()))
    }
}

impl Invocation {
    fn check_key(&self, key: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "state key must be 1-{MAX_KEY_BYTES} bytes, got {} bytes",
                key.len()
            ));
        }
        Ok(())
    }
}

impl emit::Host for Invocation {
    async fn emit(&mut self, event: emit::FollowUp) -> wasmtime::Result<Result<(), String>> {
        if self.effects.new_rows.len() as u32 >= self.policy.limits.max_emits {
            return Ok(Err(format!(
                "emit limit reached: at most {} emits per invocation",
                self.policy.limits.max_emits
            )));
        }
        let route = match self.catalog.route(&event.event_type) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if event.payload.len() > self.policy.limits.max_value_bytes {
            return Ok(Err(format!(
                "payload of {} is {} bytes, limit is {} bytes",
                event.event_type,
                event.payload.len(),
                self.policy.limits.max_value_bytes
            )));
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
        let version = if event.event_version.is_empty() {
            "v1".to_owned()
        } else {
            event.event_version
        };
        let wrapper = crate::envelope::Wrapper {
            event_id: None,
            event_type: event.event_type.clone(),
            event_version: Some(version),
            aggregate_id: Some(event.aggregate_id),
            payload,
        };
        let service = &route.service;
        self.effects.new_rows.push(NewRow {
            table: service.table.clone(),
            biz_type: event.event_type,
            service_name: service.name.clone(),
            topic: service.topic.clone(),
            message_key: event.message_key,
            payload: wrapper.to_json(),
            max_attempts: self.max_retry,
        });
        Ok(Ok(()))
    }
}

impl log::Host for Invocation {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.log_bytes += message.len();
        if self.log_bytes > self.policy.limits.max_log_bytes {
            self.log_dropped += message.len();
            return Ok(());
        }
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
