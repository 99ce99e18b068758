//! Follow-up events (`emit` import), routed by type and inserted with the consume.
//!
//! ```text
//! emit::event("memory.extract.requested", &job).key(user_id).aggregate(&job_id).send()?;
//! ```

use crate::bindings::switchyard::handler::emit as host;
use crate::{Failure, HandlerResult};
use serde::Serialize;

/// A follow-up being built; nothing is sent until [`Emit::send`].
#[derive(Debug, Clone)]
#[must_use = "an emit is sent by .send()"]
pub struct Emit {
    event: host::FollowUp,
    encoded: Result<(), String>,
}

/// A follow-up of type `event_type` carrying `payload` as JSON (version `v1`, empty keys
/// until set).
pub fn event<T: Serialize + ?Sized>(event_type: &str, payload: &T) -> Emit {
    let (payload, encoded) = match serde_json::to_vec(payload) {
        Ok(bytes) => (bytes, Ok(())),
        Err(e) => (Vec::new(), Err(e.to_string())),
    };
    Emit {
        event: host::FollowUp {
            event_type: event_type.to_owned(),
            event_version: String::new(),
            aggregate_id: String::new(),
            message_key: String::new(),
            payload,
        },
        encoded,
    }
}

impl Emit {
    /// The event version (e.g. `"1"`); empty means `v1`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.event.event_version = version.into();
        self
    }

    /// The message key (ordering and Kafka partitioning).
    pub fn key(mut self, key: impl ToString) -> Self {
        self.event.message_key = key.to_string();
        self
    }

    /// The aggregate id.
    pub fn aggregate(mut self, id: impl ToString) -> Self {
        self.event.aggregate_id = id.to_string();
        self
    }

    /// Emits the event.
    ///
    /// # Errors
    /// Dead when the payload did not serialize; retry, `emitting <type>: <host's reason>`,
    /// when the host refuses it (an ungranted type, a budget, the hop limit).
    pub fn send(self) -> HandlerResult {
        let ty = &self.event.event_type;
        if let Err(e) = &self.encoded {
            return Err(Failure::Dead(format!("encoding {ty}: {e}")));
        }
        host::emit(&self.event).map_err(|e| Failure::Retry(format!("emitting {ty}: {e}")))
    }
}
