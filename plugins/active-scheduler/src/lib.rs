//! SmartFlow's `active-scheduler` service as a Switchyard handler component.
//!
//! Owns the trigger and preview tables, kept in the service's private state store:
//! - `trigger/<trigger_id>` → [`decide::TriggerRecord`]: the decision (`closed`,
//!   `preview_generated` or `rejected`) and why; the same trigger id again stores nothing new.
//! - `preview/<preview_id>` → [`decide::Preview`], `preview_id = "preview-<trigger_id>"`.
//!
//! `active_schedule.triggered` accepts version `""` or `"1"` only. The payload checks live in
//! [`trigger`], the deterministic decision rule (in place of SmartFlow's LLM step) in
//! [`decide`]. When a notification is due it emits `notification.feishu.requested` (version
//! `"1"`) in the same transaction as the records. It never sends anything itself.

mod bindings {
    wit_bindgen::generate!({ world: "service-handler", path: "../../wit" });
}
mod decide;
mod trigger;

use bindings::exports::switchyard::handler::handler::Guest;
use bindings::switchyard::handler::emit::{FollowUp, emit};
use bindings::switchyard::handler::log::{Level, log};
use bindings::switchyard::handler::state;
use bindings::switchyard::handler::types::{Event, Outcome, RetryRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use smartflow_kit::{Failure, Step, check_version_1, dead, seg};

struct Component;
bindings::export!(Component with_types_in bindings);

impl Guest for Component {
    fn handle(event: Event) -> Outcome {
        let result = check_version_1(&event.event_type, &event.event_version).and_then(|()| {
            match event.event_type.as_str() {
                "active_schedule.triggered" => handle_trigger(&event),
                other => dead(format!(
                    "the active-scheduler handler does not handle {other}"
                )),
            }
        });
        match result {
            Ok(()) => Outcome::Ack,
            Err(Failure::Dead(reason)) => Outcome::Dead(reason),
            Err(Failure::Retry(reason)) => Outcome::Retry(RetryRequest {
                reason,
                delay_ms: None,
            }),
        }
    }
}

fn handle_trigger(event: &Event) -> Step<()> {
    let trigger = trigger::Trigger::parse(&event.event_type, &event.payload)?;
    let key = format!("trigger/{}", seg(&trigger.trigger_id));
    if get::<decide::TriggerRecord>(&key)?.is_some() {
        log(
            Level::Info,
            &format!("trigger {} was already decided", trigger.trigger_id),
        );
        return Ok(());
    }
    let decision = decide::decide(&trigger, &event.event_id);
    if let Some(preview) = &decision.preview {
        put(&format!("preview/{}", seg(&preview.preview_id)), preview)?;
    }
    if let Some(notification) = &decision.notification {
        emit(&FollowUp {
            event_type: "notification.feishu.requested".into(),
            event_version: "1".into(),
            aggregate_id: trigger.trigger_id.clone(),
            message_key: trigger.user_id.to_string(),
            payload: serde_json::to_vec(notification).map_err(|e| Failure::Dead(e.to_string()))?,
        })
        .map_err(|e| Failure::Retry(format!("emitting notification.feishu.requested: {e}")))?;
    }
    log(
        Level::Info,
        &format!(
            "trigger {} decided {}: {}",
            trigger.trigger_id, decision.record.status, decision.record.reason
        ),
    );
    put(&key, &decision.record)
}

fn get<T: DeserializeOwned>(key: &str) -> Step<Option<T>> {
    match state::get(key).map_err(Failure::Retry)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Failure::Dead(format!("stored value {key} is corrupt: {e}"))),
    }
}

fn put<T: Serialize>(key: &str, value: &T) -> Step<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Failure::Dead(e.to_string()))?;
    state::set(key, &bytes).map_err(Failure::Retry)
}
