//! `switchyard test`: runs one event through a component in the host's sandbox, under the
//! limits and grants of a route, with state in memory and no database or broker, and reports
//! the outcome, the state writes, emits and `sql` statements, and the guest's logs.
//!
//! The policy comes from a route of a config (`--config FILE --route TYPE`) or, without one,
//! from the default `[limits]` with nothing granted but what the flags name (`--allow-emit`,
//! `--allow-sql`): the same deny-by-default rule as a `[[routes]]` entry.

use super::event::{read_event, read_state};
use super::logs::{GuestLog, GuestLogs};
use super::memory::{MemoryBatch, SqlRecord, hex};
use super::{ToolError, bare_config, read_component};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::runtime::{Effects, LoadError, Outcome, Policy, Runtime};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

/// The service of the route built from the flags when the event file names none.
const DEFAULT_SERVICE: &str = "test";

/// The service that owns the types `--allow-emit` grants (an `external` one: only routed).
const EMITTED_SERVICE: &str = "emitted";

/// What `switchyard test` is asked to do (the command's arguments, parsed by clap).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TestArgs {
    /// The component file (.wasm).
    pub component: PathBuf,
    /// JSON event: {"event_type": "...", "payload": {...}}; optional event_id, version,
    /// key, aggregate_id, attempt, outbox_id, service, chain_depth.
    #[arg(long)]
    pub event: PathBuf,
    /// JSON object of key -> string value: the service's state before the event.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Take limits and grants from this config's route (default: [limits] defaults,
    /// nothing granted but --allow-emit / --allow-sql).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The route (event type) of --config whose policy applies; default: the event's type.
    #[arg(long, requires = "config")]
    pub route: Option<String>,
    /// Without --config: an event type the handler may emit (repeatable).
    #[arg(long = "allow-emit", value_name = "TYPE", conflicts_with = "config")]
    pub allow_emit: Vec<String>,
    /// Without --config: grant sql on TABLE=r or TABLE=rw (repeatable).
    #[arg(
        long = "allow-sql",
        value_name = "TABLE=r|rw",
        conflicts_with = "config"
    )]
    pub allow_sql: Vec<String>,
    /// SQL script run on the scratch SQLite database a component importing sql gets.
    #[arg(long)]
    pub sql_setup: Option<PathBuf>,
}

/// The outcome of an invocation, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeKind {
    Ack,
    Retry,
    Dead,
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutcomeKind::Ack => "ack",
            OutcomeKind::Retry => "retry",
            OutcomeKind::Dead => "dead",
        })
    }
}

/// Everything one run showed; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct TestReport {
    pub component: String,
    /// Contract version the component implements, e.g. `0.2.0`.
    pub contract: String,
    /// blake3 of the file, as the host records it per consumed row.
    pub version: String,
    pub event_type: String,
    pub service: String,
    /// Where the policy came from: `config FILE, route TYPE` or `flags`.
    pub policy: String,
    pub outcome: OutcomeKind,
    /// Why, for `retry` and `dead` (a trap or a limit is a `retry` with its reason).
    pub reason: Option<String>,
    /// A `retry`'s `delay-ms` hint.
    pub delay_ms: Option<u64>,
    pub elapsed_ms: f64,
    /// Only an `ack` keeps writes and emits: for `retry` and `dead` these are empty.
    pub state_writes: Vec<StateWriteView>,
    pub emits: Vec<EmitView>,
    /// Statements run on the scratch database (kept whatever the outcome, for inspection).
    pub sql: Vec<SqlRecord>,
    pub logs: Vec<GuestLog>,
}

