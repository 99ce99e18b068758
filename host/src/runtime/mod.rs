//! The sandbox: compiles handler components and runs one event through one of them.
//!
//! Owns wasmtime (engine, pooling allocator, epoch ticker, linker) and the host imports. Each
//! invocation gets a fresh instance from a pre-instantiated component, with only what its
//! route's [`Policy`] grants, a memory cap and a deadline. It returns an outcome plus the
//! invocation's effects as plain data; it never opens the database itself and reads state
//! only through the [`StateReader`] the engine hands it.

mod bindings;
mod budget;
mod cache_dir;
mod effects;
mod imports;
mod invocation;
mod loader;
mod outbound_http;
mod output;
mod policy;
pub mod sql_check;

pub use bindings::CONTRACT;
pub use effects::{Effects, Emit, StateWrite};
pub use invocation::{EventData, Invocation, InvocationOutput, Outcome, StateReader};
pub use loader::{LoadError, LoadedComponent, content_hash};
pub use policy::Policy;

use crate::catalog::Catalog;
use crate::config::Config;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the deadline's granularity and how often a long-running guest
/// yields its thread.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each pooled memory slot kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Instances alive at once across the host (one per in-flight invocation).
const POOL_INSTANCES: u32 = 256;

/// The wasmtime engine and linker shared by every route.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Invocation>,
    /// `linker` plus `outbound-http`: used only for routes that grant it (`allowed_hosts`).
    http_linker: Linker<Invocation>,
    fuel_enabled: bool,
    max_memory_bytes: usize,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine (pooling allocator sized for the largest route's memory cap, epoch
    /// interruption, fuel metering if any route sets a fuel budget) and links the host imports
    /// and WASI.
    ///
    /// # Errors
    /// If wasmtime rejects the configuration (e.g. the pool cannot be reserved).
    pub fn new(config: &Config) -> anyhow::Result<Runtime> {
        let max_memory_bytes = config
            .routes
            .iter()
            .filter_map(|r| r.limits.memory_bytes)
            .chain([config.limits.memory_bytes])
            .max()
            .unwrap_or(config.limits.memory_bytes)
            .max(1 << 20);
        let fuel_enabled = config.routes.iter().any(|r| r.limits.fuel.is_some());
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
        let mut wasm = wasmtime::Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .consume_fuel(fuel_enabled)
            .wasm_component_model(true);
        if config.reload.cache {
            // wasmtime's own cache: keyed by the component's bytes and the engine's settings.
            // wasmtime requires an absolute cache path.
            let dir = std::path::absolute(config.resolve(&config.reload.cache_dir))?;
            cache_dir::ensure_private(&dir).map_err(anyhow::Error::msg)?;
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(&dir);
            let cache = wasmtime::Cache::new(cache).map_err(|e| {
                anyhow::anyhow!("compiled-component cache at {}: {e:#}", dir.display())
            })?;
            wasm.cache(Some(cache));
        }
        let engine = Engine::new(&wasm)?;
        let base_linker = || -> anyhow::Result<Linker<Invocation>> {
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            bindings::ServiceHandler::add_to_linker::<
                Invocation,
                wasmtime::component::HasSelf<Invocation>,
            >(&mut linker, |s| s)?;
            Ok(linker)
        };
        let linker = base_linker()?;
        let mut http_linker = base_linker()?;
        bindings::notifying::switchyard::handler::outbound_http::add_to_linker::<
            Invocation,
            wasmtime::component::HasSelf<Invocation>,
        >(&mut http_linker, |s| s)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Runtime {
            engine,
            linker,
            http_linker,
            fuel_enabled,
            max_memory_bytes,
            ticker_stop,
        })
    }

    /// Whether a new config can run on this engine without a restart (pool size and fuel
    /// metering are fixed when the engine is built).
    ///
    /// # Errors
    /// A message saying which setting needs a restart.
    pub fn accepts(&self, config: &Config) -> Result<(), String> {
        for r in &config.routes {
            let memory = r.limits.memory_bytes.unwrap_or(config.limits.memory_bytes);
            if memory > self.max_memory_bytes {
                return Err(format!(
                    "route {:?} asks for {memory} bytes of memory, more than the {} this host reserved at start: restart to apply",
                    r.event_type, self.max_memory_bytes
                ));
            }
            if r.limits.fuel.is_some() && !self.fuel_enabled {
                return Err(format!(
                    "route {:?} sets a fuel budget but this host started without fuel metering: restart to apply",
                    r.event_type
                ));
            }
        }
        Ok(())
    }

    /// Compiles and validates a component file (see [`LoadedComponent::load`]).
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load(&self, path: &std::path::Path) -> Result<Arc<LoadedComponent>, LoadError> {
        LoadedComponent::load(&self.engine, &self.linker, path, false).map(Arc::new)
    }

    /// Like [`Runtime::load`], linking the capabilities `policy` grants: `outbound-http` only
    /// when the route lists `allowed_hosts`. A component importing a capability its route does
    /// not grant is refused ([`LoadError::NotGranted`]).
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load_for(
        &self,
        path: &std::path::Path,
        policy: &Policy,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let granted = !policy.allowed_hosts.is_empty();
        let linker = if granted {
            &self.http_linker
        } else {
            &self.linker
        };
        LoadedComponent::load(&self.engine, linker, path, granted).map(Arc::new)
    }

    /// Like [`Runtime::load_for`], from bytes the caller has already read.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load_bytes_for(
        &self,
        path: &std::path::Path,
        bytes: &[u8],
        policy: &Policy,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let granted = !policy.allowed_hosts.is_empty();
        let linker = if granted {
            &self.http_linker
        } else {
            &self.linker
        };
        LoadedComponent::from_bytes(&self.engine, linker, path, bytes, granted).map(Arc::new)
    }

    /// Runs one event through a fresh instance of `component` under `policy`.
    pub async fn invoke(
        &self,
        component: &LoadedComponent,
        policy: &Arc<Policy>,
        catalog: &Arc<Catalog>,
        reader: Arc<dyn StateReader>,
        event: EventData,
    ) -> InvocationOutput {
        invocation::run(
            &self.engine,
            component,
            policy,
            catalog,
            reader,
            event,
            self.fuel_enabled,
        )
        .await
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
