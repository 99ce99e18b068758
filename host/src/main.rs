//! The `switchyard` binary: parses arguments and wires the library together. No logic here.

mod cli_dead;
mod new;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use switchyard::config::Config;
use switchyard::devtools::test::{OutcomeKind, TestArgs};
use switchyard::{NewEvent, Switchyard};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Outbox host for event handlers shipped as WebAssembly components"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run relays and consumers until SIGINT/SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Enqueue one event (routed by its type to its owner's outbox table).
    Publish {
        #[arg(long, short)]
        config: PathBuf,
        /// Event type, e.g. task.urgency.promote.requested.
        #[arg(long = "type")]
        event_type: String,
        /// Message key (Kafka partitioning key).
        #[arg(long, default_value = "")]
        key: String,
        /// Event version; empty means v1.
        #[arg(long, default_value = "")]
        version: String,
        /// Aggregate id.
        #[arg(long, default_value = "")]
        aggregate: String,
        /// The W3C trace context to continue (`00-<trace id>-<span id>-<flags>`), e.g. from
        /// the request that caused the event.
        #[arg(long)]
        traceparent: Option<String>,
        /// JSON payload.
        #[arg(
            long,
            conflicts_with = "payload_file",
            required_unless_present = "payload_file"
        )]
        payload: Option<String>,
        /// File holding the JSON payload.
        #[arg(long)]
        payload_file: Option<PathBuf>,
    },
    /// Create or upgrade the host tables and every service's outbox table (additive only).
    Migrate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Per service: its mode, row counts by status, the rows of other services' types still
    /// in its table (a legacy backlog) and the age of the oldest pending row.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// Print one JSON document instead of the table (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// The routing table: per route its service, table, topic, group, component and mode,
    /// its grants and its effective limits. Reads the config only.
    Routes {
        #[arg(long, short)]
        config: PathBuf,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Hand a service's in-flight rows back to another relay: `published` → `pending`, due
    /// now, no attempt counted. The rollback step after moving a service off this host (see
    /// docs/migration.md); run it once no Switchyard host relays the service any more.
    Release {
        #[arg(long, short)]
        config: PathBuf,
        /// The service whose rows to hand back.
        #[arg(long)]
        service: String,
    },
    /// Scaffold a handler project: the handler, the WIT contract this binary implements, a
    /// build script, a sample event and a README.
    New {
        /// The handler's name: lowercase letters, digits and hyphens, e.g. `order-audit`.
        name: String,
        #[arg(long, value_enum)]
        lang: new::Lang,
        /// Where to create it (missing or empty); default `./NAME`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run one event through a component in the host's sandbox and limits, with state in
    /// memory and no database or broker; print the outcome, state writes, emits and logs.
    /// Exit 0 when it ran (whatever its outcome), 1 when --expect was not met, 2 when it could
    /// not be loaded or run.
    Test {
        #[command(flatten)]
        args: TestArgs,
        /// Fail (exit 1) unless the outcome is this one.
        #[arg(long, value_enum)]
        expect: Option<OutcomeKind>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Dead letters: list, show, requeue and purge dead rows; list and replay Kafka's
    /// dead-letter topics (docs/operations.md).
    Dead(cli_dead::DeadArgs),
    /// Show the contract version and world a component implements, its imports and the
    /// grants its route must give; fail on a file that is not a handler component.
    Check {
        /// The component file (.wasm).
        component: PathBuf,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| format!("loading config {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.json_logs);
    match cli.command {
        Command::New { name, lang, dir } => {
            let dir = new::scaffold(&name, lang, &dir.unwrap_or_else(|| PathBuf::from(&name)))?;
            println!(
                "created {} in {}: see its README.md (./build.sh builds {name}.wasm)",
                name,
                dir.display()
            );
            Ok(())
        }
        Command::Test { args, expect, json } => {
            let report = switchyard::devtools::test::run(&args)
                .await
                .unwrap_or_else(|e| could_not_run(&e));
            print_report(json, &report, || report.human());
            if let Some(unmet) = report.unmet(expect) {
                eprintln!("error: {unmet}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Check { component, json } => {
            let report =
                switchyard::devtools::check::run(&component).unwrap_or_else(|e| could_not_run(&e));
            print_report(json, &report, || report.human());
            Ok(())
        }
        Command::Dead(args) => cli_dead::run(args).await,
        Command::Run { config } => run(load(&config)?).await,
        Command::Publish {
            config,
            event_type,
            key,
            version,
            aggregate,
            traceparent,
            payload,
            payload_file,
        } => {
            let text = match (payload, payload_file) {
                (Some(p), _) => p,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?,
                (None, None) => unreachable!("clap requires one of them"),
            };
            let payload: serde_json::Value = serde_json::from_str(&text)
                .context("--payload must be JSON (e.g. '{\"user_id\": 1}')")?;
            // Never DDL here: `migrate` is the one command that changes the schema.
            let host = Switchyard::open(load(&config)?).await?;
            let mut event = NewEvent::new(event_type.clone(), payload)
                .key(key)
                .version(version)
                .aggregate(aggregate);
            event.traceparent = traceparent;
            let id = host
                .publish(event)
                .await
                .map_err(|e| unmigrated(anyhow::Error::from(e), &config))?;
            // The enqueue span goes out before the command exits.
            host.flush_traces().await;
            let catalog = host.catalog();
            let route = catalog.route(&event_type)?;
            println!(
                "enqueued {event_type} as row {id} in {} (service {})",
                route.service.table, route.service.name
            );
            Ok(())
        }
        Command::Migrate { config } => {
            let host = Switchyard::open(load(&config)?).await?;
            host.migrate().await?;
            for s in host.catalog().services() {
                println!("{}: table {} ready", s.name, s.table);
            }
            for archive in host.migrate_archives().await? {
                println!("retention archive {archive} ready");
            }
            Ok(())
        }
        Command::Release { config, service } => {
            let host = Switchyard::open(load(&config)?).await?;
            let rows = host
                .release(&service)
                .await
                .map_err(|e| unmigrated(e, &config))?;
            println!("{service}: {rows} published rows back to pending");
            Ok(())
        }
        Command::Status { config, json } => {
            // Read-only: an operator's inspection never runs DDL against production tables.
            let host = Switchyard::open(load(&config)?).await?;
            let report = switchyard::status::gather(&host)
                .await
                .map_err(|e| unmigrated(e, &config))?;
            print_report(json, &report, || report.human());
            Ok(())
        }
        Command::Routes { config, json } => {
            let report = switchyard::devtools::routes::report(&load(&config)?)?;
            print_report(json, &report, || report.human());
            Ok(())
        }
    }
}

/// `test` and `check` exit 2 when the component could not be loaded or run (1 is `test`'s
/// unmet `--expect`), so a script can tell a broken build from a wrong outcome.
fn could_not_run(e: &switchyard::devtools::ToolError) -> ! {
    eprintln!("error: {e}");
    std::process::exit(2);
}

fn print_report<T: serde::Serialize>(json: bool, report: &T, human: impl Fn() -> String) {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot encode the report: {e}"),
        }
    } else {
        print!("{}", human());
    }
}

/// A database error saying a table is missing, explained: `migrate` creates the tables, and
/// the other commands never do.
fn unmigrated(e: anyhow::Error, config: &std::path::Path) -> anyhow::Error {
    let text = format!("{e:#}");
    let missing = ["doesn't exist", "does not exist", "no such table"]
        .iter()
        .any(|m| text.contains(m));
    if missing {
        e.context(format!(
            "the outbox tables are not created yet: run `switchyard migrate -c {}` first \
             (only migrate changes the schema)",
            config.display()
        ))
    } else {
        e
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let host = Switchyard::open(config).await?;
    let running = host.start(host.configured_transport().await?).await?;
    let admin_stop = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = host.config().admin.listen {
        switchyard::admin::serve(addr, running.status(), admin_stop.clone()).await?;
    }
    wait_for_stop(&running).await?;
    admin_stop.cancel();
    let grace = running.shutdown_grace();
    tracing::info!("shutting down: finishing in-flight batches");
    if running.shutdown(grace).await {
        tracing::info!("stopped cleanly");
        Ok(())
    } else {
        anyhow::bail!(
            "in-flight work did not finish within {grace:?}; unfinished rows will be republished"
        )
    }
}

/// Waits for SIGINT or SIGTERM; SIGHUP reloads the config file meanwhile.
async fn wait_for_stop(running: &switchyard::Running) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => return r.context("waiting for SIGINT"),
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => {
                // The outcome (applied or refused, and why) is logged by the reload itself.
                let _ = running.reload_config().await;
            }
        }
    }
}
