//! The sections of the config file other than routing and transport: `[reload]`, `[admin]`,
//! `[naming]`, `[retry]`, `[relay]`, `[consumer]`, `[limits]`, `[services.*]` and
//! `[[routes]]`. Every field's `///` doc is the user's reference (units, default, example).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to serve on, e.g. `127.0.0.1:9898`. Default: none (no endpoint). `switchyard
    /// status` reads each route's version, load time, reload error and health from it.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// How often the host samples each service's backlog for `/metrics` (rows pending,
    /// published and dead, the oldest pending row's age, the consumer group's lag or the
    /// in-process queue's depth), milliseconds. Default 15000 (Prometheus' usual scrape
    /// interval); 0 turns sampling off. Only sampled where `listen` is set: nothing else shows
    /// the values. Applies live on a config reload.
    #[serde(default = "default_sample_interval_ms")]
    pub sample_interval_ms: u64,
}

fn default_sample_interval_ms() -> u64 {
    15_000
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: None,
            sample_interval_ms: default_sample_interval_ms(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Messages the consumer takes from the transport at a time, handled and committed in one
    /// database transaction per lane. Two batches are in flight (the next is taken while one
    /// runs), so up to twice this many messages are held in memory. Default 500.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// On SIGINT/SIGTERM, how long in-flight batches may take to finish. Default 10000 ms.
    #[serde(default = "default_shutdown_ms")]
    pub shutdown_grace_ms: u64,
    /// Bytes of acked effects (state writes and emitted rows) a batch may buffer before it is
    /// committed: past it the batch is cut there, committed, and the rest handled in the next
    /// one. Default 64 MiB.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Lanes a batch is split into by message key, handled concurrently, each committed in
    /// its own transaction: one key is always in one lane, so its events keep their order
    /// (the Kafka partitions of a service, whose messages a key places in one partition, are
    /// then handled side by side). The batch is acknowledged to the transport once every lane
    /// committed. Default: 4 on MariaDB/PostgreSQL (one lane's round trips overlap another's
    /// handlers), 1 on SQLite (its one writer lets one lane's transaction run at a time, so
    /// more lanes gain nothing); see [`ConsumerConfig::lanes_for`].
    #[serde(default)]
    pub lanes: Option<u32>,
}

/// `consumer.lanes` on a database server when the config does not set it.
pub const SERVER_LANES: u32 = 4;

impl ConsumerConfig {
    /// The lanes a consumer uses on the database `url` names.
    pub fn lanes_for(&self, url: &str) -> u32 {
        self.lanes.unwrap_or(if url.starts_with("sqlite:") {
            1
        } else {
            SERVER_LANES
        })
    }
}

fn default_max_batch_bytes() -> usize {
    64 << 20
}

fn default_shutdown_ms() -> u64 {
    10_000
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch(),
            shutdown_grace_ms: default_shutdown_ms(),
            max_batch_bytes: default_max_batch_bytes(),
            lanes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wall-clock budget of one invocation, milliseconds. Default 5000; exceeding it is a retry.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Linear memory a component instance may grow to, bytes. Default 64 MiB.
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: usize,
    /// Emits one invocation may make. Default 100. Past it `emit` returns an error naming
    /// `limits.max_emits`.
    #[serde(default = "default_max_emits")]
    pub max_emits: u32,
    /// Bytes of every field of every emit of one invocation together (type, version, aggregate,
    /// key, payload). Default 4 MiB.
    #[serde(default = "default_max_emit_bytes")]
    pub max_emit_bytes: usize,
    /// Largest state value or emitted payload, bytes. Default 1 MiB.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// State writes (`set` and `delete`) one invocation may make; writing the same key again
    /// counts again. Default 1000.
    #[serde(default = "default_max_state_writes")]
    pub max_state_writes: u32,
    /// Bytes of every state write of one invocation together (key + value). Default 4 MiB.
    #[serde(default = "default_max_state_bytes")]
    pub max_state_bytes: usize,
    /// Outbound HTTP requests one invocation may send (routes granting `allowed_hosts`).
    /// Default 8.
    #[serde(default = "default_max_requests")]
    pub max_requests: u32,
    /// How deep a chain of emits may go: a producer's event is at depth 0, what its handler
    /// emits at 1, and so on; an emit that would pass this depth is refused, so two routes
    /// emitting each other stop. Default 16.
    #[serde(default = "default_max_hops")]
    pub max_hops: u32,
    /// Guest output kept per invocation: `log` calls, stdout and stderr together, bytes; the
    /// rest is dropped and counted. Default 64 KiB.
    #[serde(default = "default_max_log_bytes")]
    pub max_log_bytes: usize,
    /// Table elements a component instance may grow its tables to. Default 10000.
    #[serde(default = "default_max_table_elements")]
    pub max_table_elements: usize,
    /// `sql` statements (`query` and `execute`) one invocation may run. Default 100.
    #[serde(default = "default_max_sql_statements")]
    pub max_sql_statements: u32,
    /// Rows all `sql` queries of one invocation may return together; a query passing it stops
    /// reading and returns a `budget` error. Default 10000.
    #[serde(default = "default_max_sql_rows")]
    pub max_sql_rows: u64,
    /// Bytes of `sql` statement text, parameters and returned values of one invocation
    /// together. Default 4 MiB.
    #[serde(default = "default_max_sql_bytes")]
    pub max_sql_bytes: usize,
    /// A route whose every invocation fails for this long is reported unhealthy (log, metric,
    /// `status`), without being stopped. Milliseconds, default 60000.
    #[serde(default = "default_unhealthy_after_ms")]
    pub unhealthy_after_ms: u64,
}

fn default_max_hops() -> u32 {
    16
}
fn default_max_emit_bytes() -> usize {
    4 << 20
}
fn default_max_state_writes() -> u32 {
    1000
}
fn default_max_state_bytes() -> usize {
    4 << 20
}
fn default_max_requests() -> u32 {
    8
}
fn default_max_log_bytes() -> usize {
    64 << 10
}
fn default_max_table_elements() -> usize {
    10_000
}
fn default_max_sql_statements() -> u32 {
    100
}
fn default_max_sql_rows() -> u64 {
    10_000
}
fn default_max_sql_bytes() -> usize {
    4 << 20
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
            max_emit_bytes: default_max_emit_bytes(),
            max_value_bytes: default_max_value_bytes(),
            max_state_writes: default_max_state_writes(),
            max_state_bytes: default_max_state_bytes(),
            max_requests: default_max_requests(),
            max_hops: default_max_hops(),
            max_log_bytes: default_max_log_bytes(),
            max_table_elements: default_max_table_elements(),
            max_sql_statements: default_max_sql_statements(),
            max_sql_rows: default_max_sql_rows(),
            max_sql_bytes: default_max_sql_bytes(),
            unhealthy_after_ms: default_unhealthy_after_ms(),
        }
    }
}

