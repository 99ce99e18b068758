//! The host's configuration file: parsing and validation.
//!
//! Owns the TOML schema (every field documented here is the user's reference) and the start-up
//! checks that keep routing explicit. It never opens a database, a broker or a component: it
//! only checks that what the file names exists and is consistent. `catalog` turns a validated
//! config into the routing answers the rest of the host asks for.

pub mod kafka;
mod retention;
mod retry;
mod sections;
mod traces;

pub use kafka::KafkaConfig;
pub use retention::{MAX_RETENTION_BATCH, RetentionConfig, RetentionOverride};
pub use retry::RetryOverride;
pub use sections::*;
pub use traces::TracesConfig;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest table, topic or group name we accept (MySQL's identifier limit is 64).
pub const MAX_NAME_LEN: usize = 64;

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed or a field has the wrong type or name.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// An event type is routed to two different services.
    #[error(
        "event type {event_type:?} is routed to two services ({first:?} and {second:?}): an event \
         type has exactly one owner, remove one of the routes"
    )]
    ConflictingRoute {
        event_type: String,
        first: String,
        second: String,
    },
    /// A route names a service that has no `[services.<name>]` section.
    #[error(
        "route for event type {event_type:?} names unknown service {service:?}: add a \
         [services.{service}] section or fix the service name"
    )]
    UnknownService { event_type: String, service: String },
    /// A route's component file does not exist or is not a file.
    #[error(
        "route for event type {event_type:?} (service {service:?}) names component file {path} \
         which does not exist: build it (scripts/build-components.sh) or fix the path"
    )]
    MissingComponent {
        event_type: String,
        service: String,
        path: PathBuf,
    },
    /// A name that will be spliced into SQL or used as a Kafka name is unsafe.
    #[error("{what} {value:?} is invalid: {rule}")]
    InvalidName {
        what: String,
        value: String,
        rule: &'static str,
    },
    /// Any other inconsistent value.
    #[error("{0}")]
    Invalid(String),
}

/// The most lanes a consumer splits a batch into (`consumer.lanes`).
pub const MAX_LANES: u32 = 16;

/// The whole file. Unknown keys are errors, so a typo never silently falls back to a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the outbox tables and handler state live, e.g. `sqlite://switchyard.db`
    /// (relative to the config file), `mysql://root@127.0.0.1/test`,
    /// `postgres://postgres@127.0.0.1/test`.
    pub database_url: String,
    /// How published rows travel to consumers.
    #[serde(default)]
    pub transport: TransportConfig,
    /// Default names derived from a service name.
    #[serde(default)]
    pub naming: NamingConfig,
    /// Failed-attempt policy, SmartFlow's by default.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Deleting (or archiving) consumed rows: off unless `consumed_max_age` is set.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Relay tuning.
    #[serde(default)]
    pub relay: RelayConfig,
    /// Consumer tuning.
    #[serde(default)]
    pub consumer: ConsumerConfig,
    /// Sandbox limits applied to every invocation.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Hot reload of component files and of this config file.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// The running host's HTTP endpoint (`/routes`, `/metrics`, `/healthz`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// OpenTelemetry spans over OTLP (`[traces] otlp_endpoint`); off by default.
    #[serde(default)]
    pub traces: TracesConfig,
    /// Services by name (`[services.task]`); an empty table takes every default name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// `event_type -> service -> component` routes (`[[routes]]`).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Directory the config file was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this config was read from, if any (watched for config reloads).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum TransportConfig {
    /// In-process queue per service (single host; the default, needs nothing installed).
    #[default]
    Embedded,
    /// A topic and a consumer group per service on a Kafka cluster (`kind = "kafka"`); the
    /// fields (brokers, partitions, replication_factor, manage_topics, topic_wait_ms,
    /// session_timeout_ms, and librdkafka settings under `client` / `producer` / `consumer`)
    /// are documented on [`KafkaConfig`].
    Kafka(KafkaConfig),
}

