//! The two compilers a component can be built with, each its own wasmtime engine with its own
//! linkers (a compiled component runs only on the engine that compiled it):
//!
//! - **optimized** (Cranelift): what every route runs in steady state; compiled at start and,
//!   after a hot reload, in the background;
//! - **baseline** (Winch, a single-pass compiler): compiles an order of magnitude faster into
//!   slower code, so a changed component serves its first event in a fraction of Cranelift's
//!   compile time (an 18 MB componentize-py component: docs/BENCHMARKS.md), until the
//!   optimized code is swapped in.
//!
//! Both engines meter and interrupt guests the same way (epoch deadline, fuel when a route
//! sets it, the memory cap through the store's limiter), so a route's limits hold whichever
//! tier serves it. The baseline engine allocates instances on demand rather than from a pool:
//! it serves only between a reload and the optimized swap, and a second pool would reserve a
//! second set of slots for that.

use super::bindings;
use super::invocation::Invocation;
use super::loader::Grants;
use crate::config::Config;
use std::path::Path;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

/// Which compiler built a loaded component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Winch: fast to compile, slower to run; serves a reloaded version until `Optimized` is
    /// ready.
    Baseline,
    /// Cranelift: the steady state.
    Optimized,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

/// Bytes of each pooled memory slot kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Instances alive at once across the host (one per in-flight invocation).
const POOL_INSTANCES: u32 = 256;

/// One engine and its linkers, one per combination of grants (outbound HTTP, sql): a capability
/// is linked only for the routes that grant it.
pub(super) struct Compiler {
    pub engine: Engine,
    linkers: [Linker<Invocation>; 4],
}

/// What both engines are built with.
pub(super) struct EngineSettings<'a> {
    pub max_memory_bytes: usize,
    pub fuel_enabled: bool,
    /// wasmtime's compiled-code cache directory, if enabled (keyed by the bytes and the
    /// engine's settings); used by the optimized tier only.
    pub cache_dir: Option<&'a Path>,
}

impl Compiler {
    pub fn new(tier: Tier, settings: &EngineSettings<'_>) -> anyhow::Result<Compiler> {
        let mut wasm = wasmtime::Config::new();
        wasm.epoch_interruption(true)
            .consume_fuel(settings.fuel_enabled)
            .wasm_component_model(true);
        match tier {
            Tier::Optimized => {
                wasm.strategy(Strategy::Cranelift).allocation_strategy(
                    InstanceAllocationStrategy::Pooling(pool(settings.max_memory_bytes)),
                );
            }
            Tier::Baseline => {
                // No wasm address map: a trap's backtrace has no wasm offsets while baseline
                // code serves (recorded reasons never carry them). Its saving on the 18 MB
                // Python handler was within run-to-run noise (1.57 s against 1.50-1.70 s).
                wasm.strategy(Strategy::Winch)
                    .allocation_strategy(InstanceAllocationStrategy::OnDemand)
                    .generate_address_map(false);
            }
        }
        // Only optimized code is cached: baseline code serves a reloaded version for the few
        // seconds its optimized code takes, and writing it to the cache (serialized and
        // compressed, tens of MB for a big component) would sit on the path to its first event.
        if let Some(dir) = settings.cache_dir.filter(|_| tier == Tier::Optimized) {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            let cache = wasmtime::Cache::new(cache).map_err(|e| {
                anyhow::anyhow!("compiled-component cache at {}: {e:#}", dir.display())
            })?;
            wasm.cache(Some(cache));
        }
        let engine = Engine::new(&wasm)?;
        let linkers = [
            linker(&engine, Grants::default())?,
            linker(
                &engine,
                Grants {
                    http: true,
                    sql: false,
                },
            )?,
            linker(
                &engine,
                Grants {
                    http: false,
                    sql: true,
                },
            )?,
            linker(
                &engine,
                Grants {
                    http: true,
                    sql: true,
                },
            )?,
        ];
        Ok(Compiler { engine, linkers })
    }

    pub fn linker(&self, grants: Grants) -> &Linker<Invocation> {
        &self.linkers[usize::from(grants.http) + 2 * usize::from(grants.sql)]
    }
}

/// The largest memory any route of `config` may use (the pool's slot size).
pub(super) fn max_memory_bytes(config: &Config) -> usize {
    config
        .routes
        .iter()
        .filter_map(|r| r.limits.memory_bytes)
        .chain([config.limits.memory_bytes])
        .max()
        .unwrap_or(config.limits.memory_bytes)
        .max(1 << 20)
}

fn pool(max_memory_bytes: usize) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 2)
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(max_memory_bytes)
        // Reset a slot's dirty pages in place (found with Linux's PAGEMAP_SCAN, where the
        // kernel has it) instead of decommitting them: a handler dirties a few pages per
        // event, and page faults + TLB flushes after each decommit dominated the
        // per-invocation cost (docs/BENCHMARKS.md).
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES / 16)
        .async_stack_keep_resident(KEEP_RESIDENT_BYTES / 8);
    pool
}

/// WASI, the base contract of both versions, and the granted capabilities.
fn linker(engine: &Engine, grants: Grants) -> anyhow::Result<Linker<Invocation>> {
    use bindings::{v0_1, v0_2};
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    super::wasi_direct::shadow_in(&mut linker)?;
    v0_1::ServiceHandler::add_to_linker::<Invocation, HasSelf<Invocation>>(&mut linker, |s| s)?;
    let add = &mut linker;
    {
        use v0_2::switchyard::handler::{emit, log, sql, state, types};
        types::add_to_linker::<Invocation, HasSelf<Invocation>>(add, |s| s)?;
        state::add_to_linker::<Invocation, HasSelf<Invocation>>(add, |s| s)?;
        emit::add_to_linker::<Invocation, HasSelf<Invocation>>(add, |s| s)?;
        log::add_to_linker::<Invocation, HasSelf<Invocation>>(add, |s| s)?;
        if grants.sql {
            sql::add_to_linker::<Invocation, HasSelf<Invocation>>(add, |s| s)?;
        }
    }
    if grants.http {
        v0_2::notifying::switchyard::handler::outbound_http::add_to_linker::<
            Invocation,
            HasSelf<Invocation>,
        >(add, |s| s)?;
        v0_1::notifying::switchyard::handler::outbound_http::add_to_linker::<
            Invocation,
            HasSelf<Invocation>,
        >(add, |s| s)?;
    }
    Ok(linker)
}
