//! Switchyard: a host for event handlers shipped as WebAssembly components, with a
//! transactional outbox, a relay and a consumer per service.
//!
//! See `ARCHITECTURE.md` for the module map and the invariants each module keeps.

pub mod admin;
pub mod catalog;
pub mod config;
pub mod devtools;
pub mod engine;
pub mod envelope;
pub mod handler_sql;
pub mod live;
pub mod runtime;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod traces;
pub mod transport;

pub use engine::{NewEvent, Outbox, Running, Switchyard};
