//! One invocation: the per-`Store` state, the host imports, and the call itself.
//!
//! Everything the guest does through an import is buffered here: state writes in order, emits
//! as ready-to-insert rows. The engine commits the buffer only for an `ack`; for anything else
//! the buffer is dropped with the store.

use super::bindings::switchyard::handler::{emit, log, state, types};
use super::loader::LoadedComponent;
use crate::catalog::Catalog;
use crate::config::LimitsConfig;
use crate::store::{Effects, NewRow};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Bytes of guest log output kept per invocation; the rest is counted and dropped.
const LOG_BUDGET_BYTES: usize = 64 * 1024;

/// Committed (or batch-visible) state, as the engine lets a handler read it.
#[async_trait]
pub trait StateReader: Send + Sync {
    /// The value of `key` in `service`'s state, or `None`.
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
}

/// The event as the runtime hands it to the guest.
#[derive(Debug, Clone)]
pub struct EventData {
    pub outbox_id: i64,
    pub event_id: String,
    pub event_type: String,
    pub event_version: String,
    pub service: String,
    pub aggregate_id: String,
    pub message_key: String,
    pub payload: Vec<u8>,
    pub attempt: u32,
}

/// What the handler decided, with traps and limits folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    /// A failed attempt: handler `retry`, trap, deadline or limit.
    Retry {
        reason: String,
    },
    Dead {
        reason: String,
    },
}

/// The result of one invocation.
#[derive(Debug)]
pub struct InvocationOutput {
    pub outcome: Outcome,
    /// Only meaningful when `outcome` is `Ack`.
    pub effects: Effects,
    pub elapsed: Duration,
}

/// Caps linear memory and tables, remembering which cap was hit so the reason is clear.
struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    exceeded: Option<String>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let reason = format!(
                "memory limit exceeded: tried to grow linear memory from {current} to {desired} bytes, cap is {} bytes",
                self.memory_bytes
            );
            self.exceeded = Some(reason.clone());
            return Err(wasmtime::Error::msg(reason));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let reason = format!(
                "table limit exceeded: tried to grow a table from {current} to {desired} elements, cap is {}",
                self.table_elements
            );
            self.exceeded = Some(reason.clone());
            return Err(wasmtime::Error::msg(reason));
        }
        Ok(true)
    }
}

/// The `T` of every handler `Store`: WASI (nothing granted), limits, and the effect buffer.
pub struct Invocation {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    service: String,
    event_type: String,
    outbox_id: i64,
    version: String,
    catalog: Arc<Catalog>,
    reader: Arc<dyn StateReader>,
    max_value_bytes: usize,
    max_emits: u32,
    max_retry: i32,
    effects: Effects,
    log_bytes: usize,
}

impl WasiView for Invocation {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for Invocation {}

impl state::Host for Invocation {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        // Own writes first (latest wins), then what the engine says is visible.
        if let Some((_, v)) = self.effects.writes.iter().rev().find(|(k, _)| *k == key) {
            return Ok(Ok(v.clone()));
        }
        Ok(self.reader.get(&self.service, &key).await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = self.check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > self.max_value_bytes {
            return Ok(Err(format!(
                "state value for {key:?} is {} bytes, limit is {} bytes",
                value.len(),
                self.max_value_bytes
            )));
        }
        self.effects.writes.push((key, Some(value)));
        Ok(Ok(()))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = self.check_key(&key) {
            return Ok(Err(e));
        }
        self.effects.writes.push((key, None));
        Ok(Ok(()))
    }
}

impl Invocation {
    fn check_key(&self, key: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > 512 {
            return Err(format!(
                "state key must be 1-512 bytes, got {} bytes",
                key.len()
            ));
        }
        Ok(())
    }
}

impl emit::Host for Invocation {
    async fn emit(&mut self, event: emit::FollowUp) -> wasmtime::Result<Result<(), String>> {
        if self.effects.emits.len() as u32 >= self.max_emits {
            return Ok(Err(format!(
                "emit limit reached: at most {} emits per invocation",
                self.max_emits
            )));
        }
        let route = match self.catalog.route(&event.event_type) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if event.payload.len() > self.max_value_bytes {
            return Ok(Err(format!(
                "payload of {} is {} bytes, limit is {} bytes",
                event.event_type,
                event.payload.len(),
                self.max_value_bytes
            )));
        }
        let payload: serde_json::Value = match serde_json::from_slice(&event.payload) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(format!(
                    "payload of {} is not JSON: {e}",
                    event.event_type
                )));
            }
        };
        let version = if event.event_version.is_empty() {
            "v1".to_owned()
        } else {
            event.event_version
        };
        let wrapper = crate::envelope::Wrapper {
            event_id: None,
            event_type: event.event_type.clone(),
            event_version: Some(version),
            aggregate_id: Some(event.aggregate_id),
            payload,
        };
        let service = &route.service;
        self.effects.emits.push(NewRow {
            table: service.table.clone(),
            biz_type: event.event_type,
            service_name: service.name.clone(),
            topic: service.topic.clone(),
            message_key: event.message_key,
            payload: wrapper.to_json(),
            max_retry: self.max_retry,
        });
        Ok(Ok(()))
    }
}

