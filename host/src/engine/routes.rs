//! The live route table: event type → owning service → loaded component version.
//!
//! Readers clone an `Arc` under a short read lock, so an invocation keeps the version it
//! started with even if the table is swapped meanwhile (hot reload).

use crate::catalog::{Catalog, Route};
use crate::runtime::{LoadError, LoadedComponent, Runtime};
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

pub struct RouteTable {
    components: RwLock<HashMap<String, Arc<LoadedComponent>>>,
}

impl RouteTable {
    /// Compiles every route's component (each file once) before anything is consumed.
    ///
    /// # Errors
    /// The first route whose component does not load, naming event type, service and file.
    pub fn load(runtime: &Runtime, catalog: &Catalog) -> Result<RouteTable, RouteLoadError> {
        let mut by_path: HashMap<PathBuf, Arc<LoadedComponent>> = HashMap::new();
        let mut components = HashMap::new();
        let mut routes: Vec<&Route> = catalog.routes().collect();
        routes.sort_by(|a, b| a.event_type.cmp(&b.event_type));
        for route in routes {
            let loaded = match by_path.get(&route.component) {
                Some(c) => c.clone(),
                None => {
                    let c = runtime
                        .load(&route.component)
                        .map_err(|source| RouteLoadError {
                            event_type: route.event_type.clone(),
                            service: route.service.name.clone(),
                            source,
                        })?;
                    by_path.insert(route.component.clone(), c.clone());
                    c
                }
            };
            components.insert(route.event_type.clone(), loaded);
        }
        Ok(RouteTable {
            components: RwLock::new(components),
        })
    }

    /// The component currently serving an event type.
    pub fn get(&self, event_type: &str) -> Option<Arc<LoadedComponent>> {
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
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
