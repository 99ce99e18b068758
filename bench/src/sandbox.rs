//! Scenarios about the sandbox itself: the task handler as a component vs the same logic as
//! native Rust (same state/effects path), the cost of one invocation of a trivial handler,
//! and the overhead of fuel metering (issue 7). Hot-reload latency is in `reload.rs`.
//!
//! These call the host's public runtime API ([`Runtime::invoke`]) and store API
//! ([`Store::apply`]) the way the consumer does, so only the handler differs between runs.

use crate::batch_tx::{BatchTx, TaskStatements};
use crate::host::{Mode, task_payload};
use crate::{Db, Figures, FreshDb, Scratch, Transport, component, hwm_kib, reset_hwm};
use async_trait::async_trait;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::catalog::Catalog;
use switchyard::config::Config;
use switchyard::handler_sql::SqlValue;
use switchyard::runtime::Effects;
use switchyard::runtime::{BatchAccess, EventData, Outcome, Policy, Runtime};
use switchyard::store::sqlite::SqliteStore;
use switchyard::store::{self, BatchOutcomes, RowOutcome, Store, now};
use switchyard::{NewEvent, Switchyard};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// In-memory state, no database: for the trivial component, which reads and runs nothing.
#[derive(Default)]
struct MemoryReader;

#[async_trait]
impl BatchAccess for MemoryReader {
    async fn get(&self, _service: &str, _key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
}

/// plugins/task's `Task`, field for field.
#[derive(Deserialize)]
struct Task {
    id: i64,
    user_id: i64,
    #[serde(default)]
    title: String,
    priority: i64,
    #[serde(default)]
    urgency_threshold_at: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    conversation_id: Option<String>,
}

/// A time as the guest SDK binds it (`sdk/rust/src/sql.rs` `db_time`): RFC 3339, UTC, ms.
fn db_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at
        .replace_nanosecond(u32::from(at.millisecond()) * 1_000_000)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// `task.record.requested` as native Rust: plugins/task's `record`, `check_task` and
/// `store::save`, line for line, running the same statements through the batch's transaction.
async fn native_record(
    payload: &[u8],
    statements: &TaskStatements,
    batch: &BatchTx,
) -> anyhow::Result<()> {
    let task: Task = serde_json::from_slice(payload)
        .map_err(|e| anyhow::anyhow!("invalid task.record.requested payload: {e}"))?;
    anyhow::ensure!(
        task.user_id > 0 && task.id > 0,
        "task id and user_id must be positive"
    );
    anyhow::ensure!(
        (1..=4).contains(&task.priority),
        "priority must be 1..=4, got {}",
        task.priority
    );
    let threshold = match task.urgency_threshold_at.as_deref() {
        Some(t) => SqlValue::Text(db_time(
            OffsetDateTime::parse(t, &Rfc3339)
                .map_err(|e| anyhow::anyhow!("bad time {t:?}: {e}"))?,
        )),
        None => SqlValue::Null,
    };
    let values = vec![
        SqlValue::Int(task.user_id),
        SqlValue::Text(task.title),
        SqlValue::Int(task.priority),
        threshold,
        SqlValue::Bool(task.done),
        task.conversation_id.map_or(SqlValue::Null, SqlValue::Text),
        SqlValue::Text(db_time(OffsetDateTime::now_utc())),
    ];
    statements.save(batch, task.id, values).await
}

fn event(id: i64, k: usize, payload: Vec<u8>) -> EventData {
    EventData {
        outbox_id: id,
        event_id: id.to_string(),
        event_type: "task.record.requested".into(),
        event_version: "v1".into(),
        service: "task".into(),
        aggregate_id: String::new(),
        message_key: format!("k{}", k % 64),
        payload,
        attempt: 1,
        chain_depth: 0,
    }
}

/// A runtime with the task route (optionally with a fuel budget), its component and policy.
struct Sandbox {
    runtime: Runtime,
    component: Arc<switchyard::runtime::LoadedComponent>,
    policy: Arc<Policy>,
    catalog: Arc<Catalog>,
}

fn sandbox(url: &str, dir: &Path, name: &str, route_limits: &str) -> anyhow::Result<Sandbox> {
    let text = crate::host::config_text(
        url,
        Transport::Embedded,
        "sandboxbench",
        Mode::Default,
        &component(name)?,
        route_limits,
        false,
    );
    let config = Config::parse(&text, Path::new("bench.toml"), dir.to_owned())?;
    let runtime = Runtime::new(&config)?;
    let policy = Arc::new(Policy::for_route(&config, &config.routes[0]));
    // Linked with what the route grants (the task component imports `sql`), as the host does.
    let component = runtime.load_for(&component(name)?, &policy)?;
    let catalog = Arc::new(Catalog::from_config(&config)?);
    Ok(Sandbox {
        runtime,
        component,
        policy,
        catalog,
    })
}

/// Native vs component, each batch of 500: invoke every event, then `Store::apply` the batch.
/// Batches alternate between the two so database growth affects both alike.
///
/// # Errors
/// Database or component failures.
pub async fn handler(db: Db, events: usize) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let fresh = FreshDb::create(db, &scratch.0).await?;
    let text = crate::host::config_text(
        &fresh.url,
        Transport::Embedded,
        "handlerbench",
        Mode::Default,
        &component("task")?,
        "",
        false,
    );
    let config = Config::parse(&text, Path::new("bench.toml"), scratch.0.clone())?;
    let host = Switchyard::open(config).await?;
    host.migrate().await?;
    let store = host.store().clone();
    let outbox = host.outbox();
    let mut rows = Vec::with_capacity(2 * events);
    let mut k = 1;
    while k <= 2 * events {
        let n = 500.min(2 * events + 1 - k);
        let new = (k..k + n)
            .map(|i| outbox.row(NewEvent::new("task.record.requested", task_payload(i))))
            .collect::<Result<Vec<_>, _>>()?;
        let ids = store.insert(&new, now()).await?;
        rows.extend(ids.into_iter().zip(k..k + n));
        k += n;
    }
    let sb = sandbox(&fresh.url, &scratch.0, "task", "")?;
    let statements = TaskStatements::new(&sb.policy, store.backend())?;
    let table = "task_outbox_messages";
    let (mut wasm_total, mut native_total) = (Duration::ZERO, Duration::ZERO);
    let (mut wasm_handler, mut native_handler) = (Duration::ZERO, Duration::ZERO);
    let (mut wasm_n, mut native_n) = (0, 0);
    reset_hwm();
    for (b, rows) in rows.chunks(500).enumerate() {
        let wasm = b % 2 == 0;
        let started = Instant::now();
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        let _states = store.row_states(table, &ids).await?;
        let batch = Arc::new(BatchTx::new(store.clone()));
        let mut out = Vec::with_capacity(rows.len());
        let mut handler_time = Duration::ZERO;
        for (id, k) in rows {
            let payload = serde_json::to_vec(&task_payload(*k))?;
            let h = Instant::now();
            let effects = if wasm {
                let o = sb
                    .runtime
                    .invoke(
                        &sb.component,
                        &sb.policy,
                        &sb.catalog,
                        batch.clone(),
                        event(*id, *k, payload),
                    )
                    .await;
                anyhow::ensure!(
                    o.outcome == Outcome::Ack,
                    "task component did not ack: {:?}",
                    o.outcome
                );
                o.effects
            } else {
                native_record(&payload, &statements, &batch).await?;
                Effects::default()
            };
            handler_time += h.elapsed();
            batch.remember(&effects.state_writes);
            // `task.record.requested` emits nothing: its effect is the row it saves in `tasks`.
            anyhow::ensure!(effects.emits.is_empty(), "task handler emitted events");
            out.push((
                *id,
                RowOutcome::Consumed {
                    version: sb.component.hash.clone(),
                    effects: store::Effects {
                        state_writes: effects.state_writes,
                        new_rows: Vec::new(),
                    },
                },
            ));
        }
        let outcomes = BatchOutcomes {
            service: "task".into(),
            rows: out,
        };
        batch.commit(table, &outcomes).await?;
        if wasm {
            wasm_total += started.elapsed();
            wasm_handler += handler_time;
            wasm_n += rows.len();
        } else {
            native_total += started.elapsed();
            native_handler += handler_time;
            native_n += rows.len();
        }
    }
    anyhow::ensure!(
        crate::retention::Conn::open(db, &fresh.url)
            .await?
            .count("SELECT COUNT(*) FROM tasks")
            .await?
            == (wasm_n + native_n) as i64,
        "not every event saved its task"
    );
    let hwm = hwm_kib();
    let fig = |name: &str, n, elapsed| Figures {
        name: name.into(),
        events: n,
        elapsed,
        latencies: Vec::new(),
        hwm_kib: hwm,
    };
    let d = crate::db_name(db);
    let native = fig(
        &format!("native task logic + apply ({d})"),
        native_n,
        native_total,
    );
    let wasm = fig(&format!("task component + apply ({d})"), wasm_n, wasm_total);
    let native_h = fig(
        "native task logic + its sql statements",
        native_n,
        native_handler,
    );
    let wasm_h = fig(
        "task component invoke (incl. sql statements)",
        wasm_n,
        wasm_handler,
    );
    crate::print_header(&format!(
        "switchyard-bench handler --db {d} --events {events}"
    ));
    native.print(None);
    wasm.print(Some(&native));
    native_h.print(None);
    wasm_h.print(Some(&native_h));
    drop(host);
    fresh.drop_db().await;
    Ok(())
}

