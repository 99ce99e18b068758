//! `switchyard-bench`: the benchmark harness (issue 8, plus the benchmark asks of issues 6 and
//! 7). Each subcommand runs one scenario AND its baseline in the same process, then prints
//! events/s, latency percentiles, peak memory (VmHWM, reset between runs) and the ratio to the
//! baseline, followed by the command that reproduces it. Figures are printed, never asserted.
//!
//! ```sh
//! cargo build --release -p switchyard --bin switchyard-bench
//! target/release/switchyard-bench e2e --db mariadb --transport kafka --events 20000
//! target/release/switchyard-bench all --events 20000      # the whole table of BENCHMARKS.md
//! ```
//! Servers: MariaDB at `BENCH_MARIADB` (default mysql://root@127.0.0.1:3306), PostgreSQL at
//! `BENCH_POSTGRES` (default postgres://postgres@127.0.0.1:5432), Kafka at `BENCH_KAFKA`
//! (default 127.0.0.1:9092, `scripts/kafka.sh start`). Every run creates a fresh database
//! `sy_bench_<random>` (dropped afterwards) and a fresh topic prefix.

mod allocations;
mod batch_tx;
mod capture;
mod claim;
mod host;
mod neighbour;
mod raw;
mod reload;
mod retention;
mod sandbox;
mod scaling;
mod soak;
mod sql;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sqlx::{AssertSqlSafe, Connection};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "switchyard-bench",
    about = "Switchyard benchmarks: figures and ratios to baselines measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// SQLite's `synchronous` for the host and the raw loop: `full` (the host's default: a
    /// commit survives power loss) or `normal` (WAL: survives a crash of the process; no fsync
    /// per commit). The host reads it from `database_url`'s `?synchronous=`.
    #[arg(long, global = true, value_enum, default_value = "full")]
    sqlite_synchronous: Synchronous,
}

/// SQLite's durability setting of a run ([`Cli::sqlite_synchronous`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    Full,
    Normal,
}

static SQLITE_SYNCHRONOUS: std::sync::OnceLock<Synchronous> = std::sync::OnceLock::new();

/// This run's [`Synchronous`].
pub fn sqlite_synchronous() -> Synchronous {
    *SQLITE_SYNCHRONOUS.get().unwrap_or(&Synchronous::Full)
}

