//! Write a Switchyard event handler in Rust: implement [`Handler`], export it with
//! [`handler!`], and reach the host through [`state`], [`emit`], [`log`], [`sql`] and [`http`];
//! read the time with [`clock`] and the route's environment with [`env`].
//!
//! ```no_run
//! use serde::Deserialize;
//! use switchyard_sdk::{Event, Handler, HandlerResult, dead, log};
//!
//! #[derive(Deserialize)]
//! struct Greet { name: String }
//!
//! struct Greeter;
//! impl Handler for Greeter {
//!     fn handle(event: &Event) -> HandlerResult {
//!         let greet: Greet = switchyard_sdk::payload(event)?; // bad JSON: dead, serde's message
//!         if greet.name.is_empty() {
//!             return dead("name must not be empty");
//!         }
//!         log::info(&format!("hello, {}", greet.name));
//!         Ok(()) // ack
//!     }
//! }
//! switchyard_sdk::handler!(Greeter);
//! ```
//!
//! The bindings for contract `switchyard:handler@0.2.0` (`wit/` at the repository root) are
//! generated here, once, for the `notifying-handler` world: a component only imports what it
//! calls, so one that never calls [`http::send`] or [`sql`] does not import them and needs no
//! grant for them. This crate owns no business rule; it only turns the contract's shapes into
//! Rust ones and the host's errors into a [`Failure`].
//!
//! A handler built with this crate needs no WASI beyond what it calls, so it builds lean, for
//! `wasm32-unknown-unknown` linked by rustc's `wasm-component-ld`: a component without the
//! WASI preview 1 adapter, which instantiates faster on every event (docs/writing-handlers.md).
//! A panic is reported through [`log`] at error level before the instance traps.
//! Its global allocator (feature `lean-alloc`, on by default) starts the heap in the initial
//! memory, so an event never grows it (`switchyard-lean-alloc`).

#[cfg(feature = "lean-alloc")]
extern crate switchyard_lean_alloc;

pub mod clock;
pub mod emit;
pub mod env;
pub mod http;
pub mod log;
pub mod sql;
pub mod state;

use serde::de::DeserializeOwned;
use std::time::Duration;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "notifying-handler",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "switchyard_sdk::bindings",
        export_macro_name: "export_handler",
    });
}

/// One delivered event (the contract's `event` record): type, version, keys, JSON payload
/// bytes and the attempt number.
pub use bindings::switchyard::handler::types::Event;

/// A handler component: one function from an event to its outcome.
pub trait Handler {
    /// Handles one event. `Ok(())` acknowledges it (its state writes, emits and SQL commit
    /// with the consumed mark); an `Err` is the [`Failure`] the host records.
    fn handle(event: &Event) -> HandlerResult;
}

/// Why a handler did not succeed; each variant is one of the contract's outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The event can never succeed (bad payload, unsupported version): the row goes dead.
    Dead(String),
    /// Transient (a host call was refused, a send failed): try again after the backoff.
    Retry(String),
    /// Transient, and the next attempt should wait at least this many milliseconds (capped
    /// by the service's `backoff_max_ms`).
    RetryAfter(String, u64),
}

impl Failure {
    /// The reason, whatever the outcome.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Dead(r) | Failure::Retry(r) | Failure::RetryAfter(r, _) => r,
        }
    }

    /// A retry without a delay of its own gets `delay_ms`; other failures are unchanged.
    /// For a handler whose every retry should wait (e.g. a webhook's backoff).
    #[must_use]
    pub fn with_retry_delay(self, delay_ms: u64) -> Failure {
        match self {
            Failure::Retry(r) => Failure::RetryAfter(r, delay_ms),
            other => other,
        }
    }
}

/// What a handler, or a step of one, returns: `Ok` to go on (or acknowledge), a [`Failure`].
pub type HandlerResult<T = ()> = Result<T, Failure>;

/// Acknowledge the event.
pub fn ack() -> HandlerResult {
    Ok(())
}

/// A dead outcome with a reason.
///
/// # Errors
/// Always: [`Failure::Dead`].
pub fn dead<T>(reason: impl Into<String>) -> HandlerResult<T> {
    Err(Failure::Dead(reason.into()))
}

