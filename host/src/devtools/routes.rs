//! `switchyard routes`: the routing table a config file defines, each route with its grants and
//! its effective limits (`[limits]` with the route's overrides, resolved by
//! [`Policy::for_route`], the host's own resolution), as text or JSON.
//!
//! Reads the config only: it opens no database, transport or component. Environment values
//! are never printed (they may be secrets): only their names.

use crate::catalog::Catalog;
use crate::config::{Config, LimitsConfig, TableAccess};
use crate::runtime::Policy;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What `switchyard routes --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct RoutesReport {
    pub routes: Vec<RouteReport>,
}

/// One route: where its events go and what its handler may do.
#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    pub event_type: String,
    pub service: String,
    /// The service's mode here: `full`, `relay`, `consume` or `external`.
    pub mode: String,
    pub table: String,
    pub topic: String,
    pub group: String,
    /// The component file, resolved against the config's directory; `null` for a route that
    /// only names its type's owner.
    pub component: Option<String>,
    pub grants: RouteGrants,
    /// Every limit the route's invocations run under.
    pub limits: LimitsConfig,
    /// Instructions per invocation; `null` = unmetered.
    pub fuel: Option<u64>,
    /// The limits this route sets itself (the others are `[limits]`'s), sorted.
    pub overridden: Vec<String>,
}

/// What the route grants its handler; empty means not granted.
#[derive(Debug, Clone, Serialize)]
pub struct RouteGrants {
    /// Event types it may emit.
    pub emits: Vec<String>,
    /// Table → `r` or `rw` for the `sql` import.
    pub sql_tables: BTreeMap<String, String>,
    /// `host:port` targets of the `outbound-http` import.
    pub allowed_hosts: Vec<String>,
    /// Names of the environment variables it sees (values are not shown).
    pub env: Vec<String>,
    /// Read-only directories.
    pub preopened_dirs: Vec<PreopenedDirReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreopenedDirReport {
    /// Resolved host directory.
    pub host: String,
    /// Where the guest sees it.
    pub guest: String,
}

/// The routes of `config`, in event-type order.
///
/// # Errors
/// A catalog error (an unsafe table, topic or group name).
pub fn report(config: &Config) -> Result<RoutesReport, crate::config::ConfigError> {
    let catalog = Catalog::from_config(config)?;
    let mut routes = Vec::new();
    for route in &config.routes {
        let Ok(routed) = catalog.route(&route.event_type) else {
            continue; // validation refuses a dangling route before we get here
        };
        let service = &routed.service;
        let policy = Policy::for_route(config, route);
        let overridden = match serde_json::to_value(&route.limits) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect(),
            _ => Vec::new(),
        };
        routes.push(RouteReport {
            event_type: route.event_type.clone(),
            service: service.name.clone(),
            mode: service.mode.as_str().to_owned(),
            table: service.table.clone(),
            topic: service.topic.clone(),
            group: service.group.clone(),
            component: routed.component.as_ref().map(|p| p.display().to_string()),
            grants: RouteGrants {
                emits: policy.emits.iter().cloned().collect(),
                sql_tables: route
                    .sql
                    .as_ref()
                    .map(|g| {
                        g.tables
                            .iter()
                            .map(|(t, a)| {
                                let access = match a {
                                    TableAccess::Read => "r",
                                    TableAccess::ReadWrite => "rw",
                                };
                                (t.clone(), access.to_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                allowed_hosts: policy.allowed_hosts.clone(),
                env: policy.env.iter().map(|(k, _)| k.clone()).collect(),
                preopened_dirs: policy
                    .preopened_dirs
                    .iter()
                    .map(|(host, guest)| PreopenedDirReport {
                        host: host.display().to_string(),
                        guest: guest.clone(),
                    })
                    .collect(),
            },
            limits: policy.limits.clone(),
            fuel: policy.fuel,
            overridden,
        });
    }
    routes.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    Ok(RoutesReport { routes })
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

impl RoutesReport {
    /// The text `switchyard routes` prints: a table, then each route's grants and limits.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:<14} {:<8} {:<32} {:<32} {:<40} component",
            "event type", "service", "mode", "table", "topic", "group"
        );
        for r in &self.routes {
            let _ = writeln!(
                out,
                "{:<40} {:<14} {:<8} {:<32} {:<32} {:<40} {}",
                r.event_type,
                r.service,
                r.mode,
                r.table,
                r.topic,
                r.group,
                r.component.as_deref().unwrap_or("-")
            );
        }
        for r in &self.routes {
            let g = &r.grants;
            let sql: Vec<String> = g
                .sql_tables
                .iter()
                .map(|(t, a)| format!("{t}={a}"))
                .collect();
            let dirs: Vec<String> = g
                .preopened_dirs
                .iter()
                .map(|d| format!("{} -> {}", d.host, d.guest))
                .collect();
            let l = &r.limits;
            let _ = writeln!(out, "\n{}", r.event_type);
            let _ = writeln!(out, "  emits          {}", list(&g.emits));
            let _ = writeln!(out, "  sql tables     {}", list(&sql));
            let _ = writeln!(out, "  allowed_hosts  {}", list(&g.allowed_hosts));
            let _ = writeln!(out, "  env            {}", list(&g.env));
            let _ = writeln!(out, "  preopened_dirs {}", list(&dirs));
            let _ = writeln!(
                out,
                "  limits         deadline {} ms, memory {} B, fuel {}, emits {} ({} B), \
                 value {} B, state writes {} ({} B), requests {}, hops {}, log {} B, \
                 table elements {}, sql {} statements / {} rows / {} B",
                l.deadline_ms,
                l.memory_bytes,
                r.fuel.map_or("unmetered".to_owned(), |f| f.to_string()),
                l.max_emits,
                l.max_emit_bytes,
                l.max_value_bytes,
                l.max_state_writes,
                l.max_state_bytes,
                l.max_requests,
                l.max_hops,
                l.max_log_bytes,
                l.max_table_elements,
                l.max_sql_statements,
                l.max_sql_rows,
                l.max_sql_bytes,
            );
            let _ = writeln!(out, "  set by route   {}", list(&r.overridden));
        }
        out
    }
}