/// `n` sequential invocations of `name` with `payload`: with `db`, in batches of 500 each in
/// one consume transaction (the task component's statements run there), else with in-memory
/// state and no database.
async fn invoke_loop(
    sb: &Sandbox,
    db: Option<&Arc<dyn Store>>,
    n: usize,
    payload: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for start in (0..n).step_by(500) {
        let batch = db.map(|store| Arc::new(BatchTx::new(store.clone())));
        let reader: Arc<dyn BatchAccess> = match &batch {
            Some(b) => b.clone(),
            None => Arc::new(MemoryReader),
        };
        for k in start..n.min(start + 500) {
            let o = sb
                .runtime
                .invoke(
                    &sb.component,
                    &sb.policy,
                    &sb.catalog,
                    reader.clone(),
                    event(k as i64 + 1, k, payload(k)),
                )
                .await;
            anyhow::ensure!(
                o.outcome == Outcome::Ack,
                "component did not ack: {:?}",
                o.outcome
            );
        }
        if let Some(b) = batch {
            b.finish().await?;
        }
    }
    Ok(started.elapsed())
}

/// Rounds the `instantiate` scenario times separately.
const ROUNDS: usize = 10;

/// Invocations of the `probe` test component with an empty script (one state write): a fresh
/// instance from the pooling allocator per call, against a native closure doing the same.
///
/// # Errors
/// Component failures.
pub async fn instantiate(n: usize) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let url = format!("sqlite://{}", scratch.0.join("unused.db").display());
    let sb = sandbox(&url, &scratch.0, "probe", "")?;
    invoke_loop(&sb, None, 200, |_| b"{}".to_vec()).await?; // warm up
    reset_hwm();
    let allocations = crate::allocations::so_far();
    // In rounds, so a slowed stretch shows as slow rounds instead of moving one mean: this
    // VM's vCPUs change speed by up to ~30% from minute to minute (docs/BENCHMARKS.md, pass 6).
    let per_round = (n / ROUNDS).max(1);
    let mut wasm = Duration::ZERO;
    let mut rounds_us = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let round = invoke_loop(&sb, None, per_round, |_| b"{}".to_vec()).await?;
        rounds_us.push(round.as_secs_f64() * 1e6 / per_round as f64);
        wasm += round;
    }
    let n = per_round * ROUNDS;
    let allocations = crate::allocations::so_far() - allocations;
    let hwm = hwm_kib();
    let started = Instant::now();
    for k in 0..n {
        let mut e = Effects::default();
        e.state_writes
            .push(("build".into(), Some(format!("{k}").into_bytes())));
        std::hint::black_box(e);
    }
    let native = started.elapsed();
    let f = |name: &str, elapsed| Figures {
        name: name.into(),
        events: n,
        elapsed,
        latencies: Vec::new(),
        hwm_kib: hwm,
    };
    let native = f("native no-op (one state write)", native);
    let wasm = f("trivial component invocation (probe {})", wasm);
    crate::print_header(&format!("switchyard-bench instantiate --invocations {n}"));
    native.print(None);
    wasm.print(Some(&native));
    println!(
        "per invocation (fresh instance + call + one state write): {:.2} µs",
        wasm.elapsed.as_secs_f64() * 1e6 / n as f64
    );
    rounds_us.sort_by(f64::total_cmp);
    println!(
        "per invocation in {ROUNDS} rounds of {per_round}: best {:.2} µs, median {:.2} µs, worst {:.2} µs",
        rounds_us[0],
        rounds_us[ROUNDS / 2],
        rounds_us[ROUNDS - 1]
    );
    println!(
        "heap allocations per invocation (all threads): {:.1}",
        allocations as f64 / n.max(1) as f64
    );
    Ok(())
}