/// One service's outbox wiring; every name defaults to SmartFlow's convention.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
    /// Which halves of the service this host runs (see [`ServiceMode`] and docs/migration.md).
    /// Default `full`.
    #[serde(default)]
    pub mode: ServiceMode,
    /// Overrides of `[retry]` for this service's rows, e.g. SmartFlow's notification service:
    /// `retry = { max_attempts = 5, backoff_base_ms = 300000, backoff_max_ms = 1800000 }`.
    /// Fields left out take `[retry]`'s values. Applies live on a config reload (rows inserted
    /// afterwards take the new `max_attempts`).
    #[serde(default)]
    pub retry: Option<super::RetryOverride>,
    /// Overrides of `[retention]` for this service's table, e.g. `retention = {
    /// consumed_max_age = "30d", archive = true }`; `consumed_max_age = "off"` keeps this
    /// service's consumed rows. Fields left out take `[retention]`'s values.
    #[serde(default)]
    pub retention: Option<super::RetentionOverride>,
}

/// Who runs a service's relay and consumer: this host, or another system (SmartFlow's Go
/// processes during a migration). A team moves one service at a time, in either direction, by
/// changing its mode and restarting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// Relay and consumer here; every route of the service names a component.
    #[default]
    Full,
    /// Only the relay here (table → topic); another system consumes the topic and marks the
    /// rows. Needs the Kafka transport.
    Relay,
    /// Only the consumer here (topic → component); another system relays the table. Needs the
    /// Kafka transport. This host still requeues rows left `published` past the visibility
    /// timeout, which SmartFlow's relay never does.
    Consume,
    /// Another system owns the service: this host runs neither half and only inserts rows into
    /// its table when a handler (or `publish`) emits one of its event types.
    External,
}

impl ServiceMode {
    /// Whether this host runs the service's relay (claims and publishes its rows).
    pub fn relays(self) -> bool {
        matches!(self, ServiceMode::Full | ServiceMode::Relay)
    }

