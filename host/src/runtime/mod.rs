//! The sandbox: compiles handler components and runs one event through one of them.
//!
//! Owns wasmtime (two engines, optimized and baseline: [`compilers`]; the pooling allocator,
//! the epoch ticker, the linkers) and the host imports. Each
//! invocation gets a fresh instance from a pre-instantiated component, with only what its
//! route's [`Policy`] grants, a memory cap and a deadline. It returns an outcome plus the
//! invocation's effects as plain data; it never opens the database itself and reads state
//! only through the [`StateReader`] the engine hands it.

mod bindings;
mod budget;
mod cache_dir;
mod compat_v0_1;
mod compilers;
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
mod wasi_direct;

pub use bindings::CONTRACT;
pub use compilers::Tier;
pub use effects::{Effects, Emit, StateWrite};
pub use inspect::Interfaces;
pub use invocation::{BatchAccess, EventData, Invocation, InvocationOutput, Outcome};
pub use loader::{Grants, LoadError, LoadedComponent, content_hash};
pub use policy::Policy;
pub use sql_grant::SqlGrant;

use crate::catalog::Catalog;
use crate::config::Config;
use compilers::{Compiler, EngineSettings};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the epoch advances: the deadline's granularity and how often a long-running guest
/// yields its thread.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime engines and linkers shared by every route (see [`compilers`]).
pub struct Runtime {
    optimized: Compiler,
    baseline: Compiler,
    fuel_enabled: bool,
    max_memory_bytes: usize,
    ticker_stop: Arc<AtomicBool>,
    /// Versions (content hash, linking) this process compiled optimized into the on-disk
    /// cache; `None` without a cache. A reload back to one of them loads its optimized code
    /// from the cache at once instead of serving baseline code first.
    in_cache: Option<std::sync::Mutex<std::collections::HashSet<(String, Grants)>>>,
}

impl Runtime {
    /// Builds both engines (the optimized one's pooling allocator sized for the largest
    /// route's memory cap; epoch interruption; fuel metering if any route sets a fuel budget),
    /// links the host imports and WASI, and starts the epoch ticker.
    ///
    /// # Errors
    /// If wasmtime rejects the configuration (e.g. the pool cannot be reserved).
    pub fn new(config: &Config) -> anyhow::Result<Runtime> {
        let max_memory_bytes = compilers::max_memory_bytes(config);
        let fuel_enabled = config.routes.iter().any(|r| r.limits.fuel.is_some());
        let cache_dir = if config.reload.cache {
            // wasmtime requires an absolute cache path.
            let dir = std::path::absolute(config.resolve(&config.reload.cache_dir))?;
            cache_dir::ensure_private(&dir).map_err(anyhow::Error::msg)?;
            Some(dir)
        } else {
            None
        };
        let settings = EngineSettings {
            max_memory_bytes,
            fuel_enabled,
            cache_dir: cache_dir.as_deref(),
        };
        let optimized = Compiler::new(Tier::Optimized, &settings)?;
        let baseline = Compiler::new(Tier::Baseline, &settings)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let engines = [optimized.engine.weak(), baseline.engine.weak()];
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for weak in &engines {
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                }
            })?;
        Ok(Runtime {
            optimized,
            baseline,
            fuel_enabled,
            max_memory_bytes,
            ticker_stop,
            in_cache: cache_dir.map(|_| Default::default()),
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

    /// Compiles (optimized) and validates a component file (see [`LoadedComponent::load`]),
    /// with nothing granted beyond the base contract.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load(&self, path: &std::path::Path) -> Result<Arc<LoadedComponent>, LoadError> {
        let grants = Grants::default();
        let c = &self.optimized;
        LoadedComponent::load(&c.engine, c.linker(grants), path, grants, Tier::Optimized)
            .map(Arc::new)
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
        let c = &self.optimized;
        LoadedComponent::load(&c.engine, c.linker(grants), path, grants, Tier::Optimized)
            .map(Arc::new)
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
        self.load_tier(Tier::Optimized, path, bytes, policy)
    }

    /// Like [`Runtime::load_bytes_for`], with the compiler of `tier`: [`Tier::Baseline`] for a
    /// hot reload's first version (fast to compile), [`Tier::Optimized`] for the steady state.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it (Winch refuses a few wasm
    /// proposals Cranelift supports: the caller then compiles optimized).
    pub fn load_tier(
        &self,
        tier: Tier,
        path: &std::path::Path,
        bytes: &[u8],
        policy: &Policy,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let grants = policy.grants();
        let c = match tier {
            Tier::Optimized => &self.optimized,
            Tier::Baseline => &self.baseline,
        };
        let loaded =
            LoadedComponent::from_bytes(&c.engine, c.linker(grants), path, bytes, grants, tier)?;
        if let (Tier::Optimized, Some(known)) = (tier, &self.in_cache) {
            let mut known = known.lock().unwrap_or_else(|p| p.into_inner());
            known.insert((loaded.hash.to_string(), grants));
        }
        Ok(Arc::new(loaded))
    }

    /// Whether this process compiled version `hash` (linked with `grants`) optimized into the
    /// on-disk cache, so loading it optimized again is a cache read, not a compile.
    pub fn optimized_in_cache(&self, hash: &str, grants: Grants) -> bool {
        self.in_cache.as_ref().is_some_and(|known| {
            let known = known.lock().unwrap_or_else(|p| p.into_inner());
            known.contains(&(hash.to_owned(), grants))
        })
    }

    /// Runs one event through a fresh instance of `component` under `policy`, on the engine
    /// that compiled it.
    pub async fn invoke(
        &self,
        component: &LoadedComponent,
        policy: &Arc<Policy>,
        catalog: &Arc<Catalog>,
        batch: Arc<dyn BatchAccess>,
        event: EventData,
    ) -> InvocationOutput {
        invocation::run(component, policy, catalog, batch, event, self.fuel_enabled).await
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