#[derive(Subcommand, Clone)]
enum Cmd {
    /// End to end with the task handler (enqueue committed -> consumed committed), against the
    /// raw limit (hand-written sqlx + transport loop, no handler) and the SmartFlow-mode
    /// baseline (relay batch 100 every 1 s, one transaction per message).
    E2e {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        #[arg(long, value_enum, default_value = "kafka")]
        transport: Transport,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Events for the SmartFlow-mode runs (one commit per message: slow).
        #[arg(long, default_value_t = 1_000)]
        smartflow_events: usize,
        /// Skip the SmartFlow-mode baselines.
        #[arg(long)]
        no_smartflow: bool,
        /// `consumer.lanes` of the host runs, one run each (e.g. `--lanes 1,4`).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        lanes: Vec<u32>,
    },
    /// Latency at a fixed offered load: one event per enqueue transaction at `rate`/s.
    Latency {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        #[arg(long, value_enum, default_value = "embedded")]
        transport: Transport,
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// The host's `consumer.lanes`.
        #[arg(long, default_value_t = 1)]
        lanes: u32,
    },
    /// The task handler's logic as native Rust vs as the component, same state/effects path
    /// (invoke each event of a 500-event batch, then `Store::apply` the batch).
    Handler {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
    },
    /// Cost per invocation of a trivial handler (instantiate from the pre-instantiated
    /// component in the pooling allocator + call), against a native no-op.
    Instantiate {
        #[arg(long, default_value_t = 20_000)]
        invocations: usize,
    },
    /// Issue 7: the task handler's invocation throughput with fuel metering on vs off.
    Limits {
        #[arg(long, default_value_t = 20_000)]
        invocations: usize,
    },
    /// Issue 6: component file written -> first event consumed by the new version, with a
    /// cold compile and with the compiled-component cache warm; issue 15: the same for an
    /// 18 MB componentize-py handler (baseline code first, then optimized), and its throughput
    /// before and after.
    Reload {
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Reloads of the Python handler (`scripts/build-handlers.sh` builds it); 0 skips it.
        #[arg(long, default_value_t = 3)]
        big_reps: usize,
    },
    /// Issue 12: the task route's throughput alone, then while a hostile route of another
    /// service loops to its deadline again and again, in one host (embedded transport).
    Neighbour {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
    },
    /// Issue 13: a handler doing one INSERT and one UPDATE per event through the `sql` import,
    /// against the same statements done natively by the raw loop, batched the same way.
    Sql {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        #[arg(long, value_enum, default_value = "embedded")]
        transport: Transport,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
    },
    /// Issue 16: the relay's claim of new rows without and during retention's cleanup of a
    /// table of `rows` old consumed rows, and the cleanup's rows/s.
    Retention {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Rows per retention round (`[retention] batch_size`).
        #[arg(long, default_value_t = 500)]
        batch: u32,
        /// Claims timed for the baseline (no cleanup).
        #[arg(long, default_value_t = 500)]
        baseline_claims: usize,
    },
    /// Every scenario above, in one run (the table of docs/BENCHMARKS.md).
    All {
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        #[arg(long, default_value_t = 1_000)]
        smartflow_events: usize,
    },
    /// Issue 17.4: throughput with 1, 2, 3... hosts (in this process) sharing one database,
    /// one Kafka topic and one consumer group.
    Scale {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        /// Host counts, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        hosts: Vec<usize>,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Partitions of the topic (`[transport] partitions`); 6 splits evenly over 1, 2, 3.
        #[arg(long, default_value_t = 6)]
        partitions: u32,
        /// Writes hosts,events_per_s,... here.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Issue 17.4: the relay's claim latency with the table at each size (consumed rows).
    Claim {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        /// Table sizes, increasing (the table grows from one to the next).
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        rows: Vec<usize>,
        /// Timed claims at each size.
        #[arg(long, default_value_t = 500)]
        claims: usize,
        /// Writes rows,p50_ms,p99_ms,... here.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Issue 17.4: the host at a steady offered load for minutes; RSS and latency sampled every
    /// second.
    Soak {
        #[arg(long, value_enum, default_value = "mariadb")]
        db: Db,
        #[arg(long, value_enum, default_value = "embedded")]
        transport: Transport,
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Writes second,rss_kib,hwm_kib,events_consumed,p99_ms,... here.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
}

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Db {
    Sqlite,
    Mariadb,
    Postgres,
}

/// Which transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Embedded,
    Kafka,
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Figures {
    pub name: String,
    pub events: usize,
    pub elapsed: Duration,
    /// Per-event latencies (empty when the scenario has none).
    pub latencies: Vec<Duration>,
    /// Peak resident memory during the run, KiB.
    pub hwm_kib: u64,
}

impl Figures {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn pct(&self, p: f64) -> Option<Duration> {
        (!self.latencies.is_empty()).then(|| percentile(&self.latencies, p))
    }

    /// One table row: name, events/s, p50/p99/max, peak memory, ratio to `baseline`.
    pub fn print(&self, baseline: Option<&Figures>) {
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
        };
        let ratio = baseline.map_or("-".to_owned(), |b| {
            format!("{:.2}x {}", self.rate() / b.rate().max(1e-9), b.name)
        });
        println!(
            "| {:<44} | {:>7} | {:>10.0} | {:>7} | {:>7} | {:>8} | {:>7} | {} |",
            self.name,
            self.events,
            self.rate(),
            ms(self.pct(0.5)),
            ms(self.pct(0.99)),
            ms(self.pct(1.0)),
            self.hwm_kib / 1024,
            ratio
        );
    }
}

pub fn print_header(command: &str) {
    let flag = match sqlite_synchronous() {
        Synchronous::Normal => " --sqlite-synchronous normal",
        Synchronous::Full => "",
    };
    println!("\n$ {command}{flag}");
    println!(
        "| {:<44} | {:>7} | {:>10} | {:>7} | {:>7} | {:>8} | {:>7} | ratio to baseline |",
        "scenario", "events", "events/s", "p50 ms", "p99 ms", "max ms", "HWM MiB"
    );
    println!(
        "|{}|---------|------------|---------|---------|----------|---------|---|",
        "-".repeat(46)
    );
}

/// Resets the kernel's peak-RSS counter of this process (VmHWM), so each run reports its own.
pub fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM of this process, KiB.
pub fn hwm_kib() -> u64 {
    status_kib("VmHWM")
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The `p` quantile (0..=1) of `v` (zero when empty), as [`Figures`] prints it.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A unique suffix for database names, topic prefixes and scratch directories.
pub fn unique() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}_{}",
        std::process::id(),
        t.as_nanos() % 1_000_000_000_000
    )
}

