//! The wall clock, read through WASI's `wasi:clocks/wall-clock` import directly.
//!
//! Use it instead of `std::time::SystemTime::now()`. A component built lean (for
//! `wasm32-unknown-unknown`, docs/writing-handlers.md) has no std clock: there
//! `SystemTime::now()` panics. On `wasm32-wasip2`, std's clock goes through the WASI preview 1
//! adapter, an extra core instance every event's fresh instance then pays to create.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, by the host's wall clock.
pub fn now() -> SystemTime {
    let now = wasip2::clocks::wall_clock::now();
    UNIX_EPOCH + Duration::new(now.seconds, now.nanoseconds)
}
