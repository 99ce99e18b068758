//! What one route's handler may use: its limits and its grants, resolved from config.
//!
//! Deny by default: a route with no grants gets WASI with no directories, no environment, no
//! arguments, no sockets and no inherited stdio.

use crate::config::{Config, LimitsConfig, RouteConfig};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Policy {
    /// The global `[limits]` with the route's overrides applied.
    pub limits: LimitsConfig,
    /// Fuel (instructions) per invocation; `None` = unmetered.
    pub fuel: Option<u64>,
    /// Environment variables visible to the guest (the route's `env`).
    pub env: Vec<(String, String)>,
    /// Read-only directories: (host path, guest path).
    pub preopened_dirs: Vec<(PathBuf, String)>,
    /// `host:port` targets the `outbound-http` import may reach; empty = not granted (the
    /// import is not linked and a component importing it is refused at load).
    pub allowed_hosts: Vec<String>,
    /// Event types the handler may emit; empty = none.
    pub emits: std::collections::BTreeSet<String>,
}

impl Policy {
    pub fn for_route(config: &Config, route: &RouteConfig) -> Policy {
        Policy {
            limits: config.limits.for_route(&route.limits),
            fuel: route.limits.fuel,
            env: route
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            preopened_dirs: route
                .preopened_dirs
                .iter()
                .map(|d| (config.resolve(&d.host), d.guest.clone()))
                .collect(),
            allowed_hosts: route.allowed_hosts.clone(),
            emits: route.emits.iter().cloned().collect(),
        }
    }

    /// Limits only, nothing granted (tests, benchmarks).
    pub fn deny_all(limits: LimitsConfig) -> Policy {
        Policy {
            limits,
            fuel: None,
            env: Vec::new(),
            preopened_dirs: Vec::new(),
            allowed_hosts: Vec::new(),
            emits: Default::default(),
        }
    }
}