    /// Whether this host consumes the service's topic and runs its components.
    pub fn consumes(self) -> bool {
        matches!(self, ServiceMode::Full | ServiceMode::Consume)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Full => "full",
            ServiceMode::Relay => "relay",
            ServiceMode::Consume => "consume",
            ServiceMode::External => "external",
        }
    }
}

/// `event_type -> service -> component file`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// e.g. `task.urgency.promote.requested`.
    pub event_type: String,
    /// The owning service; must have a `[services.<name>]` section.
    pub service: String,
    /// Path to the `.wasm` component, relative to the config file. Required when the service's
    /// mode consumes (`full`, `consume`); a route of a `relay` or `external` service may leave
    /// it out: the route then only says who owns the event type (where its rows go), and a
    /// component given there is checked but not loaded.
    #[serde(default)]
    pub component: Option<PathBuf>,
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
    /// The event types this route's handler may emit, e.g.
    /// `emits = ["notification.feishu.requested"]`. Each must be routed (start-up refuses one
    /// that is not). Default: none, so every `emit` is refused with an error naming this key.
    #[serde(default)]
    pub emits: Vec<String>,
    /// Grants the `sql` import (wit/handler.wit, contract 0.2.0) on exactly these tables of the
    /// service's database, e.g. `sql = { tables = { tasks = "rw", users = "r" } }`. Default: no
    /// grant, so the import is not linked and a component that imports it is refused at start.
    /// The host's own tables (outbox tables, `switchyard_*`) cannot be granted.
    #[serde(default)]
    pub sql: Option<SqlGrant>,
}

/// The tables a route's handler may reach through `sql`, and how.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlGrant {
    /// Table name → `"r"` (SELECT) or `"rw"` (also INSERT, UPDATE, DELETE).
    pub tables: BTreeMap<String, TableAccess>,
}

/// What a grant allows on one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TableAccess {
    /// Read only: the table may appear in any statement, but not as the one written.
    #[serde(rename = "r")]
    Read,
    /// Read and write.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// Per-route overrides of [`LimitsConfig`]; unset fields take the global value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimits {
    /// Wall-clock budget of one invocation, milliseconds.
    pub deadline_ms: Option<u64>,
    /// Linear memory cap, bytes.
    pub memory_bytes: Option<usize>,
    /// Emits per invocation.
    pub max_emits: Option<u32>,
    /// Bytes of all emits of one invocation.
    pub max_emit_bytes: Option<usize>,
    /// Largest state value or emitted payload, bytes.
    pub max_value_bytes: Option<usize>,
    /// State writes per invocation.
    pub max_state_writes: Option<u32>,
    /// Bytes of all state writes of one invocation.
    pub max_state_bytes: Option<usize>,
    /// Outbound HTTP requests per invocation.
    pub max_requests: Option<u32>,
    /// Depth of a chain of emits.
    pub max_hops: Option<u32>,
    /// Guest output (`log`, stdout, stderr) kept per invocation, bytes.
    pub max_log_bytes: Option<usize>,
    /// `sql` statements per invocation.
    pub max_sql_statements: Option<u32>,
    /// Rows all `sql` queries of one invocation may return.
    pub max_sql_rows: Option<u64>,
    /// Bytes of `sql` statements, parameters and returned values of one invocation.
    pub max_sql_bytes: Option<usize>,
    /// Deterministic budget: WebAssembly instructions (wasmtime fuel units) one invocation may
    /// execute. Unset means unmetered (metering costs throughput; see docs/SECURITY.md).
    pub fuel: Option<u64>,
}

/// A read-only directory granted to a route's handler.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
            max_emit_bytes: route.max_emit_bytes.unwrap_or(self.max_emit_bytes),
            max_value_bytes: route.max_value_bytes.unwrap_or(self.max_value_bytes),
            max_state_writes: route.max_state_writes.unwrap_or(self.max_state_writes),
            max_state_bytes: route.max_state_bytes.unwrap_or(self.max_state_bytes),
            max_requests: route.max_requests.unwrap_or(self.max_requests),
            max_hops: route.max_hops.unwrap_or(self.max_hops),
            max_log_bytes: route.max_log_bytes.unwrap_or(self.max_log_bytes),
            max_sql_statements: route.max_sql_statements.unwrap_or(self.max_sql_statements),
            max_sql_rows: route.max_sql_rows.unwrap_or(self.max_sql_rows),
            max_sql_bytes: route.max_sql_bytes.unwrap_or(self.max_sql_bytes),
            ..self.clone()
        }
    }
}