/// A scratch directory, removed by [`Scratch::drop`].
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("sy_bench_{}", unique()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating scratch directory {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mariadb_server() -> String {
    std::env::var("BENCH_MARIADB").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn postgres_server() -> String {
    std::env::var("BENCH_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// MariaDB's server-wide `Questions` (statements clients sent) and `Com_commit` (COMMITs)
/// counters, read around a run to give its statements and commits per event: what the host
/// sends beyond the raw loop is visible there even when the machine's noise hides it in the
/// rate. Server-wide, so nothing else may use the server meanwhile; `None` on other backends.
async fn mariadb_counters(db: Db) -> anyhow::Result<Option<(u64, u64)>> {
    if db != Db::Mariadb {
        return Ok(None);
    }
    let mut c = sqlx::MySqlConnection::connect(&format!("{}/mysql", mariadb_server())).await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_commit')")
            .fetch_all(&mut c)
            .await?;
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Some((get("Questions"), get("Com_commit"))))
}

/// This process's CPU time so far (user + system, all threads, from `/proc/self/stat`), in
/// seconds: what a run costs the host beside what it costs the database.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// What a run cost per event: this process's CPU (µs) and heap allocations and, on MariaDB,
/// the statements and commits the server received.
#[derive(Debug, Clone, Copy)]
struct PerEvent {
    cpu_us: f64,
    allocations: f64,
    statements: Option<(f64, f64)>,
}

/// Runs `run` and returns its figures with what it cost per event ([`PerEvent`]).
async fn with_cost<F: std::future::Future<Output = anyhow::Result<Figures>>>(
    db: Db,
    run: F,
) -> anyhow::Result<(Figures, PerEvent)> {
    let before = mariadb_counters(db).await?;
    let cpu = cpu_seconds();
    let allocations = allocations::so_far();
    let figures = run.await?;
    let allocations = allocations::so_far() - allocations;
    let cpu = cpu_seconds() - cpu;
    let after = mariadb_counters(db).await?;
    let n = figures.events.max(1) as f64;
    let statements = before.zip(after).map(|((q0, c0), (q1, c1))| {
        (
            q1.saturating_sub(q0) as f64 / n,
            c1.saturating_sub(c0) as f64 / n,
        )
    });
    let per_event = PerEvent {
        cpu_us: cpu * 1e6 / n,
        allocations: allocations as f64 / n,
        statements,
    };
    Ok((figures, per_event))
}

pub fn kafka_brokers() -> String {
    std::env::var("BENCH_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A fresh database for one run; [`FreshDb::drop_db`] removes it.
pub struct FreshDb {
    pub kind: Db,
    pub url: String,
    name: String,
}

impl FreshDb {
    /// # Errors
    /// The server is unreachable (the message says which and where) or refuses `CREATE DATABASE`.
    pub async fn create(kind: Db, dir: &Path) -> anyhow::Result<FreshDb> {
        let name = format!("sy_bench_{}", unique());
        let url = match kind {
            Db::Sqlite => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            Db::Mariadb => {
                let admin = format!("{}/mysql", mariadb_server());
                let mut c = sqlx::MySqlConnection::connect(&admin)
                    .await
                    .with_context(|| format!("MariaDB is not reachable at {admin}"))?;
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut c)
                    .await?;
                format!("{}/{name}", mariadb_server())
            }
            Db::Postgres => {
                let admin = format!("{}/postgres", postgres_server());
                let mut c = sqlx::PgConnection::connect(&admin)
                    .await
                    .with_context(|| format!("PostgreSQL is not reachable at {admin}"))?;
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut c)
                    .await?;
                format!("{}/{name}", postgres_server())
            }
        };
        let fresh = FreshDb { kind, url, name };
        fresh.create_business_tables().await?;
        Ok(fresh)
    }

    /// SmartFlow's business tables (`examples/smartflow/schema/`), as a user applies them: the
    /// task component keeps its tasks in `tasks` through the `sql` import.
    async fn create_business_tables(&self) -> anyhow::Result<()> {
        let file = match self.kind {
            Db::Sqlite => "sqlite.sql",
            Db::Mariadb => "mysql.sql",
            Db::Postgres => "postgres.sql",
        };
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/smartflow/schema")
            .join(file);
        let ddl = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        // One statement per call: the files end each statement with `;` at the end of a line.
        let statements: Vec<String> = ddl
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .split_inclusive(";\n")
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty())
            .collect();
        macro_rules! apply {
            ($conn:expr) => {{
                let mut c = $conn;
                for s in &statements {
                    sqlx::raw_sql(AssertSqlSafe(s.clone()))
                        .execute(&mut c)
                        .await?;
                }
            }};
        }
        match self.kind {
            Db::Sqlite => apply!(
                sqlx::SqliteConnection::connect_with(
                    &self
                        .url
                        .parse::<sqlx::sqlite::SqliteConnectOptions>()?
                        .create_if_missing(true)
                )
                .await?
            ),
            Db::Mariadb => apply!(sqlx::MySqlConnection::connect(&self.url).await?),
            Db::Postgres => apply!(sqlx::PgConnection::connect(&self.url).await?),
        }
        Ok(())
    }

    /// Drops a server database (a SQLite file goes with the scratch directory).
    pub async fn drop_db(self) {
        let result: anyhow::Result<()> = async {
            match self.kind {
                Db::Sqlite => {}
                Db::Mariadb => {
                    let mut c =
                        sqlx::MySqlConnection::connect(&format!("{}/mysql", mariadb_server()))
                            .await?;
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {}",
                        self.name
                    )))
                    .execute(&mut c)
                    .await?;
                }
                Db::Postgres => {
                    let mut c =
                        sqlx::PgConnection::connect(&format!("{}/postgres", postgres_server()))
                            .await?;
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    )))
                    .execute(&mut c)
                    .await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            eprintln!("warning: could not drop database {}: {e:#}", self.name);
        }
    }
}