/// A retry after the service's backoff.
///
/// # Errors
/// Always: [`Failure::Retry`].
pub fn retry<T>(reason: impl Into<String>) -> HandlerResult<T> {
    Err(Failure::Retry(reason.into()))
}

/// A retry no sooner than `delay` from now.
///
/// # Errors
/// Always: [`Failure::RetryAfter`].
pub fn retry_after<T>(reason: impl Into<String>, delay: Duration) -> HandlerResult<T> {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    Err(Failure::RetryAfter(reason.into(), ms))
}

/// The event's JSON payload as `T`.
///
/// # Errors
/// Dead, `invalid <event type> payload: <serde's message>` (which names the field and
/// position): the same bytes would fail on every attempt.
pub fn payload<T: DeserializeOwned>(event: &Event) -> HandlerResult<T> {
    decode(&event.event_type, &event.payload)
}

/// JSON bytes as `T`, a failure naming `what` (an event type) being dead.
///
/// # Errors
/// Dead, `invalid <what> payload: <serde's message>`.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> HandlerResult<T> {
    serde_json::from_slice(bytes).map_err(|e| Failure::Dead(format!("invalid {what} payload: {e}")))
}

/// The contract's outcome for a handler's result (used by [`handler!`]).
#[doc(hidden)]
pub fn outcome(result: HandlerResult) -> bindings::switchyard::handler::types::Outcome {
    use bindings::switchyard::handler::types::{Outcome, RetryRequest};
    match result {
        Ok(()) => Outcome::Ack,
        Err(Failure::Dead(reason)) => Outcome::Dead(reason),
        Err(Failure::Retry(reason)) => Outcome::Retry(RetryRequest {
            reason,
            delay_ms: None,
        }),
        Err(Failure::RetryAfter(reason, ms)) => Outcome::Retry(RetryRequest {
            reason,
            delay_ms: Some(ms),
        }),
    }
}

/// Sends a panic's message to the host's log at error level (once per instance, used by
/// [`handler!`]). std's default hook writes to stderr, which a lean build does not have; the
/// instance then traps, and the host retries the event with the trap as the reason.
#[doc(hidden)]
pub fn report_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|panic| {
            log::error(&format!("handler panicked: {panic}"));
        }));
    });
}

/// Exports a [`Handler`] as the component's `handler` interface (contract 0.2.0). Use it
/// once, in the crate built as the component (`crate-type = ["cdylib"]`).
#[macro_export]
macro_rules! handler {
    ($handler:ty) => {
        const _: () = {
            struct SwitchyardExport;
            impl $crate::bindings::exports::switchyard::handler::handler::Guest for SwitchyardExport {
                fn handle(
                    event: $crate::Event,
                ) -> $crate::bindings::switchyard::handler::types::Outcome {
                    $crate::report_panics();
                    $crate::outcome(<$handler as $crate::Handler>::handle(&event))
                }
            }
            $crate::bindings::export_handler!(SwitchyardExport with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_that_does_not_decode_is_dead_with_serdes_message() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only decoded")]
        struct P {
            user_id: i64,
        }
        let err = decode::<P>("x.requested", br#"{"user_id":"7"}"#).unwrap_err();
        assert_eq!(
            err,
            Failure::Dead(
                "invalid x.requested payload: invalid type: string \"7\", expected i64 at line 1 column 14"
                    .into()
            )
        );
    }

    #[test]
    fn each_failure_is_its_outcome() {
        use bindings::switchyard::handler::types::Outcome;
        assert!(matches!(outcome(ack()), Outcome::Ack));
        assert!(matches!(outcome(dead("bad")), Outcome::Dead(r) if r == "bad"));
        assert!(matches!(outcome(retry("later")), Outcome::Retry(r) if r.delay_ms.is_none()));
        let delayed = retry_after("later", Duration::from_secs(2));
        assert!(matches!(outcome(delayed), Outcome::Retry(r) if r.delay_ms == Some(2000)));
        let slow = Failure::Retry("busy".into()).with_retry_delay(500);
        assert_eq!(slow, Failure::RetryAfter("busy".into(), 500));
        assert_eq!(
            Failure::Dead("no".into()).with_retry_delay(500),
            Failure::Dead("no".into())
        );
    }
}
