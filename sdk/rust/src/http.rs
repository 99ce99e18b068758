//! Outbound HTTP (`outbound-http` import, at-least-once). A component that calls [`send`]
//! imports it, and its route must grant the destination (`allowed_hosts`) or it is refused
//! at load.

pub use crate::bindings::switchyard::handler::outbound_http::{Request, Response, send};