impl log::Host for Invocation {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.log_bytes += message.len();
        if self.log_bytes > LOG_BUDGET_BYTES {
            return Ok(());
        }
        let (service, event_type, version, outbox_id) = (
            &self.service,
            &self.event_type,
            &self.version,
            self.outbox_id,
        );
        macro_rules! emit_log {
            ($lvl:ident) => {
                tracing::$lvl!(target: "switchyard::guest", %service, %event_type, %version, outbox_id, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit_log!(trace),
            log::Level::Debug => emit_log!(debug),
            log::Level::Info => emit_log!(info),
            log::Level::Warn => emit_log!(warn),
            log::Level::Error => emit_log!(error),
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    engine: &wasmtime::Engine,
    component: &LoadedComponent,
    catalog: &Arc<Catalog>,
    reader: Arc<dyn StateReader>,
    event: EventData,
    limits: &LimitsConfig,
    max_retry: i32,
    tick: Duration,
) -> InvocationOutput {
    let started = Instant::now();
    let data = Invocation {
        // Nothing granted: no preopened dirs, no env, no args, no sockets, no inherited stdio.
        wasi: WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        limiter: Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: 100_000,
            exceeded: None,
        },
        service: event.service.clone(),
        event_type: event.event_type.clone(),
        outbox_id: event.outbox_id,
        version: component.short_hash().to_owned(),
        catalog: catalog.clone(),
        reader,
        max_value_bytes: limits.max_value_bytes,
        max_emits: limits.max_emits,
        max_retry,
        effects: Effects::default(),
        log_bytes: 0,
    };
    let mut store = Store::new(engine, data);
    store.limiter(|s| &mut s.limiter);
    let ticks = (limits.deadline_ms / tick.as_millis().max(1) as u64).max(1);
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    let wit_event = types::Event {
        outbox_id: event.outbox_id,
        event_id: event.event_id,
        event_type: event.event_type,
        event_version: event.event_version,
        service: event.service,
        aggregate_id: event.aggregate_id,
        message_key: event.message_key,
        payload: event.payload,
        attempt: event.attempt,
    };
    let result = async {
        let handler = component.pre.instantiate_async(&mut store).await?;
        handler
            .switchyard_handler_handler()
            .call_handle(&mut store, &wit_event)
            .await
    }
    .await;
    let elapsed = started.elapsed();
    let data = store.into_data();
    let outcome = match result {
        Ok(types::Outcome::Ack) => Outcome::Ack,
        Ok(types::Outcome::Retry(r)) => Outcome::Retry { reason: r.reason },
        Ok(types::Outcome::Dead(reason)) => Outcome::Dead { reason },
        Err(e) => Outcome::Retry {
            reason: classify_failure(&e, &data.limiter, limits.deadline_ms),
        },
    };
    let effects = if outcome == Outcome::Ack {
        data.effects
    } else {
        Effects::default()
    };
    InvocationOutput {
        outcome,
        effects,
        elapsed,
    }
}

/// Turns a wasmtime error into the reason recorded on the row.
fn classify_failure(e: &wasmtime::Error, limiter: &Limiter, deadline_ms: u64) -> String {
    if let Some(reason) = &limiter.exceeded {
        return reason.clone();
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("deadline exceeded after {deadline_ms} ms"),
        Some(Trap::StackOverflow) => "trap: stack overflow".to_owned(),
        Some(trap) => format!(
            "trap: {}",
            trap.to_string().trim_start_matches("wasm trap: ")
        ),
        None => format!("handler failed: {e:#}"),
    }
}
