//! The live route table: event type → owning service → loaded component version.
//!
//! Readers clone an `Arc` under a short read lock, so an invocation keeps the version it
//! started with even if the table is swapped meanwhile (hot reload).

use crate::catalog::Catalog;
use crate::config::Config;
use crate::runtime::{LoadError, LoadedComponent, Policy, Runtime};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

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

pub struct RouteTable {
    components: RwLock<HashMap<String, RouteEntry>>,
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
        // Keyed by file and whether outbound HTTP is granted: the same file is linked
        // differently for a route that grants it and one that does not.
        let mut by_path: HashMap<(PathBuf, bool), Arc<LoadedComponent>> = HashMap::new();
        let mut components = HashMap::new();
        for route in &config.routes {
            let path = config.resolve(&route.component);
            let service = catalog
                .service(&route.service)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            let policy = Arc::new(Policy::for_route(config, route));
            let cache_key = (path, !policy.allowed_hosts.is_empty());
            let loaded = match by_path.get(&cache_key) {
                Some(c) => c.clone(),
                None => {
                    let c = runtime
                        .load_for(&cache_key.0, &policy)
                        .map_err(|source| RouteLoadError {
                            event_type: route.event_type.clone(),
                            service,
                            source,
                        })?;
                    by_path.insert(cache_key, c.clone());
                    c
                }
            };
            components.insert(
                route.event_type.clone(),
                RouteEntry {
                    component: loaded,
                    policy,
                },
            );
        }
        Ok(RouteTable {
            components: RwLock::new(components),
        })
    }

    /// The component currently serving an event type.
    pub fn get(&self, event_type: &str) -> Option<RouteEntry> {
        self.components
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(event_type)
            .cloned()
    }

    /// Every route's current version, for `status`.
    pub fn snapshot(&self) -> Vec<(String, Arc<LoadedComponent>)> {
        let mut v: Vec<_> = self
            .components
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, e)| (k.clone(), e.component.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
