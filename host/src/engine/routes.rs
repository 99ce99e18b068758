//! The live route table: event type → owning service → loaded component version + policy.
//!
//! Readers clone a [`RouteEntry`] (two `Arc`s) under a short read lock, so an invocation keeps
//! the version it started with even if the table is changed meanwhile; the next event sees the
//! new one. Writers (hot reload) replace entries whole. A version that failed to load never
//! enters the table: the error is kept per file for `status` and the old version stays.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::runtime::{Grants, LoadError, LoadedComponent, Policy, Runtime, Tier};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A component that failed to load for a route, named as the config errors name things.
#[derive(Debug, thiserror::Error)]
#[error("route for event type {event_type:?} (service {service:?}): {source}")]
pub struct RouteLoadError {
    pub event_type: String,
    pub service: String,
    #[source]
    pub source: LoadError,
}

/// What serves one event type: a component version and the route's policy.
#[derive(Clone)]
pub struct RouteEntry {
    pub component: Arc<LoadedComponent>,
    pub policy: Arc<Policy>,
}

/// Loaded components keyed by file, grants (outbound HTTP, sql) and content, so a file is
/// compiled once per linking, and a route never gets a component linked with a capability its
/// own grant lacks.
type Loaded = HashMap<(PathBuf, Grants, String), Arc<LoadedComponent>>;

pub struct RouteTable {
    entries: RwLock<HashMap<String, RouteEntry>>,
    /// The last failed load per component file, cleared by the next successful one.
    reload_errors: Mutex<HashMap<PathBuf, String>>,
    /// Component versions swapped in since start.
    swaps: AtomicU64,
}

impl RouteTable {
    /// Compiles every route's component (each file once) before anything is consumed.
    ///
    /// # Errors
    /// The first route whose component does not load, naming event type, service and file.
    pub fn load(
        runtime: &Runtime,
        config: &Config,
        catalog: &Catalog,
    ) -> Result<RouteTable, RouteLoadError> {
        let entries = Self::build(runtime, config, catalog, &HashMap::new())?;
        Ok(RouteTable {
            entries: RwLock::new(entries),
            reload_errors: Mutex::new(HashMap::new()),
            swaps: AtomicU64::new(0),
        })
    }

    /// Builds the entries of `config`, reusing components already loaded from identical bytes.
    ///
    /// # Errors
    /// As [`RouteTable::load`].
    pub fn build(
        runtime: &Runtime,
        config: &Config,
        catalog: &Catalog,
        current: &HashMap<String, RouteEntry>,
    ) -> Result<HashMap<String, RouteEntry>, RouteLoadError> {
        let mut loaded: Loaded = current
            .values()
            .map(|e| {
                let granted = e.policy.grants();
                (
                    (
                        e.component.path.clone(),
                        granted,
                        e.component.hash.to_string(),
                    ),
                    e.component.clone(),
                )
            })
            .collect();
        // A file serving several routes is read and hashed once.
        let mut files: HashMap<PathBuf, (Arc<Vec<u8>>, String)> = HashMap::new();
        let mut entries = HashMap::new();
        for route in &config.routes {
            // Only the services this host consumes run components: a `relay` or `external`
            // service's route only names the owner of its event type.
            let consumed = catalog
                .service(&route.service)
                .is_some_and(|s| s.mode.consumes());
            let Some(component) = route.component.as_ref().filter(|_| consumed) else {
                continue;
            };
            let path = config.resolve(component);
            let service = catalog
                .service(&route.service)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            let policy = Arc::new(Policy::for_route(config, route));
            let fail = |source| RouteLoadError {
                event_type: route.event_type.clone(),
                service: service.clone(),
                source,
            };
            let granted = policy.grants();
            let (bytes, hash) = match files.get(&path) {
                Some(file) => file.clone(),
                None => {
                    let bytes = std::fs::read(&path).map_err(|source| {
                        fail(LoadError::Read {
                            path: path.clone(),
                            source,
                        })
                    })?;
                    let hash = crate::runtime::content_hash(&bytes);
                    let file = (Arc::new(bytes), hash);
                    files.insert(path.clone(), file.clone());
                    file
                }
            };
            let key = (path.clone(), granted, hash);
            let component = match loaded.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = runtime
                        .load_bytes_for(&path, &bytes, &policy)
                        .map_err(fail)?;
                    loaded.insert(key, c.clone());
                    c
                }
            };
            entries.insert(route.event_type.clone(), RouteEntry { component, policy });
        }
        Ok(entries)
    }

    /// The component currently serving an event type.
    pub fn get(&self, event_type: &str) -> Option<RouteEntry> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(event_type)
            .cloned()
    }

    /// A copy of every entry.
    pub fn entries(&self) -> HashMap<String, RouteEntry> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the whole table (a config reload).
    pub fn replace_all(&self, entries: HashMap<String, RouteEntry>) {
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = entries;
    }

    /// Every distinct component file the routes use.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .entries()
            .values()
            .map(|e| e.component.path.clone())
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Swaps `component` in for every route served by its file with the same grants.
    /// Returns the event types swapped.
    pub fn swap(&self, component: &Arc<LoadedComponent>, granted: Grants) -> Vec<String> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let mut swapped = Vec::new();
        for (event_type, entry) in entries.iter_mut() {
            if entry.component.path == component.path && entry.policy.grants() == granted {
                entry.component = component.clone();
                swapped.push(event_type.clone());
            }
        }
        swapped.sort();
        if !swapped.is_empty() {
            self.swaps.fetch_add(1, Ordering::Relaxed);
        }
        swapped
    }

    /// Replaces the baseline code of `component`'s version by its optimized code, on the
    /// routes still served by that version's baseline code (a newer version written meanwhile
    /// is left alone). Returns the event types upgraded.
    pub fn upgrade(&self, component: &Arc<LoadedComponent>, granted: Grants) -> Vec<String> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let mut upgraded = Vec::new();
        for (event_type, entry) in entries.iter_mut() {
            let current = &entry.component;
            if current.path == component.path
                && current.hash == component.hash
                && current.tier == Tier::Baseline
                && entry.policy.grants() == granted
            {
                entry.component = component.clone();
                upgraded.push(event_type.clone());
            }
        }
        upgraded.sort();
        upgraded
    }

    /// Component versions swapped in since start.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    pub fn set_reload_error(&self, path: &Path, error: Option<String>) {
        let mut errors = self.reload_errors.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            Some(e) => errors.insert(path.to_owned(), e),
            None => errors.remove(path),
        };
    }

    pub fn reload_error(&self, path: &Path) -> Option<String> {
        self.reload_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    /// Every route's current version, for `status`.
    pub fn snapshot(&self) -> Vec<(String, Arc<LoadedComponent>)> {
        let mut v: Vec<_> = self
            .entries()
            .into_iter()
            .map(|(k, e)| (k, e.component))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
