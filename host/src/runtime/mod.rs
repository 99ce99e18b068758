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
mod compat_v0_1;
mod effects;
mod imports;
mod inspect;
mod invocation;
mod loader;
mod outbound_http;
mod output;
mod policy;
pub mod sql_check;
mod sql_grant;
mod sql_import;
mod sql_targets;

pub use bindings::CONTRACT;
pub use effects::{Effects, Emit, StateWrite};
pub use inspect::Interfaces;
pub use invocation::{BatchAccess, EventData, Invocation, InvocationOutput, Outcome};
pub use loader::{Grants, LoadError, LoadedComponent, content_hash};
pub use policy::Policy;
pub use sql_grant::SqlGrant;

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
    /// One linker per combination of grants (outbound HTTP, sql): a capability is linked only
    /// for the routes that grant it. Indexed by [`Runtime::linker`].
    linkers: [Linker<Invocation>; 4],
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
        let linker = |grants: Grants| -> anyhow::Result<Linker<Invocation>> {
            use bindings::{v0_1, v0_2};
            use wasmtime::component::HasSelf;
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            v0_1::ServiceHandler::add_to_linker::<Invocation, HasSelf<Invocation>>(
                &mut linker,
                |s| s,
            )?;
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
        };
        let linkers = [
            linker(Grants::default())?,
            linker(Grants {
                http: true,
                sql: false,
            })?,
            linker(Grants {
                http: false,
                sql: true,
            })?,
            linker(Grants {
                http: true,
                sql: true,
            })?,
        ];
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
            linkers,
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

    /// Compiles and validates a component file (see [`LoadedComponent::load`]), with nothing
    /// granted beyond the base contract.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load(&self, path: &std::path::Path) -> Result<Arc<LoadedComponent>, LoadError> {
        let grants = Grants::default();
        LoadedComponent::load(&self.engine, self.linker(grants), path, grants).map(Arc::new)
    }

    /// Like [`Runtime::load`], linking the capabilities `policy` grants: `outbound-http` only
    /// when the route lists `allowed_hosts`, `sql` only when it has an `sql` grant. A
    /// component importing a capability its route does not grant is refused
    /// ([`LoadError::NotGranted`]).
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load_for(
        &self,
        path: &std::path::Path,
        policy: &Policy,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let grants = policy.grants();
        LoadedComponent::load(&self.engine, self.linker(grants), path, grants).map(Arc::new)
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
        let grants = policy.grants();
        LoadedComponent::from_bytes(&self.engine, self.linker(grants), path, bytes, grants)
            .map(Arc::new)
    }

    fn linker(&self, grants: Grants) -> &Linker<Invocation> {
        &self.linkers[usize::from(grants.http) + 2 * usize::from(grants.sql)]
    }

    /// Runs one event through a fresh instance of `component` under `policy`.
    pub async fn invoke(
        &self,
        component: &LoadedComponent,
        policy: &Arc<Policy>,
        catalog: &Arc<Catalog>,
        batch: Arc<dyn BatchAccess>,
        event: EventData,
    ) -> InvocationOutput {
        invocation::run(
            &self.engine,
            component,
            policy,
            catalog,
            batch,
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
