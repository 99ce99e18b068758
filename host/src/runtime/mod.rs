//! The sandbox: compiles handler components and runs one event through one of them.
//!
//! Owns wasmtime (engine, pooling allocator, epoch ticker, linker) and the host imports. Each
//! invocation gets a fresh instance from a pre-instantiated component, with nothing of WASI
//! granted, a memory cap and a deadline. It returns an outcome plus the invocation's effects as
//! plain data; it never opens the database itself and reads state only through the
//! [`StateReader`] the engine hands it.

mod bindings;
mod invocation;
mod loader;

pub use bindings::CONTRACT;
pub use invocation::{Invocation, InvocationOutput, Outcome, StateReader};
pub use loader::{LoadError, LoadedComponent};

use crate::catalog::Catalog;
use crate::config::LimitsConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; the deadline granularity.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime engine and linker shared by every route.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Invocation>,
    limits: LimitsConfig,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine (pooling allocator, epoch interruption) and links the host imports
    /// and WASI (with nothing granted).
    ///
    /// # Errors
    /// If wasmtime rejects the configuration (e.g. the pool cannot be reserved).
    pub fn new(limits: LimitsConfig) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::new();
        // One instance per in-flight invocation; a host runs one consumer per service.
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(512)
            .total_stacks(256)
            .max_memory_size(limits.memory_bytes.max(1 << 20));
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::ServiceHandler::add_to_linker::<
            Invocation,
            wasmtime::component::HasSelf<Invocation>,
        >(&mut linker, |s| s)?;
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
            limits,
            ticker_stop,
        })
    }

    /// Compiles and validates a component file (see [`LoadedComponent::load`]).
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load(&self, path: &std::path::Path) -> Result<Arc<LoadedComponent>, LoadError> {
        LoadedComponent::load(&self.engine, &self.linker, path).map(Arc::new)
    }

    /// Runs one event through a fresh instance of `component`.
    pub async fn invoke(
        &self,
        component: &LoadedComponent,
        catalog: &Arc<Catalog>,
        reader: Arc<dyn StateReader>,
        event: invocation::EventData,
        max_retry: i32,
    ) -> InvocationOutput {
        invocation::run(
            &self.engine,
            component,
            catalog,
            reader,
            event,
            &self.limits,
            max_retry,
            EPOCH_TICK,
        )
        .await
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

pub use invocation::EventData;
