//! The service catalog: `event_type -> service -> table / topic / group`.
//!
//! Built once from a validated [`Config`]; immutable afterwards (a config reload builds a new
//! one). Every name it hands out has passed [`check_name`], so callers may splice table names
//! into SQL. It must never guess: an event type without a route has no owner, and asking for it
//! is an error that names the event type (SmartFlow's "never silently write to the default
//! table").

use crate::config::{Config, ConfigError, NameKind, ServiceMode, check_name};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// One service's outbox wiring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub table: String,
    pub topic: String,
    pub group: String,
    /// Which halves of the service this host runs.
    pub mode: ServiceMode,
}

/// One route: an event type owned by a service, and the component file that handles it where
/// this host consumes the service (none for a route that only names the owner).
#[derive(Debug, Clone)]
pub struct Route {
    pub event_type: String,
    pub service: Arc<Service>,
    pub component: Option<PathBuf>,
}

/// An event type the catalog has no owner for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event type {0:?} is not routed to any service: add a [[routes]] entry for it")]
pub struct Unrouted(pub String);

#[derive(Debug, Clone)]
pub struct Catalog {
    services: BTreeMap<String, Arc<Service>>,
    routes: HashMap<String, Route>,
    /// Every routed event type, sorted: what a relay may claim (see [`Catalog::routed_types`]).
    routed: Vec<String>,
}

/// A route's `sql` grant names tables by safe names, and never the host's own tables: an
/// outbox table written by SQL would bypass routing, envelopes and the relay's bookkeeping.
fn check_sql_grant(
    route: &crate::config::RouteConfig,
    services: &BTreeMap<String, Arc<Service>>,
) -> Result<(), ConfigError> {
    let Some(grant) = &route.sql else {
        return Ok(());
    };
    let event_type = &route.event_type;
    if grant.tables.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "route for event type {event_type:?} has an sql grant without tables: list them, \
             e.g. sql = {{ tables = {{ tasks = \"rw\" }} }}, or remove the grant"
        )));
    }
    for table in grant.tables.keys() {
        check_name(
            &format!("sql table of route {event_type}"),
            table,
            NameKind::Sql,
        )?;
        let owner = services.values().find(|s| &s.table == table);
        if let Some(owner) = owner {
            return Err(ConfigError::Invalid(format!(
                "route for event type {event_type:?} grants sql on {table:?}, the outbox table of \
                 service {:?}: outbox tables are the host's; emit events instead",
                owner.name
            )));
        }
        if table.starts_with("switchyard_") || table.starts_with("_sqlx") {
            return Err(ConfigError::Invalid(format!(
                "route for event type {event_type:?} grants sql on {table:?}, one of the host's \
                 own tables: use the state import for key-value state"
            )));
        }
    }
    Ok(())
}

impl Catalog {
    /// Derives every service's names (SmartFlow's convention unless overridden) and indexes the
    /// routes.
    ///
    /// # Errors
    /// [`ConfigError::InvalidName`] for a table, topic or group that is unsafe to use.
    pub fn from_config(config: &Config) -> Result<Catalog, ConfigError> {
        let prefix = &config.naming.prefix;
        let mut services = BTreeMap::new();
        for (name, svc) in &config.services {
            let table = svc
                .table
                .clone()
                .unwrap_or_else(|| format!("{}_outbox_messages", name.replace('-', "_")));
            let topic = svc
                .topic
                .clone()
                .unwrap_or_else(|| format!("{prefix}.{name}.outbox"));
            let group = svc
                .group
                .clone()
                .unwrap_or_else(|| format!("{prefix}-{name}-outbox-consumer"));
            check_name(&format!("table of service {name}"), &table, NameKind::Sql)?;
            check_name(&format!("topic of service {name}"), &topic, NameKind::Kafka)?;
            check_name(&format!("group of service {name}"), &group, NameKind::Kafka)?;
            services.insert(
                name.clone(),
                Arc::new(Service {
                    name: name.clone(),
                    table,
                    topic,
                    group,
                    mode: svc.mode,
                }),
            );
        }
        let mut seen_tables: HashMap<&str, &str> = HashMap::new();
        for svc in services.values() {
            if let Some(other) = seen_tables.insert(&svc.table, &svc.name) {
                return Err(ConfigError::Invalid(format!(
                    "services {other:?} and {:?} share outbox table {:?}: each service owns its own table",
                    svc.name, svc.table
                )));
            }
        }
        let mut routes = HashMap::new();
        for r in &config.routes {
            check_sql_grant(r, &services)?;
            let service =
                services
                    .get(&r.service)
                    .cloned()
                    .ok_or_else(|| ConfigError::UnknownService {
                        event_type: r.event_type.clone(),
                        service: r.service.clone(),
                    })?;
            routes.insert(
                r.event_type.clone(),
                Route {
                    event_type: r.event_type.clone(),
                    service,
                    component: r.component.as_ref().map(|c| config.resolve(c)),
                },
            );
        }
        let mut routed: Vec<String> = routes.keys().cloned().collect();
        routed.sort();
        Ok(Catalog {
            services,
            routes,
            routed,
        })
    }