impl Config {
    /// Reads, parses and validates a config file.
    ///
    /// # Errors
    /// Any [`ConfigError`]: unreadable file, bad TOML, conflicting or dangling routes, missing
    /// component files, unsafe names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        let mut config = Self::parse(&text, path, base_dir)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates config text; `origin` only names the file in errors.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, origin: &Path, base_dir: PathBuf) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.base_dir = base_dir;
        config.validate()?;
        Ok(config)
    }

    /// The database URL with a relative SQLite path resolved against the config file's
    /// directory, so a host started from any directory uses the same file.
    pub fn database_url_resolved(&self) -> String {
        let Some(rest) = self.database_url.strip_prefix("sqlite://") else {
            return self.database_url.clone();
        };
        let (path, query) = rest
            .split_once('?')
            .map_or((rest, None), |(p, q)| (p, Some(q)));
        if path.is_empty() || path.starts_with(':') || Path::new(path).is_absolute() {
            return self.database_url.clone();
        }
        let full = self.base_dir.join(path);
        match query {
            Some(q) => format!("sqlite://{}?{q}", full.display()),
            None => format!("sqlite://{}", full.display()),
        }
    }

    /// Resolves a path from the file against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_name("naming prefix", &self.naming.prefix, NameKind::Kafka)?;
        if let TransportConfig::Kafka(kafka) = &self.transport {
            kafka.validate().map_err(ConfigError::Invalid)?;
        }
        self.validate_retry()?;
        self.validate_retention()?;
        self.traces.validate()?;
        if self.relay.batch_size == 0 || self.consumer.batch_size == 0 {
            return Err(ConfigError::Invalid(
                "relay and consumer batch_size must be at least 1".into(),
            ));
        }
        if let Some(lanes) = self.consumer.lanes
            && !(1..=MAX_LANES).contains(&lanes)
        {
            return Err(ConfigError::Invalid(format!(
                "consumer.lanes is {lanes}: it must be 1..={MAX_LANES} (each lane holds a \
                 database connection while its transaction is open)"
            )));
        }
        for name in self.services.keys() {
            check_name("service name", name, NameKind::Kafka)?;
        }
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for route in &self.routes {
            if route.event_type.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "a route to service {:?} has an empty event_type",
                    route.service
                )));
            }
            check_name(
                &format!("event type of a route to service {:?}", route.service),
                &route.event_type,
                NameKind::EventType,
            )?;
            if let Some(first) = owners.get(route.event_type.as_str())
                && *first != route.service
            {
                return Err(ConfigError::ConflictingRoute {
                    event_type: route.event_type.clone(),
                    first: (*first).to_owned(),
                    second: route.service.clone(),
                });
            }
            owners.insert(&route.event_type, &route.service);
            if !self.services.contains_key(&route.service) {
                return Err(ConfigError::UnknownService {
                    event_type: route.event_type.clone(),
                    service: route.service.clone(),
                });
            }
            for dir in &route.preopened_dirs {
                let host = self.resolve(&dir.host);
                if !host.is_dir() {
                    return Err(ConfigError::Invalid(format!(
                        "route for event type {:?} (service {:?}) grants directory {} which does not exist",
                        route.event_type,
                        route.service,
                        host.display()
                    )));
                }
            }
            for host in &route.allowed_hosts {
                check_allowed_host(&route.event_type, host)?;
            }
            for emitted in &route.emits {
                if !self.routes.iter().any(|r| &r.event_type == emitted) {
                    return Err(ConfigError::Invalid(format!(
                        "route for event type {:?} (service {:?}) may emit {emitted:?}, which no \
                         route handles: add a [[routes]] entry for it or remove it from emits",
                        route.event_type, route.service
                    )));
                }
            }
            let mode = self.services[&route.service].mode;
            match &route.component {
                Some(component) => {
                    let path = self.resolve(component);
                    if !path.is_file() {
                        return Err(ConfigError::MissingComponent {
                            event_type: route.event_type.clone(),
                            service: route.service.clone(),
                            path,
                        });
                    }
                }
                None if mode.consumes() => {
                    return Err(ConfigError::Invalid(format!(
                        "route for event type {:?} names no component, but service {:?} runs \
                         in mode {:?}, which consumes its events here: add component = \
                         \"<file>.wasm\", or set mode = \"relay\" or \"external\" on \
                         [services.{}] if another system handles them",
                        route.event_type,
                        route.service,
                        mode.as_str(),
                        route.service
                    )));
                }
                None => {}
            }
        }
        self.validate_modes()
    }

    /// A service whose relay or consumer is another process's needs a broker between them: the
    /// in-process queue only joins a relay and a consumer of the same host.
    fn validate_modes(&self) -> Result<(), ConfigError> {
        if !matches!(self.transport, TransportConfig::Embedded) {
            return Ok(());
        }
        for (name, svc) in &self.services {
            if matches!(svc.mode, ServiceMode::Relay | ServiceMode::Consume) {
                return Err(ConfigError::Invalid(format!(
                    "service {name:?} runs in mode {:?}, which needs transport = \"kafka\": its \
                     other half runs in another process, and the embedded transport only joins a \
                     relay and a consumer of this host. Use mode \"full\" or \"external\", or \
                     configure [transport] kafka",
                    svc.mode.as_str()
                )));
            }
        }
        Ok(())
    }
}

