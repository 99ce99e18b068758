//! One invocation: the per-`Store` state, its limits, and the call itself.
//!
//! A fresh instance per event from the route's pre-instantiated component. Limits are set on
//! every store: memory (all of an instance's linear memories together), tables and instance
//! counts through a `ResourceLimiter`, a wall-clock deadline through the host's epoch ticker
//! (the guest yields to the executor at every tick, so a spinning guest never starves other
//! routes) and, for time spent blocked in a host call (WASI clocks and poll, outbound HTTP, a
//! state read), a timer around the whole call; optional fuel; per-import budgets
//! ([`Budget`]). Whatever the guest does, the outcome is data: a trap or a limit becomes a
//! `Retry` with the reason, cut to 2,000 bytes.

use super::bindings::{v0_1, v0_2};
use super::budget::Budget;
use super::effects::Effects;
use super::loader::{LoadedComponent, Pre};
use super::output::CappedOutput;
use super::policy::Policy;
use crate::catalog::Catalog;
use crate::handler_sql::{Backend, RowAllowance, SqlFailure, SqlOutput, SqlStatement};
use crate::text::{cut_reason, escape_controls};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How long an invocation computes at full speed. Past it, every epoch tick (10 ms) it runs is
/// followed by a pause of [`LONG_RUNNER_PAUSE`]: a handler that is still computing after this
/// long is an exception (event handlers take microseconds to milliseconds), and a looping one
/// must not cost its neighbours a core for its whole deadline.
const FAIR_SLICE: Duration = Duration::from_millis(100);

/// The pause after each tick of an invocation past its [`FAIR_SLICE`]: it then gets at most a
/// third of a core.
const LONG_RUNNER_PAUSE: Duration = Duration::from_millis(20);

/// Core instances, tables and memories one component instance may create. A Rust component
/// uses a handful of each; the caps stop a guest that instantiates in a loop.
const MAX_INSTANCES: usize = 32;
const MAX_TABLES: usize = 32;
const MAX_MEMORIES: usize = 8;

/// What the engine lets a handler reach of its batch: committed (or batch-visible) state, and
/// the batch's transaction for `sql` statements.
#[async_trait]
pub trait BatchAccess: Send + Sync {
    /// The value of `key` in `service`'s state, or `None`.
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, String>;

    /// The database `sql` statements run on; `None` where there is none (then `sql` fails).
    fn backend(&self) -> Option<Backend> {
        None
    }

    /// Runs a checked statement in the batch's transaction, under the invocation's savepoint.
    async fn sql(
        &self,
        _statement: SqlStatement<'_>,
        _allowance: RowAllowance,
    ) -> Result<SqlOutput, SqlFailure> {
        Err(SqlFailure::Statement("no database is attached here".into()))
    }
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
    /// How many emits separate this event from its producer's (0: a producer's event).
    pub chain_depth: u32,
}