/// A state write: `value` is `None` for a delete; bytes that are not UTF-8 are in `value_hex`.
#[derive(Debug, Serialize)]
pub struct StateWriteView {
    pub key: String,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_hex: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EmitView {
    pub event_type: String,
    /// As the host stores it: empty means `v1`.
    pub event_version: String,
    pub aggregate_id: String,
    pub message_key: String,
    pub payload: serde_json::Value,
}

/// Runs the event through the component.
///
/// # Errors
/// [`ToolError`] when an input is unreadable or wrong, or the component does not load for
/// the route; a component that runs and fails (trap, limit, `retry`, `dead`) is a report.
pub async fn run(args: &TestArgs) -> Result<TestReport, ToolError> {
    let bytes = read_component(&args.component)?;
    let event = read_event(&args.event)?;
    let seed = match &args.state {
        Some(path) => read_state(path)?,
        None => Default::default(),
    };
    let (config, route_type, origin) = match &args.config {
        Some(path) => {
            if !args.allow_emit.is_empty() || !args.allow_sql.is_empty() {
                return Err(ToolError::Usage(
                    "--allow-emit and --allow-sql apply without --config; with a config the \
                     route's emits and sql grant apply: edit the route instead"
                        .into(),
                ));
            }
            let config = Config::load(path)?;
            let route = args.route.clone().unwrap_or(event.event_type.clone());
            let origin = format!("config {}, route {route}", path.display());
            (config, route, origin)
        }
        None => {
            if let Some(route) = &args.route {
                return Err(ToolError::Usage(format!(
                    "--route {route} needs --config FILE: the route is looked up there"
                )));
            }
            let service = event.service.as_deref().unwrap_or(DEFAULT_SERVICE);
            let config = flags_config(args, &event.event_type, service)?;
            (config, event.event_type.clone(), "flags".to_owned())
        }
    };
    let route = config
        .routes
        .iter()
        .find(|r| r.event_type == route_type)
        .ok_or_else(|| {
            ToolError::Usage(format!(
                "the config has no route for event type {route_type:?}: pass --route with one of \
                 its routes' event types"
            ))
        })?;
    if route.event_type != event.event_type {
        return Err(ToolError::Usage(format!(
            "the event's type is {:?} but --route is {:?}: the host runs a route's handler only \
             for its own type; set event_type in the event file to the route's",
            event.event_type, route.event_type
        )));
    }
    if let Some(service) = &event.service
        && *service != route.service
    {
        return Err(ToolError::Usage(format!(
            "the event file says service {service:?} but the route's service is {:?}: leave \
             service out of the event file or make them agree",
            route.service
        )));
    }
    let service = route.service.clone();
    let catalog = Arc::new(Catalog::from_config(&config)?);
    let policy = Arc::new(Policy::for_route(&config, route));
    let runtime = Runtime::new(&config).map_err(|e| ToolError::Setup(format!("{e:#}")))?;
    let component = runtime
        .load_bytes_for(&args.component, &bytes, &policy)
        .map_err(|e| match (&e, &args.config) {
            // The loader's fix names the route's keys; without a config the flags set them.
            (LoadError::NotGranted { capability, .. }, None) => ToolError::Usage(format!(
                "{e}; here: {}",
                if *capability == "sql" {
                    "pass --allow-sql TABLE=rw (or =r) for each table it uses"
                } else {
                    "pass --config FILE with a route listing the allowed_hosts"
                }
            )),
            _ => ToolError::Load(e),
        })?;
    let needs_sql = runtime.interfaces(&component).needs_sql();
    let mut batch = MemoryBatch::new(seed);
    if needs_sql {
        let setup = match &args.sql_setup {
            Some(path) => {
                let script = std::fs::read_to_string(path).map_err(|source| ToolError::Read {
                    what: "sql setup",
                    path: path.clone(),
                    source,
                })?;
                Some((path.as_path(), script))
            }
            None => None,
        };
        batch = batch.with_sqlite(setup).await?;
    } else if args.sql_setup.is_some() {
        return Err(ToolError::Usage(format!(
            "--sql-setup given but {} does not import sql: leave --sql-setup out",
            args.component.display()
        )));
    }
    let batch = Arc::new(batch);
    let logs = GuestLogs::default();
    let collector = tracing::Dispatch::new(tracing_subscriber::registry().with(logs.clone()));
    let event_type = event.event_type.clone();
    let data = event.into_data(service.clone());
    // The guest's log lines go to the collector for the invocation's duration (each poll).
    let output = runtime
        .invoke(&component, &policy, &catalog, batch.clone(), data)
        .with_subscriber(collector)
        .await;
    let (outcome, reason, delay_ms) = match output.outcome {
        Outcome::Ack => (OutcomeKind::Ack, None, None),
        Outcome::Retry { reason, delay } => (
            OutcomeKind::Retry,
            Some(reason),
            delay.map(|d| d.as_millis() as u64),
        ),
        Outcome::Dead { reason } => (OutcomeKind::Dead, Some(reason), None),
    };
    let (state_writes, emits) = views(output.effects);
    Ok(TestReport {
        component: args.component.display().to_string(),
        contract: component.contract.to_owned(),
        version: component.hash.to_string(),
        event_type,
        service,
        policy: origin,
        outcome,
        reason,
        delay_ms,
        elapsed_ms: output.elapsed.as_secs_f64() * 1000.0,
        state_writes,
        emits,
        sql: batch.sql_records(),
        logs: logs.take(),
    })
}

/// The config a route written from the flags would be: the default `[limits]`, the event's
/// type routed to the component, the `--allow-emit` types routed to an external service.
fn flags_config(args: &TestArgs, event_type: &str, service: &str) -> Result<Config, ToolError> {
    use toml::{Table, Value};
    let component = std::path::absolute(&args.component).map_err(|e| {
        ToolError::Usage(format!("component path {}: {e}", args.component.display()))
    })?;
    let mut services = Table::new();
    services.insert(service.into(), Table::new().into());
    let mut route = Table::new();
    route.insert("event_type".into(), event_type.into());
    route.insert("service".into(), service.into());
    route.insert(
        "component".into(),
        component.to_string_lossy().into_owned().into(),
    );
    route.insert(
        "emits".into(),
        Value::Array(args.allow_emit.iter().map(|t| t.as_str().into()).collect()),
    );
    if !args.allow_sql.is_empty() {
        let mut tables = Table::new();
        for grant in &args.allow_sql {
            let Some((table, access @ ("r" | "rw"))) = grant.split_once('=') else {
                return Err(ToolError::Usage(format!(
                    "--allow-sql {grant:?}: write TABLE=r (SELECT) or TABLE=rw (also INSERT, \
                     UPDATE, DELETE), e.g. --allow-sql tasks=rw"
                )));
            };
            tables.insert(table.into(), access.into());
        }
        let mut sql = Table::new();
        sql.insert("tables".into(), tables.into());
        route.insert("sql".into(), sql.into());
    }
    let mut routes = vec![Value::Table(route)];
    for emitted in args.allow_emit.iter().filter(|t| *t != event_type) {
        let mut r = Table::new();
        r.insert("event_type".into(), emitted.as_str().into());
        r.insert("service".into(), EMITTED_SERVICE.into());
        routes.push(r.into());
    }
    if routes.len() > 1 {
        let mut external = Table::new();
        external.insert("mode".into(), "external".into());
        services.insert(EMITTED_SERVICE.into(), external.into());
    }
    let mut extra = Table::new();
    extra.insert("services".into(), services.into());
    extra.insert("routes".into(), Value::Array(routes));
    Ok(bare_config(extra)?)
}

fn views(effects: Effects) -> (Vec<StateWriteView>, Vec<EmitView>) {
    let writes = effects
        .state_writes
        .into_iter()
        .map(|(key, value)| match value {
            None => StateWriteView {
                key,
                value: None,
                value_hex: None,
            },
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(text) => StateWriteView {
                    key,
                    value: Some(text),
                    value_hex: None,
                },
                Err(e) => StateWriteView {
                    key,
                    value: None,
                    value_hex: Some(hex(e.as_bytes())),
                },
            },
        })
        .collect();
    let emits = effects
        .emits
        .into_iter()
        .map(|e| EmitView {
            event_type: e.event_type,
            event_version: e.event_version,
            aggregate_id: e.aggregate_id,
            message_key: e.message_key,
            payload: e.payload,
        })
        .collect();
    (writes, emits)
}

