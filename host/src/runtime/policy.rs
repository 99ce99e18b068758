//! What one route's handler may use: its limits and its grants, resolved from config.
//!
//! Deny by default: a route with no grants gets WASI with no directories, no environment, no
//! arguments, no sockets and no inherited stdio.

use super::sql_grant::SqlGrant;
use crate::config::{Config, LimitsConfig, RouteConfig};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Tables the `sql` import may reach; `None` = not granted (the import is not linked and a
    /// component importing it is refused at load).
    pub sql: Option<Arc<SqlGrant>>,
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
            sql: route
                .sql
                .as_ref()
                .map(|g| Arc::new(SqlGrant::from_config(g))),
        }
    }

    /// Which capabilities beyond the base contract the route's component may import.
    pub fn grants(&self) -> super::Grants {
        super::Grants {
            http: !self.allowed_hosts.is_empty(),
            sql: self.sql.is_some(),
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
            sql: None,
        }
    }
}