/// The task component's invocation throughput with fuel metering on (an unreachable budget)
/// vs off. Epoch interruption, the memory limiter and the table cap are always on. Its `sql`
/// statements run on a SQLite file (the same for both), a transaction per 500 invocations.
///
/// # Errors
/// Component failures.
pub async fn limits(n: usize) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let fresh = FreshDb::create(Db::Sqlite, &scratch.0).await?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&fresh.url).await?);
    let db = Some(&store);
    let payload = |k| serde_json::to_vec(&task_payload(k)).unwrap_or_default();
    let plain = sandbox(&fresh.url, &scratch.0, "task", "")?;
    let fuel = sandbox(
        &fresh.url,
        &scratch.0,
        "task",
        "limits = { fuel = 1000000000 }",
    )?;
    invoke_loop(&plain, db, 200, payload).await?;
    invoke_loop(&fuel, db, 200, payload).await?;
    reset_hwm();
    // Alternate halves so machine noise hits both alike.
    let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..2 {
        a += invoke_loop(&plain, db, n / 2, payload).await?;
        b += invoke_loop(&fuel, db, n / 2, payload).await?;
    }
    let hwm = hwm_kib();
    let f = |name: &str, elapsed| Figures {
        name: name.into(),
        events: (n / 2) * 2,
        elapsed,
        latencies: Vec::new(),
        hwm_kib: hwm,
    };
    let a = f("task component, default limits (epoch+memory)", a);
    let b = f("task component, + fuel metering", b);
    crate::print_header(&format!("switchyard-bench limits --invocations {n}"));
    a.print(None);
    b.print(Some(&a));
    Ok(())
}