impl TestReport {
    /// `None` when the outcome is `expected` (or nothing was expected), else the message.
    pub fn unmet(&self, expected: Option<OutcomeKind>) -> Option<String> {
        let expected = expected?;
        (expected != self.outcome).then(|| {
            let why = self
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!("expected {expected}, got {}{why}", self.outcome)
        })
    }

    /// The report for a terminal, one section per kind of effect.
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "component {} (contract {}, version {})",
            self.component,
            self.contract,
            &self.version[..12.min(self.version.len())]
        );
        let _ = writeln!(
            out,
            "event     {} (service {}; policy from {})",
            self.event_type, self.service, self.policy
        );
        let mut outcome = self.outcome.to_string();
        if let Some(r) = &self.reason {
            let _ = write!(outcome, ": {r}");
        }
        if let Some(d) = self.delay_ms {
            let _ = write!(outcome, " (delay {d} ms)");
        }
        let _ = writeln!(out, "outcome   {outcome}");
        let _ = writeln!(out, "elapsed   {:.1} ms", self.elapsed_ms);
        let kept = if self.outcome == OutcomeKind::Ack {
            ""
        } else {
            " (only an ack keeps writes and emits)"
        };
        let _ = writeln!(out, "state writes: {}{kept}", self.state_writes.len());
        for w in &self.state_writes {
            match (&w.value, &w.value_hex) {
                (Some(v), _) => writeln!(out, "  set {} = {v:?}", w.key),
                (None, Some(h)) => writeln!(out, "  set {} = x'{h}'", w.key),
                (None, None) => writeln!(out, "  delete {}", w.key),
            }
            .ok();
        }
        let _ = writeln!(out, "emits: {}{kept}", self.emits.len());
        for e in &self.emits {
            let _ = writeln!(
                out,
                "  {} version={:?} key={:?} aggregate={:?} payload={}",
                e.event_type, e.event_version, e.message_key, e.aggregate_id, e.payload
            );
        }
        if !self.sql.is_empty() {
            let _ = writeln!(out, "sql statements: {}", self.sql.len());
            for s in &self.sql {
                let _ = writeln!(
                    out,
                    "  {} [{}] -> {}",
                    s.statement,
                    s.params.join(", "),
                    s.result
                );
            }
        }
        let _ = writeln!(out, "logs: {}", self.logs.len());
        for l in &self.logs {
            let _ = writeln!(out, "  {:<5} {:<5} {}", l.level, l.stream, l.message);
        }
        out
    }
}
