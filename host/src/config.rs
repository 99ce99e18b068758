//! The host's configuration file: parsing and validation.
//!
//! Owns the TOML schema (every field documented here is the user's reference) and the start-up
//! checks that keep routing explicit. It never opens a database, a broker or a component: it
//! only checks that what the file names exists and is consistent. `catalog` turns a validated
//! config into the routing answers the rest of the host asks for.

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

/// The whole file. Unknown keys are errors, so a typo never silently falls back to a default.
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum TransportConfig {
    /// In-process queue per service (single host; the default, needs nothing installed).
    #[default]
    Embedded,
    /// A topic and a consumer group per service on a Kafka cluster (`kind = "kafka"`); the
    /// fields (brokers, partitions, replication_factor, manage_topics, topic_wait_ms,
    /// session_timeout_ms, and librdkafka settings under `client` / `producer` / `consumer`)
    /// are documented on [`KafkaConfig`](crate::transport::kafka::KafkaConfig).
    Kafka(crate::transport::kafka::KafkaConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Watch every route's component file (and the config file) and swap in changed versions
    /// while running. Default true.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Quiet time after the last change to a file before it is reloaded, so a file being
    /// written is read once, whole. Milliseconds, default 50.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// Extra directories to watch for component files (relative to the config file): a file
    /// that appears there is served as soon as a config (re)load maps a route to it.
    #[serde(default)]
    pub watch_dirs: Vec<PathBuf>,
    /// Compiled-component cache, keyed by content hash and engine settings, so a restart or a
    /// switch back to an earlier version does not recompile. Relative to the config file.
    /// Default `.switchyard/cache`; set `cache = false` to disable.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Whether to use the compiled-component cache. Default true.
    #[serde(default = "default_true")]
    pub cache: bool,
}

fn default_true() -> bool {
    true
}
fn default_debounce_ms() -> u64 {
    50
}
fn default_cache_dir() -> PathBuf {
    PathBuf::from(".switchyard/cache")
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            debounce_ms: default_debounce_ms(),
            watch_dirs: Vec::new(),
            cache_dir: default_cache_dir(),
            cache: true,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to serve on, e.g. `127.0.0.1:9898`. Default: none (no endpoint). `switchyard
    /// status` reads each route's version, load time, reload error and health from it.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamingConfig {
    /// Prefix of default topic and group names: topic `<prefix>.<service>.outbox`, group
    /// `<prefix>-<service>-outbox-consumer`. Default `smartflow`, SmartFlow's convention.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "smartflow".into()
}

impl Default for NamingConfig {
    fn default() -> Self {
        Self {
            prefix: default_prefix(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts before a row goes `dead` (SmartFlow's `max_retry` column default: 20).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First backoff, doubled per attempt: SmartFlow's 1 s, 2 s, 4 s ...
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Backoff ceiling (SmartFlow: 32 s).
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_max_attempts() -> u32 {
    20
}
fn default_backoff_base_ms() -> u64 {
    1_000
}
fn default_backoff_max_ms() -> u64 {
    32_000
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Rows claimed and published per round trip (SmartFlow: 100).
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// Fallback scan for rows written by other processes; rows enqueued through this host wake
    /// the relay at once. Milliseconds, default 1000.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// A row `published` this long ago and still not consumed is published again (its message
    /// was lost or its consumer died). Milliseconds, default 60000.
    #[serde(default = "default_visibility_ms")]
    pub visibility_timeout_ms: u64,
}

fn default_batch() -> u32 {
    500
}
fn default_poll_ms() -> u64 {
    1_000
}
fn default_visibility_ms() -> u64 {
    60_000
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch(),
            poll_interval_ms: default_poll_ms(),
            visibility_timeout_ms: default_visibility_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Events handled and committed in one database transaction. Default 500.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// On SIGINT/SIGTERM, how long in-flight batches may take to finish. Default 10000 ms.
    #[serde(default = "default_shutdown_ms")]
    pub shutdown_grace_ms: u64,
}

fn default_shutdown_ms() -> u64 {
    10_000
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch(),
            shutdown_grace_ms: default_shutdown_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wall-clock budget of one invocation, milliseconds. Default 5000; exceeding it is a retry.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Linear memory a component instance may grow to, bytes. Default 64 MiB.
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: usize,
    /// Emits one invocation may make. Default 100.
    #[serde(default = "default_max_emits")]
    pub max_emits: u32,
    /// Largest state value or emitted payload, bytes. Default 1 MiB.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// Guest output kept per invocation (stdout, stderr and `log` together), bytes; the rest is
    /// dropped and counted. Default 64 KiB.
    #[serde(default = "default_max_log_bytes")]
    pub max_log_bytes: usize,
    /// Table elements a component instance may grow its tables to. Default 10000.
    #[serde(default = "default_max_table_elements")]
    pub max_table_elements: usize,
    /// A route whose every invocation fails for this long is reported unhealthy (log, metric,
    /// `status`), without being stopped. Milliseconds, default 60000.
    #[serde(default = "default_unhealthy_after_ms")]
    pub unhealthy_after_ms: u64,
}

fn default_max_log_bytes() -> usize {
    64 << 10
}
fn default_max_table_elements() -> usize {
    10_000
}
fn default_unhealthy_after_ms() -> u64 {
    60_000
}

fn default_deadline_ms() -> u64 {
    5_000
}
fn default_memory_bytes() -> usize {
    64 << 20
}
fn default_max_emits() -> u32 {
    100
}
fn default_max_value_bytes() -> usize {
    1 << 20
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            deadline_ms: default_deadline_ms(),
            memory_bytes: default_memory_bytes(),
            max_emits: default_max_emits(),
            max_value_bytes: default_max_value_bytes(),
            max_log_bytes: default_max_log_bytes(),
            max_table_elements: default_max_table_elements(),
            unhealthy_after_ms: default_unhealthy_after_ms(),
        }
    }
}

/// One service's outbox wiring; every name defaults to SmartFlow's convention.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Outbox table. Default `<service with - as _>_outbox_messages`.
    pub table: Option<String>,
    /// Topic. Default `<prefix>.<service>.outbox`.
    pub topic: Option<String>,
    /// Consumer group. Default `<prefix>-<service>-outbox-consumer`.
    pub group: Option<String>,
    /// Hold back later rows of a `message_key` while an earlier row of the same key waits for
    /// a retry, so a failing event does not let later ones of its key overtake it. Rows with
    /// an empty key are never held. Default `false` (SmartFlow's behaviour: a retried row is
    /// published again after later rows of its key). See `docs/databases.md`.
    #[serde(default)]
    pub hold_key_order: bool,
}

/// `event_type -> service -> component file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// e.g. `task.urgency.promote.requested`.
    pub event_type: String,
    /// The owning service; must have a `[services.<name>]` section.
    pub service: String,
    /// Path to the `.wasm` component, relative to the config file.
    pub component: PathBuf,
    /// Overrides of `[limits]` for this route only, e.g.
    /// `limits = { deadline_ms = 200, memory_bytes = 16777216, fuel = 50000000 }`.
    #[serde(default)]
    pub limits: RouteLimits,
    /// Named configuration values the handler may read, exposed as WASI environment variables
    /// (`std::env::var` in Rust). Nothing else of the host's environment is visible.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host directories the handler may read (never write), e.g.
    /// `preopened_dirs = [{ host = "data", guest = "/data" }]`; `host` is relative to the
    /// config file. Default: none, so every filesystem call fails.
    #[serde(default)]
    pub preopened_dirs: Vec<PreopenedDir>,
    /// Grants the `outbound-http` import (wit/outbound-http.wit) for exactly these
    /// `host:port` targets, e.g. `allowed_hosts = ["open.feishu.cn:443", "127.0.0.1:8080"]`
    /// (write the port even when it is the scheme's default). Default: empty, so the import is
    /// not linked and a component that imports it is refused at start. A request to any other
    /// host:port is refused at call time with an error the handler sees.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// Per-route overrides of [`LimitsConfig`]; unset fields take the global value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimits {
    /// Wall-clock budget of one invocation, milliseconds.
    pub deadline_ms: Option<u64>,
    /// Linear memory cap, bytes.
    pub memory_bytes: Option<usize>,
    /// Emits per invocation.
    pub max_emits: Option<u32>,
    /// Largest state value or emitted payload, bytes.
    pub max_value_bytes: Option<usize>,
    /// Deterministic budget: WebAssembly instructions (wasmtime fuel units) one invocation may
    /// execute. Unset means unmetered (metering costs throughput; see docs/SECURITY.md).
    pub fuel: Option<u64>,
}

/// A read-only directory granted to a route's handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreopenedDir {
    /// Directory on the host, relative to the config file.
    pub host: PathBuf,
    /// Path the guest sees, e.g. `/data`.
    pub guest: String,
}

impl LimitsConfig {
    /// The limits of one route: the global ones with the route's overrides applied.
    pub fn for_route(&self, route: &RouteLimits) -> LimitsConfig {
        LimitsConfig {
            deadline_ms: route.deadline_ms.unwrap_or(self.deadline_ms),
            memory_bytes: route.memory_bytes.unwrap_or(self.memory_bytes),
            max_emits: route.max_emits.unwrap_or(self.max_emits),
            max_value_bytes: route.max_value_bytes.unwrap_or(self.max_value_bytes),
            ..self.clone()
        }
    }
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
        if self.retry.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        if self.relay.batch_size == 0 || self.consumer.batch_size == 0 {
            return Err(ConfigError::Invalid(
                "relay and consumer batch_size must be at least 1".into(),
            ));
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
            let path = self.resolve(&route.component);
            if !path.is_file() {
                return Err(ConfigError::MissingComponent {
                    event_type: route.event_type.clone(),
                    service: route.service.clone(),
                    path,
                });
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
    };
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value.starts_with(|c: char| c.is_ascii_lowercase())
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
}