/// What the handler decided, with traps and limits folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    /// A failed attempt: handler `retry`, trap, deadline or limit.
    Retry {
        reason: String,
        /// The handler's `delay-ms` hint (only a handler's own `retry` carries one): the store
        /// waits at least this long, within the service's backoff ceiling.
        delay: Option<Duration>,
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

/// Caps memory, tables and instance counts, remembering which cap was hit so the reason says so.
struct Limiter {
    /// The cap on all of the instance's linear memories together.
    memory_bytes: usize,
    /// Bytes of linear memory the instance holds now, across its memories.
    memory_in_use: usize,
    table_elements: usize,
    exceeded: Option<String>,
}

impl Limiter {
    fn refuse(&mut self, reason: String) -> wasmtime::Result<bool> {
        self.exceeded = Some(reason.clone());
        Err(wasmtime::Error::msg(reason))
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Called for every memory (at creation with current = 0, then at each growth), so the
        // sum of the deltas is what the whole instance holds.
        let total = self
            .memory_in_use
            .saturating_add(desired.saturating_sub(current));
        if total > self.memory_bytes {
            let cap = self.memory_bytes;
            return self.refuse(format!(
                "memory limit exceeded: linear memory would grow from {current} to {desired} bytes \
                 ({total} bytes across the instance's memories), cap is {cap} bytes"
            ));
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let cap = self.table_elements;
            return self.refuse(format!(
                "table limit exceeded: a table would grow from {current} to {desired} elements, cap is {cap}"
            ));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The `T` of every handler `Store`: WASI (only what the route grants), limits, and the effect
/// buffer the imports fill.
pub struct Invocation {
    /// Built on the guest's first WASI call (most handlers make none; the wall clock and the
    /// environment are answered without it, `wasi_direct`), unless the route preopens
    /// directories: opening them can fail, and that failure must be the outcome.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    limiter: Limiter,
    pub(super) policy: Arc<Policy>,
    pub(super) service: String,
    pub(super) event_type: String,
    pub(super) outbox_id: i64,
    pub(super) chain_depth: u32,
    pub(super) version: String,
    pub(super) catalog: Arc<Catalog>,
    pub(super) batch: Arc<dyn BatchAccess>,
    pub(super) effects: Effects,
    /// Set when a `sql` statement failed other than by a constraint: the invocation is then
    /// retried whatever it returns.
    pub(super) sql_failure: Option<String>,
    pub(super) budget: Budget,
    /// Captured stdio and the output budget the `log` import shares with it.
    pub(super) output: CappedOutput,
}

impl WasiView for Invocation {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (policy, output) = (&self.policy, &self.output);
        // Only a route without preopened directories leaves it unbuilt, and for it building
        // cannot fail.
        let ctx = self
            .wasi
            .get_or_insert_with(|| wasi_builder(policy, output).build());
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// The guest's WASI context without its directories: the route's env, captured stdio, no
/// network. Nothing of the host's own environment, args or filesystem.
fn wasi_builder(policy: &Policy, output: &CappedOutput) -> WasiCtxBuilder {
    let mut b = WasiCtxBuilder::new();
    b.stdout(output.clone()).stderr(output.clone());
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    b.envs(&policy.env);
    b
}

/// Builds the guest's WASI context now if the route preopens directories (opening one can
/// fail), with them read-only; `None` otherwise: [`Invocation::ctx`] builds it on the guest's
/// first WASI call. Building it costs about a microsecond (two builders' random generators,
/// clocks and boxed streams), and a handler that never calls WASI need not pay it.
fn wasi_for(policy: &Policy, output: &CappedOutput) -> Result<Option<WasiCtx>, String> {
    if policy.preopened_dirs.is_empty() {
        return Ok(None);
    }
    let mut b = wasi_builder(policy, output);
    for (host, guest) in &policy.preopened_dirs {
        b.preopened_dir(host, guest, FsPerms::ReadOnly)
            .map_err(|e| format!("cannot open granted directory {}: {e}", host.display()))?;
    }
    Ok(Some(b.build()))
}

pub(super) async fn run(
    component: &LoadedComponent,
    policy: &Arc<Policy>,
    catalog: &Arc<Catalog>,
    batch: Arc<dyn BatchAccess>,
    event: EventData,
    fuel_enabled: bool,
) -> InvocationOutput {
    let started = Instant::now();
    let output = CappedOutput::new(policy.limits.max_log_bytes);
    let wasi = match wasi_for(policy, &output) {
        Ok(w) => w,
        Err(reason) => {
            return InvocationOutput {
                outcome: Outcome::Retry {
                    reason,
                    delay: None,
                },
                effects: Effects::default(),
                elapsed: started.elapsed(),
            };
        }
    };
    let data = Invocation {
        wasi,
        table: {
            let mut t = ResourceTable::new();
            t.set_max_capacity(policy.limits.max_table_elements);
            t
        },
        limiter: Limiter {
            memory_bytes: policy.limits.memory_bytes,
            memory_in_use: 0,
            table_elements: policy.limits.max_table_elements,
            exceeded: None,
        },
        policy: policy.clone(),
        service: event.service.clone(),
        event_type: event.event_type.clone(),
        outbox_id: event.outbox_id,
        chain_depth: event.chain_depth,
        version: component.short_hash().to_owned(),
        catalog: catalog.clone(),
        batch,
        effects: Effects::default(),
        sql_failure: None,
        budget: Budget::default(),
        output: output.clone(),
    };
    let mut store = Store::new(component.engine(), data);
    store.limiter(|s| &mut s.limiter);
    if fuel_enabled {
        // Fuel metering is engine-wide; an unmetered route simply gets a budget it cannot spend.
        let _ = store.set_fuel(policy.fuel.unwrap_or(u64::MAX));
    }
    let deadline = Duration::from_millis(policy.limits.deadline_ms);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        let ran = started.elapsed();
        if ran >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else if ran < FAIR_SLICE {
            // Yield to the executor at every tick: a spinning guest shares its thread.
            Ok(UpdateDeadline::Yield(1))
        } else {
            // Past its fair slice, each tick a guest still computing runs is followed by a
            // pause: an infinite loop cannot take a core from the other routes while it runs
            // out its deadline.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::time::sleep(LONG_RUNNER_PAUSE)),
            ))
        }
    });
    // The epoch deadline stops guest code; this timer stops an invocation blocked in a host
    // call, which the epoch never sees (dropping the call drops the guest's instance with it).
    let result = tokio::time::timeout(deadline, call(&component.pre, &mut store, event)).await;
    let elapsed = started.elapsed();
    let data = store.into_data();
    log_output(&data);
    let mut outcome = match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::Retry {
            reason: cut_reason(&classify_failure(&e, &data.limiter, &data.policy)),
            delay: None,
        },
        Err(_elapsed) => Outcome::Retry {
            reason: deadline_exceeded(&data.policy),
            delay: None,
        },
    };
    if let Some(failure) = &data.sql_failure
        && !matches!(outcome, Outcome::Retry { .. })
    {
        // Its statements are rolled back; acknowledging (or burying) it would lose them.
        outcome = Outcome::Retry {
            reason: cut_reason(&format!("a sql statement failed: {failure}")),
            delay: None,
        };
    }
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

/// Instantiates the component and calls its handler, in the contract version it was built for.
async fn call(
    pre: &Pre,
    store: &mut Store<Invocation>,
    event: EventData,
) -> wasmtime::Result<Outcome> {
    // The same call for each version; only the generated types differ.
    macro_rules! call_as {
        ($pre:expr, $version:ident) => {{
            use $version::switchyard::handler::types;
            let event = types::Event {
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
            let handler = $pre.instantiate_async(&mut *store).await?;
            let outcome = handler
                .switchyard_handler_handler()
                .call_handle(&mut *store, &event)
                .await?;
            Ok(match outcome {
                types::Outcome::Ack => Outcome::Ack,
                types::Outcome::Retry(r) => Outcome::Retry {
                    reason: cut_reason(&r.reason),
                    delay: r.delay_ms.map(Duration::from_millis),
                },
                types::Outcome::Dead(reason) => Outcome::Dead {
                    reason: cut_reason(&reason),
                },
            })
        }};
    }
    match pre {
        Pre::V0_2(pre) => call_as!(pre, v0_2),
        Pre::V0_1(pre) => call_as!(pre, v0_1),
    }
}

/// Writes the guest's captured stdout/stderr to `tracing`, tagged like its `log` calls, with
/// control characters escaped so the guest cannot forge log lines.
fn log_output(data: &Invocation) {
    let (bytes, dropped) = data.output.take();
    let (service, event_type, version, outbox_id) = (
        &data.service,
        &data.event_type,
        &data.version,
        data.outbox_id,
    );
    if !bytes.is_empty() {
        let text = String::from_utf8_lossy(&bytes);
        let text = escape_controls(text.trim_end());
        tracing::info!(target: "switchyard::guest", %service, %event_type, %version, outbox_id, stream = "stdio", "{text}");
    }
    if dropped > 0 {
        tracing::warn!(target: "switchyard::guest", %service, %event_type, %version, outbox_id, dropped_bytes = dropped,
            "guest output over the per-invocation cap was dropped");
    }
}

/// A handler's statement the server stopped at the invocation's statement limit (set to its
/// deadline): the invocation ends as its deadline ends it, whatever the guest would do next.
#[derive(Debug)]
pub(super) struct StatementCutOff(pub String);

impl std::fmt::Display for StatementCutOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the database stopped the statement at its deadline: {}",
            self.0
        )
    }
}