/// The built `task` component (scripts/build-components.sh).
pub fn component(name: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../build/components")
        .join(format!("{name}.wasm"));
    anyhow::ensure!(
        path.is_file(),
        "component {} is missing: run scripts/build-components.sh",
        path.display()
    );
    Ok(path.canonicalize()?)
}

pub fn db_name(db: Db) -> &'static str {
    match db {
        Db::Sqlite => "sqlite",
        Db::Mariadb => "mariadb",
        Db::Postgres => "postgres",
    }
}

pub fn tr_name(t: Transport) -> &'static str {
    match t {
        Transport::Embedded => "embedded",
        Transport::Kafka => "kafka",
    }
}

async fn e2e(
    db: Db,
    transport: Transport,
    events: usize,
    smartflow_events: usize,
    smartflow: bool,
    lanes: &[u32],
) -> anyhow::Result<()> {
    let (d, t) = (db_name(db), tr_name(transport));
    let mut cmd = format!(
        "switchyard-bench e2e --db {d} --transport {t} --events {events} --smartflow-events {smartflow_events}"
    );
    if !smartflow {
        cmd.push_str(" --no-smartflow");
    }
    if lanes != [1] {
        let list: Vec<String> = lanes.iter().map(u32::to_string).collect();
        cmd.push_str(&format!(" --lanes {}", list.join(",")));
    }
    let (raw, raw_cost) = with_cost(
        db,
        raw::run(
            db,
            transport,
            events,
            raw::Mode::Batched,
            &format!("raw limit {d}+{t}"),
        ),
    )
    .await?;
    let mut costs = vec![(raw.name.clone(), raw_cost)];
    let mut runs = Vec::new();
    for &n in lanes {
        let (mode, name) = match n {
            1 => (
                host::Mode::Default,
                format!("switchyard {d}+{t} task handler"),
            ),
            n => (
                host::Mode::Lanes(n),
                format!("switchyard {d}+{t} task, {n} lanes"),
            ),
        };
        // The raw loop with as many consume transactions side by side: its limit there.
        let limit = match n {
            1 => None,
            n => {
                let (limit, count) = with_cost(
                    db,
                    raw::run_lanes(
                        db,
                        transport,
                        events,
                        raw::Mode::Batched,
                        n as usize,
                        &format!("raw limit {d}+{t}, {n} lanes"),
                    ),
                )
                .await?;
                costs.push((limit.name.clone(), count));
                Some(limit)
            }
        };
        let (sy, count) =
            with_cost(db, host::throughput(db, transport, events, mode, &name)).await?;
        costs.push((sy.name.clone(), count));
        runs.push((limit, sy));
    }
    let mut sf = None;
    if smartflow {
        let a = host::throughput(
            db,
            transport,
            smartflow_events,
            host::Mode::SmartFlow,
            &format!("switchyard, SmartFlow settings {d}+{t}"),
        )
        .await?;
        let b = raw::run(
            db,
            transport,
            smartflow_events,
            raw::Mode::SmartFlow,
            &format!("SmartFlow strategy (raw loop) {d}+{t}"),
        )
        .await?;
        sf = Some((a, b));
    }
    print_header(&cmd);
    raw.print(None);
    for (limit, sy) in &runs {
        match limit {
            None => sy.print(Some(&raw)),
            Some(limit) => {
                limit.print(Some(&raw));
                sy.print(Some(limit));
            }
        }
    }
    if let (Some((a, b)), Some((_, sy))) = (&sf, runs.first()) {
        a.print(None);
        b.print(None);
        let mut vs = sy.clone();
        vs.name = format!("switchyard {d}+{t} vs SmartFlow strategy");
        vs.print(Some(b));
        vs.name = format!("switchyard {d}+{t} vs SmartFlow settings");
        vs.print(Some(a));
    }
    println!(
        "\nCost per event: this process's CPU and heap allocations (setup and teardown included),"
    );
    println!(
        "and on MariaDB the statements and commits the server received (`Questions`, `Com_commit`):"
    );
    for (name, cost) in &costs {
        let server = cost.statements.map_or(String::new(), |(s, c)| {
            format!(" {s:>6.2} statements {c:>6.3} commits")
        });
        println!(
            "  {name:<44} {:>7.1} µs CPU {:>8.1} allocations{server}",
            cost.cpu_us, cost.allocations
        );
    }
    Ok(())
}

