//! The environment variables the route grants (`env` in its config), read through WASI's
//! `wasi:cli/environment` import directly.
//!
//! Use it instead of `std::env::var`: a component built lean (for `wasm32-unknown-unknown`,
//! docs/writing-handlers.md) has no std environment, and on `wasm32-wasip2` std's goes through
//! the WASI preview 1 adapter (see [`crate::clock`]).

/// The value of `name`, or `None` when the route does not grant it.
pub fn var(name: &str) -> Option<String> {
    wasip2::cli::environment::get_environment()
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}