/// An `allowed_hosts` entry must be `host:port`, with no scheme or path, so the grant is exact.
fn check_allowed_host(event_type: &str, entry: &str) -> Result<(), ConfigError> {
    let ok = entry.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(['/', '@', ' '])
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "route for event type {event_type:?}: allowed_hosts entry {entry:?} must be host:port \
             with no scheme or path, e.g. \"open.feishu.cn:443\" or \"127.0.0.1:8080\""
        )))
    }
}

/// Which alphabet a name must use.
#[derive(Clone, Copy)]
pub enum NameKind {
    /// Spliced into SQL as an identifier: `[a-z0-9_]`, starting with a letter.
    Sql,
    /// A service, topic or group name: `[a-z0-9_.-]`, starting with a letter.
    Kafka,
    /// An event type (`biz_type`): `[A-Za-z0-9_.:-]`, starting with a letter. The relay's claim
    /// lists the types it may take as SQL literals, so no quote can appear in one.
    EventType,
}

/// Checks a configured name before it reaches SQL text or a broker.
///
/// # Errors
/// [`ConfigError::InvalidName`] saying which rule the name breaks.
pub fn check_name(what: &str, value: &str, kind: NameKind) -> Result<(), ConfigError> {
    let (allowed, rule): (fn(char) -> bool, &'static str) = match kind {
        NameKind::Sql => (
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
            "use 1-64 characters from [a-z0-9_], starting with a letter",
        ),
        NameKind::Kafka => (
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'),
            "use 1-64 characters from [a-z0-9_.-], starting with a letter",
        ),
        NameKind::EventType => (
            |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'),
            "use 1-64 characters from [A-Za-z0-9_.:-], starting with a letter (SmartFlow's \
             biz_type column holds 64)",
        ),
    };
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && (value.starts_with(|c: char| c.is_ascii_lowercase())
            || matches!(kind, NameKind::EventType))
        && value.chars().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidName {
            what: what.to_owned(),
            value: value.to_owned(),
            rule,
        })
    }
}

/// The running host's config, swapped whole by a config reload.
pub type ConfigCell = crate::live::Live<Config>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_names_reject_injection_and_uppercase() {
        assert!(check_name("table", "task_outbox_messages", NameKind::Sql).is_ok());
        assert!(check_name("table", "t; drop table x", NameKind::Sql).is_err());
        assert!(check_name("table", "Task", NameKind::Sql).is_err());
        assert!(check_name("table", "1task", NameKind::Sql).is_err());
        assert!(check_name("table", &"a".repeat(65), NameKind::Sql).is_err());
        assert!(check_name("table", "active-scheduler", NameKind::Sql).is_err());
        assert!(check_name("service", "active-scheduler", NameKind::Kafka).is_ok());
    }

    #[test]
    fn unknown_keys_are_errors_not_ignored() {
        let err = Config::parse(
            "database_url = \"sqlite://x\"\ndatabse = 1\n",
            Path::new("c.toml"),
            PathBuf::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("databse"), "{err}");
    }

    #[test]
    fn an_emit_grant_of_an_unrouted_type_is_refused_at_start() {
        let err = Config::parse(
            "database_url = \"sqlite://x\"\n[services.s]\n[[routes]]\nevent_type = \"a.b\"\n\
             service = \"s\"\ncomponent = \"x.wasm\"\nemits = [\"nobody.routes.this\"]\n",
            Path::new("c.toml"),
            PathBuf::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("may emit \"nobody.routes.this\", which no route handles"),
            "{err}"
        );
    }
}