    /// Every event type this host knows an owner for. A relay claims only rows of these types:
    /// a row of any other type is left `pending` for a host whose config routes it, never
    /// claimed and skipped in a loop (see docs/migration.md).
    pub fn routed_types(&self) -> &[String] {
        &self.routed
    }

    /// The event types a service owns, sorted.
    pub fn types_of(&self, service: &str) -> Vec<String> {
        self.routed
            .iter()
            .filter(|t| self.routes[t.as_str()].service.name == service)
            .cloned()
            .collect()
    }

    /// The route of an event type.
    ///
    /// # Errors
    /// [`Unrouted`] when no service owns the event type.
    pub fn route(&self, event_type: &str) -> Result<&Route, Unrouted> {
        self.routes
            .get(event_type)
            .ok_or_else(|| Unrouted(event_type.to_owned()))
    }

    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.get(name)
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }
}

/// The current catalog, swapped whole when a config reload changes the routes.
pub type CatalogCell = crate::live::Live<Catalog>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn catalog(toml: &str) -> Result<Catalog, ConfigError> {
        let config = Config::parse(toml, Path::new("t.toml"), PathBuf::new())?;
        Catalog::from_config(&config)
    }

    #[test]
    fn default_names_follow_smartflow_convention() {
        let c =
            catalog("database_url='sqlite://x'\n[services.active-scheduler]\n[services.task]\n")
                .unwrap();
        let s = c.service("active-scheduler").unwrap();
        assert_eq!(s.table, "active_scheduler_outbox_messages");
        assert_eq!(s.topic, "smartflow.active-scheduler.outbox");
        assert_eq!(s.group, "smartflow-active-scheduler-outbox-consumer");
        assert_eq!(c.service("task").unwrap().table, "task_outbox_messages");
    }

    #[test]
    fn prefix_and_overrides_apply() {
        let c = catalog(
            "database_url='sqlite://x'\n[naming]\nprefix='acme'\n[services.task]\ntable='jobs_outbox'\n",
        )
        .unwrap();
        let s = c.service("task").unwrap();
        assert_eq!(
            (s.table.as_str(), s.topic.as_str()),
            ("jobs_outbox", "acme.task.outbox")
        );
        assert_eq!(s.group, "acme-task-outbox-consumer");
    }

    #[test]
    fn unsafe_table_override_is_refused() {
        let err = catalog("database_url='sqlite://x'\n[services.task]\ntable='x; drop table y'\n")
            .unwrap_err();
        assert!(err.to_string().contains("table of service task"), "{err}");
    }

    #[test]
    fn unrouted_event_type_is_an_error_naming_it() {
        let c = catalog("database_url='sqlite://x'\n[services.task]\n").unwrap();
        let err = c.route("nope.event").unwrap_err();
        assert!(err.to_string().contains("nope.event"));
    }
}
