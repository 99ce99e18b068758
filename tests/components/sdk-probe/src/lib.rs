//! A handler written with `switchyard-sdk` and built lean (`wasm32-unknown-unknown`, no WASI
//! preview 1 adapter), so the tests prove what such a build keeps: a panic's message, the wall
//! clock, the route's env, and a heap that grows past its initial part up to the route's cap.
//!
//! ```json
//! {"action": "panic", "arg": "why"}     // panics with `sdk-probe panicked on purpose: why`
//! {"action": "clock"}                   // state `now` = Unix seconds by the wall clock
//! {"action": "env", "arg": "NAME"}      // state `env` = the variable's value, or `<unset>`
//! {"action": "alloc", "arg": "8388608"} // fills that many bytes; state `allocated` = the count
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
            "alloc" => {
                let bytes: usize = script
                    .arg
                    .parse()
                    .map_err(|e| switchyard_sdk::Failure::Dead(format!("alloc: {e}")))?;
                let filled = vec![1u8; bytes];
                let count: usize = filled.iter().map(|&b| usize::from(b)).sum();
                state::set_raw("allocated", count.to_string().as_bytes())
            }
            other => dead(format!("unknown action {other:?}")),
        }
    }
}

switchyard_sdk::handler!(SdkProbe);
