//! A handler written with `switchyard-sdk` and built lean (`wasm32-unknown-unknown`, no WASI
//! preview 1 adapter), so the tests prove what such a build keeps: a panic's message, the wall
//! clock and the route's env.
//!
//! ```json
//! {"action": "panic", "arg": "why"}     // panics with `sdk-probe panicked on purpose: why`
//! {"action": "clock"}                   // state `now` = Unix seconds by the wall clock
//! {"action": "env", "arg": "NAME"}      // state `env` = the variable's value, or `<unset>`
//! ```

use serde::Deserialize;
use std::time::UNIX_EPOCH;
use switchyard_sdk::{Event, Handler, HandlerResult, dead, state};

#[derive(Deserialize)]
struct Script {
    action: String,
    #[serde(default)]
    arg: String,
}

struct SdkProbe;

impl Handler for SdkProbe {
    fn handle(event: &Event) -> HandlerResult {
        let script: Script = switchyard_sdk::payload(event)?;
        match script.action.as_str() {
            "panic" => panic!("sdk-probe panicked on purpose: {}", script.arg),
            "clock" => {
                let now = switchyard_sdk::clock::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| switchyard_sdk::Failure::Dead(e.to_string()))?;
                state::set_raw("now", now.as_secs().to_string().as_bytes())
            }
            "env" => {
                let value = switchyard_sdk::env::var(&script.arg);
                state::set_raw("env", value.as_deref().unwrap_or("<unset>").as_bytes())
            }
            other => dead(format!("unknown action {other:?}")),
        }
    }
}

switchyard_sdk::handler!(SdkProbe);
