//! A test component whose behaviour is chosen by its payload, so one component can prove every
//! outcome path of the host. Steps run in order: `expect` state values (dead when one differs;
//! a missing key reads as ""), `set` state writes, `incr` counters, `emit` follow-ups, then
//! `action` (`ack`, `retry`, `dead`, `trap`, `loop`; default `ack`).
//!
//! ```json
//! {"expect": {"last": "1"}, "set": {"k": "v"}, "incr": ["applied"],
//!  "emit": [{"event_type": "t", "payload": {}}], "action": "retry", "reason": "why",
//!  "delay_ms": 30000}
//! ```

// Built lean: the allocator that keeps a fresh instance from growing its memory.
extern crate switchyard_lean_alloc;

mod bindings {
    wit_bindgen::generate!({ world: "service-handler", path: "../../../wit/0.1.0" });
}

use bindings::exports::switchyard::handler::handler::Guest;
use bindings::switchyard::handler::emit::{FollowUp, emit};
use bindings::switchyard::handler::log::{Level, log};
use bindings::switchyard::handler::state;
use bindings::switchyard::handler::types::{Event, Outcome, RetryRequest};
use serde::Deserialize;
use std::collections::BTreeMap;

struct Component;
bindings::export!(Component with_types_in bindings);

#[derive(Deserialize, Default)]
#[serde(default)]
struct Script {
    /// State each key must hold before this event (its order relative to earlier events).
    expect: BTreeMap<String, String>,
    set: BTreeMap<String, String>,
    incr: Vec<String>,
    emit: Vec<Emit>,
    action: String,
    reason: String,
    /// The `delay-ms` hint of a `retry` action.
    delay_ms: Option<u64>,
    /// Record which build handled this event: state `ran/<outbox_id>` = the build tag.
    record: bool,
}

#[derive(Deserialize)]
struct Emit {
    event_type: String,
    #[serde(default)]
    key: String,
    payload: serde_json::Value,
}

/// Set at build time by the tests (PROBE_BUILD_TAG), so two builds of this crate differ.
const BUILD_TAG: &str = match option_env!("PROBE_BUILD_TAG") {
    Some(t) => t,
    None => "a",
};

impl Guest for Component {
    fn handle(event: Event) -> Outcome {
        let script: Script = match serde_json::from_slice(&event.payload) {
            Ok(s) => s,
            Err(e) => return Outcome::Dead(format!("probe payload is not a script: {e}")),
        };
        if script.record
            && let Err(e) = state::set(&format!("ran/{}", event.outbox_id), BUILD_TAG.as_bytes())
        {
            return Outcome::Retry(RetryRequest {
                reason: e,
                delay_ms: None,
            });
        }
        for (k, want) in &script.expect {
            let found = state::get(k)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if &found != want {
                return Outcome::Dead(format!("expected state {k} = {want:?}, found {found:?}"));
            }
        }
        for (k, v) in &script.set {
            if let Err(e) = state::set(k, v.as_bytes()) {
                return Outcome::Retry(RetryRequest {
                    reason: e,
                    delay_ms: None,
                });
            }
        }
        if let Err(e) = state::set("build", BUILD_TAG.as_bytes()) {
            return Outcome::Retry(RetryRequest {
                reason: e,
                delay_ms: None,
            });
        }
        for k in &script.incr {
            let current = state::get(k)
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0);
            if let Err(e) = state::set(k, (current + 1).to_string().as_bytes()) {
                return Outcome::Retry(RetryRequest {
                    reason: e,
                    delay_ms: None,
                });
            }
        }
        for e in &script.emit {
            let follow_up = FollowUp {
                event_type: e.event_type.clone(),
                event_version: String::new(),
                aggregate_id: event.aggregate_id.clone(),
                message_key: e.key.clone(),
                payload: e.payload.to_string().into_bytes(),
            };
            if let Err(err) = emit(&follow_up) {
                return Outcome::Dead(format!("emit refused: {err}"));
            }
        }
        log(
            Level::Info,
            &format!("probe {} attempt {}", script.action, event.attempt),
        );
        match script.action.as_str() {
            "" | "ack" => Outcome::Ack,
            "retry" => Outcome::Retry(RetryRequest {
                reason: script.reason,
                delay_ms: script.delay_ms,
            }),
            "dead" => Outcome::Dead(script.reason),
            "trap" => panic!("probe asked to trap"),
            "loop" => loop {
                std::hint::black_box(0);
            },
            other => Outcome::Dead(format!("unknown probe action {other}")),
        }
    }
}