async fn latency(
    db: Db,
    transport: Transport,
    rate: u32,
    secs: u64,
    lanes: u32,
) -> anyhow::Result<()> {
    let (d, t) = (db_name(db), tr_name(transport));
    let cmd = format!(
        "switchyard-bench latency --db {d} --transport {t} --rate {rate} --secs {secs} --lanes {lanes}"
    );
    let mode = match lanes {
        1 => host::Mode::Default,
        n => host::Mode::Lanes(n),
    };
    let raw = raw::latency(
        db,
        transport,
        rate,
        secs,
        lanes as usize,
        &format!("raw loop {d}+{t} @{rate}/s, {lanes} lane(s)"),
    )
    .await?;
    let sy = host::latency(
        db,
        transport,
        rate,
        secs,
        mode,
        &format!("switchyard {d}+{t} @{rate}/s, {lanes} lane(s)"),
    )
    .await?;
    print_header(&cmd);
    raw.print(None);
    sy.print(Some(&raw));
    Ok(())
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::E2e {
            db,
            transport,
            events,
            smartflow_events,
            no_smartflow,
            lanes,
        } => {
            e2e(
                db,
                transport,
                events,
                smartflow_events,
                !no_smartflow,
                &lanes,
            )
            .await?;
        }
        Cmd::Latency {
            db,
            transport,
            rate,
            secs,
            lanes,
        } => latency(db, transport, rate, secs, lanes).await?,
        Cmd::Handler { db, events } => sandbox::handler(db, events).await?,
        Cmd::Instantiate { invocations } => sandbox::instantiate(invocations).await?,
        Cmd::Limits { invocations } => sandbox::limits(invocations).await?,
        Cmd::Reload { reps, big_reps } => reload::reload(reps, big_reps).await?,
        Cmd::Retention {
            db,
            rows,
            batch,
            baseline_claims,
        } => retention::retention(db, rows, batch, baseline_claims).await?,
        Cmd::Neighbour { db, events } => neighbour::neighbour(db, events).await?,
        Cmd::Sql {
            db,
            transport,
            events,
        } => sql::sql(db, transport, events).await?,
        Cmd::Scale {
            db,
            hosts,
            events,
            partitions,
            csv,
        } => scaling::scale(db, &hosts, events, partitions, csv.as_deref()).await?,
        Cmd::Claim {
            db,
            rows,
            claims,
            csv,
        } => claim::claim(db, &rows, claims, csv.as_deref()).await?,
        Cmd::Soak {
            db,
            transport,
            rate,
            minutes,
            csv,
        } => soak::soak(db, transport, rate, minutes, csv.as_deref()).await?,
        Cmd::All {
            events,
            smartflow_events,
        } => {
            e2e(
                Db::Mariadb,
                Transport::Kafka,
                events,
                smartflow_events,
                true,
                &[1, 4],
            )
            .await?;
            e2e(
                Db::Mariadb,
                Transport::Embedded,
                events,
                smartflow_events,
                false,
                &[1, 4],
            )
            .await?;
            e2e(
                Db::Postgres,
                Transport::Embedded,
                events,
                smartflow_events,
                false,
                &[1, 4],
            )
            .await?;
            e2e(
                Db::Postgres,
                Transport::Kafka,
                events,
                smartflow_events,
                false,
                &[1, 4],
            )
            .await?;
            e2e(
                Db::Sqlite,
                Transport::Embedded,
                events,
                smartflow_events,
                false,
                &[1, 4],
            )
            .await?;
            e2e(
                Db::Sqlite,
                Transport::Kafka,
                events,
                smartflow_events,
                false,
                &[1, 4],
            )
            .await?;
            latency(Db::Mariadb, Transport::Embedded, 1000, 10, 1).await?;
            latency(Db::Mariadb, Transport::Kafka, 1000, 10, 1).await?;
            sandbox::handler(Db::Mariadb, events).await?;
            sandbox::instantiate(events).await?;
            sandbox::limits(events).await?;
            reload::reload(5, 3).await?;
            neighbour::neighbour(Db::Mariadb, events).await?;
            sql::sql(Db::Mariadb, Transport::Embedded, events).await?;
            sql::sql(Db::Mariadb, Transport::Kafka, events).await?;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    capture::install()?;
    let cli = Cli::parse();
    let _ = SQLITE_SYNCHRONOUS.set(cli.sqlite_synchronous);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    // The scenario runs as a task on the runtime's workers, where the host runs its loops (a
    // future polled by `block_on` runs on the main thread, and every I/O wakeup reaches it
    // from a worker through a futex: a thread switch per statement the host does not pay).
    rt.block_on(async { tokio::spawn(run(cli.cmd)).await? })
}
