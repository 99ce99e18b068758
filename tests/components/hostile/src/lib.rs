//! A hostile handler for the sandbox tests. The payload picks the attack:
//! `{"attack": "loop" | "memory" | "recurse" | "table" | "emit-flood" | "emit-bytes" |
//!  "state-flood" | "state-bytes" | "sleep" | "poll" | "forge-log" | "ping" | "log-flood" |
//!  "read-file" |
//!  "env" | "connect", "arg": "..."}`.
//! Attacks that the host answers with an error value (not a trap) end the invocation as `dead`
//! with that error, so the tests can read what the guest was told.

mod bindings {
    wit_bindgen::generate!({ world: "service-handler", path: "../../../wit" });
}

use bindings::exports::switchyard::handler::handler::Guest;
use bindings::switchyard::handler::emit::{FollowUp, emit};
use bindings::switchyard::handler::log::{Level, log};
use bindings::switchyard::handler::state;
use bindings::switchyard::handler::types::{Event, Outcome};
use serde::Deserialize;

struct Component;
bindings::export!(Component with_types_in bindings);

#[derive(Deserialize)]
struct Attack {
    attack: String,
    #[serde(default)]
    arg: String,
}

impl Guest for Component {
    fn handle(event: Event) -> Outcome {
        let attack: Attack = match serde_json::from_slice(&event.payload) {
            Ok(a) => a,
            Err(e) => return Outcome::Dead(format!("not an attack: {e}")),
        };
        // A write that must never survive a failed invocation.
        let _ = state::set("hostile-was-here", b"1");
        match attack.attack.as_str() {
            "loop" => loop {
                std::hint::black_box(0u64);
            },
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => Outcome::Dead(format!("recursed {}", recurse(std::hint::black_box(1)))),
            "table" => {
                // Every call creates a resource handle in the host's table; never dropped.
                loop {
                    std::mem::forget(wasip2::cli::stdout::get_stdout());
                }
            }
            "emit-flood" => {
                for i in 0..100_000 {
                    let follow_up = FollowUp {
                        event_type: attack.arg.clone(),
                        event_version: String::new(),
                        aggregate_id: String::new(),
                        message_key: i.to_string(),
                        payload: b"{}".to_vec(),
                    };
                    if let Err(e) = emit(&follow_up) {
                        return Outcome::Dead(format!("emit {i} refused: {e}"));
                    }
                }
                Outcome::Ack
            }
            "emit-bytes" => {
                // Payloads just under max_value_bytes, until the per-invocation byte budget.
                let payload = format!("\"{}\"", "x".repeat(60_000)).into_bytes();
                for i in 0..100_000 {
                    let follow_up = FollowUp {
                        event_type: attack.arg.clone(),
                        event_version: String::new(),
                        aggregate_id: String::new(),
                        message_key: String::new(),
                        payload: payload.clone(),
                    };
                    if let Err(e) = emit(&follow_up) {
                        return Outcome::Dead(format!("emit {i} refused: {e}"));
                    }
                }
                Outcome::Ack
            }
            "state-flood" => {
                // The same key again and again: each write is buffered by the host.
                for i in 0..10_000_000u64 {
                    if let Err(e) = state::set("same-key", &[7u8; 1024]) {
                        return Outcome::Dead(format!("state write {i} refused: {e}"));
                    }
                }
                Outcome::Ack
            }
            "state-bytes" => {
                for i in 0..100_000u64 {
                    if let Err(e) = state::set(&format!("k{i}"), &vec![7u8; 60_000]) {
                        return Outcome::Dead(format!("state write {i} refused: {e}"));
                    }
                }
                Outcome::Ack
            }
            "sleep" => {
                // Blocked in WASI's poll (what std::thread::sleep compiles to), not in guest code.
                std::thread::sleep(std::time::Duration::from_secs(30));
                Outcome::Ack
            }
            "poll" => {
                wasip2::clocks::monotonic_clock::subscribe_duration(30_000_000_000).block();
                Outcome::Ack
            }
            "forge-log" => {
                let forged = "\n2026-12-02T00:00:00.000000Z ERROR switchyard: payment failed service=payments";
                log(Level::Info, &format!("hello{forged}"));
                println!("hello{forged}");
                Outcome::Ack
            }
            "ping" => {
                // Emits its own event again: a chain of emits that never ends by itself.
                let follow_up = FollowUp {
                    event_type: attack.arg.clone(),
                    event_version: String::new(),
                    aggregate_id: String::new(),
                    message_key: String::new(),
                    payload: event.payload.clone(),
                };
                match emit(&follow_up) {
                    Ok(()) => Outcome::Ack,
                    Err(e) => Outcome::Dead(format!("ping refused: {e}")),
                }
            }
            "oversized-state" => match state::set("big", &vec![0u8; 4 << 20]) {
                Err(e) => Outcome::Dead(format!("state refused: {e}")),
                Ok(()) => Outcome::Ack,
            },
            "log-flood" => {
                let line = "x".repeat(1024);
                // 5,000 lines of 1 KiB per stream: 80 times the 64 KiB cap, and quick even in a
                // debug host under a loaded test run (the route's deadline is 2 s).
                for _ in 0..5_000 {
                    log(Level::Info, &line);
                    println!("{line}");
                }
                Outcome::Ack
            }
            "read-file" => match std::fs::read(&attack.arg) {
                Ok(bytes) => Outcome::Dead(format!("read {} bytes of {}", bytes.len(), attack.arg)),
                Err(e) => Outcome::Dead(format!("read-file failed: {e}")),
            },
            "write-file" => match std::fs::write(&attack.arg, b"pwned") {
                Ok(()) => Outcome::Dead(format!("wrote {}", attack.arg)),
                Err(e) => Outcome::Dead(format!("write-file failed: {e}")),
            },
            "env" => match std::env::var(&attack.arg) {
                Ok(v) => Outcome::Dead(format!("env {}={v}", attack.arg)),
                Err(e) => Outcome::Dead(format!("env failed: {e}")),
            },
            "connect" => match std::net::TcpStream::connect(&attack.arg) {
                Ok(_) => Outcome::Dead(format!("connected to {}", attack.arg)),
                Err(e) => Outcome::Dead(format!("connect failed: {e}")),
            },
            other => Outcome::Dead(format!("unknown attack {other}")),
        }
    }
}

/// Recursion without locals in linear memory, so it is wasmtime's guard on the native stack
/// (not the guest's shadow stack) that stops it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    std::hint::black_box(recurse(depth + 1)) + 1
}
