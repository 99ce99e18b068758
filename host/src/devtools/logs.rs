//! Collects what a guest logged (the `log` import, stdout and stderr), which the runtime writes
//! to `tracing` under the `switchyard::guest` target, so `switchyard test` can print it.

use serde::Serialize;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// The runtime's target for guest output (`runtime/imports.rs`, `runtime/invocation.rs`).
const GUEST_TARGET: &str = "switchyard::guest";

/// One line a guest logged.
#[derive(Debug, Clone, Serialize)]
pub struct GuestLog {
    /// `trace` .. `error`; stdout/stderr are `info`, an output cut at the cap is `warn`.
    pub level: String,
    /// `log` (the import) or `stdio` (stdout and stderr).
    pub stream: String,
    pub message: String,
}

/// A `tracing` layer keeping guest lines; clone it to read them.
#[derive(Clone, Default)]
pub(super) struct GuestLogs(Arc<Mutex<Vec<GuestLog>>>);

impl GuestLogs {
    pub(super) fn take(&self) -> Vec<GuestLog> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    stream: Option<String>,
    dropped: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "stream" => self.stream = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "stream" => self.stream = Some(format!("{value:?}")),
            "dropped_bytes" => self.dropped = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "dropped_bytes" {
            self.dropped = Some(value.to_string());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for GuestLogs {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != GUEST_TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = match fields.dropped {
            Some(n) => format!("{} ({n} bytes dropped)", fields.message),
            None => fields.message,
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(GuestLog {
                level: meta.level().as_str().to_ascii_lowercase(),
                stream: fields.stream.unwrap_or_else(|| "log".into()),
                message,
            });
    }
}