impl std::error::Error for StatementCutOff {}

fn deadline_exceeded(policy: &Policy) -> String {
    format!("deadline exceeded after {} ms", policy.limits.deadline_ms)
}

/// Turns a wasmtime error into the reason recorded on the row.
fn classify_failure(e: &wasmtime::Error, limiter: &Limiter, policy: &Policy) -> String {
    if let Some(reason) = &limiter.exceeded {
        return reason.clone();
    }
    if let Some(cut) = e.downcast_ref::<StatementCutOff>() {
        return format!("{} ({cut})", deadline_exceeded(policy));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => deadline_exceeded(policy),
        Some(Trap::OutOfFuel) => format!("fuel budget of {} exhausted", policy.fuel.unwrap_or(0)),
        Some(Trap::StackOverflow) => "trap: stack overflow".to_owned(),
        Some(trap) => format!(
            "trap: {}",
            trap.to_string().trim_start_matches("wasm trap: ")
        ),
        None => {
            let root = e.root_cause().to_string();
            if root.contains("handle limit") || root.contains("resource table has no free capacity")
            {
                format!("table limit exceeded: {root}")
            } else {
                format!("handler failed: {root}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_covers_all_of_an_instances_memories_together() {
        const MIB: usize = 1 << 20;
        let mut limiter = Limiter {
            memory_bytes: 64 * MIB,
            memory_in_use: 0,
            table_elements: 10,
            exceeded: None,
        };
        // A first memory created at 40 MiB, then a second one: each alone fits the cap.
        assert!(limiter.memory_growing(0, 40 * MIB, None).is_ok());
        assert!(limiter.memory_growing(0, 40 * MIB, None).is_err());
        let reason = limiter.exceeded.clone().unwrap();
        assert!(
            reason.contains("across the instance's memories"),
            "{reason}"
        );
        // Growth of the first is counted by its delta.
        limiter.exceeded = None;
        assert!(limiter.memory_growing(40 * MIB, 60 * MIB, None).is_ok());
        assert!(limiter.memory_growing(60 * MIB, 65 * MIB, None).is_err());
    }
}
