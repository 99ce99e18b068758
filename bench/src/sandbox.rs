//! Scenarios about the sandbox itself: the task handler as a component vs the same logic as
//! native Rust (same state/effects path), the cost of one invocation of a trivial handler,
//! and the overhead of fuel metering (issue 7). Hot-reload latency is in `reload.rs`.
//!
//! These call the host's public runtime API ([`Runtime::invoke`]) and store API
//! ([`Store::apply`]) the way the consumer does, so only the handler differs between runs.

use crate::host::{Mode, task_payload};
use crate::{Db, Figures, FreshDb, Scratch, Transport, component, hwm_kib, reset_hwm};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::catalog::Catalog;
use switchyard::config::Config;
use switchyard::runtime::Effects;
use switchyard::runtime::{BatchAccess, EventData, Outcome, Policy, Runtime};
use switchyard::store::{self, Backoff, BatchOutcomes, RowOutcome, Store, now};
use switchyard::{NewEvent, Switchyard};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// State reads as the consumer serves them: the batch's earlier writes, then the store.
struct Reader {
    store: Option<Arc<dyn Store>>,
    overlay: Mutex<HashMap<String, Option<Vec<u8>>>>,
}

#[async_trait]
impl BatchAccess for Reader {
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self
            .overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(v.clone());
        }
        match &self.store {
            Some(s) => s.state_get(service, key).await.map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }
}

/// plugins/task's `Task`, field for field.
#[derive(Serialize, Deserialize)]
struct Task {
    id: i64,
    user_id: i64,
    #[serde(default)]
    title: String,
    priority: u8,
    #[serde(default)]
    urgency_threshold_at: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation_id: Option<String>,
}

/// `task.record.requested` as native Rust: plugins/task's `record` and `check_task`, line for
/// line, producing the same effects as the component.
fn native_record(payload: &[u8]) -> Result<Effects, String> {
    let task: Task = serde_json::from_slice(payload)
        .map_err(|e| format!("invalid task.record.requested payload: {e}"))?;
    if task.user_id <= 0 || task.id <= 0 {
        return Err("task id and user_id must be positive".into());
    }
    if !(1..=4).contains(&task.priority) {
        return Err(format!("priority must be 1..=4, got {}", task.priority));
    }
    if let Some(t) = task.urgency_threshold_at.as_deref() {
        OffsetDateTime::parse(t, &Rfc3339).map_err(|e| format!("bad time {t:?}: {e}"))?;
    }
    let bytes = serde_json::to_vec(&task).map_err(|e| e.to_string())?;
    Ok(Effects {
        state_writes: vec![(format!("task/{}/{}", task.user_id, task.id), Some(bytes))],
        emits: Vec::new(),
    })
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
    let table = "task_outbox_messages";
    let backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(32),
    };
    let (mut wasm_total, mut native_total) = (Duration::ZERO, Duration::ZERO);
    let (mut wasm_handler, mut native_handler) = (Duration::ZERO, Duration::ZERO);
    let (mut wasm_n, mut native_n) = (0, 0);
    reset_hwm();
    for (b, batch) in rows.chunks(500).enumerate() {
        let wasm = b % 2 == 0;
        let started = Instant::now();
        let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
        let _states = store.row_states(table, &ids).await?;
        let reader = Arc::new(Reader {
            store: Some(store.clone()),
            overlay: Mutex::new(HashMap::new()),
        });
        let mut out = Vec::with_capacity(batch.len());
        let mut handler_time = Duration::ZERO;
        for (id, k) in batch {
            let payload = serde_json::to_vec(&task_payload(*k))?;
            let h = Instant::now();
            let effects = if wasm {
                let o = sb
                    .runtime
                    .invoke(
                        &sb.component,
                        &sb.policy,
                        &sb.catalog,
                        reader.clone(),
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
                native_record(&payload).map_err(|e| anyhow::anyhow!(e))?
            };
            handler_time += h.elapsed();
            {
                let mut overlay = reader.overlay.lock().unwrap_or_else(|p| p.into_inner());
                for (k, v) in &effects.state_writes {
                    overlay.insert(k.clone(), v.clone());
                }
            }
            // The task handler emits nothing: its effects are its state writes.
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
        let applied = BatchOutcomes {
            service: "task".into(),
            rows: out,
        };
        store.apply(table, &applied, &backoff, now()).await?;
        if wasm {
            wasm_total += started.elapsed();
            wasm_handler += handler_time;
            wasm_n += batch.len();
        } else {
            native_total += started.elapsed();
            native_handler += handler_time;
            native_n += batch.len();
        }
    }
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
    let native_h = fig("native task logic only", native_n, native_handler);
    let wasm_h = fig("task component invoke only", wasm_n, wasm_handler);
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

/// `n` sequential invocations of `name` with `payload`, in-memory state.
async fn invoke_loop(
    sb: &Sandbox,
    n: usize,
    payload: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<Duration> {
    let reader: Arc<dyn BatchAccess> = Arc::new(Reader {
        store: None,
        overlay: Mutex::new(HashMap::new()),
    });
    let started = Instant::now();
    for k in 0..n {
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
    Ok(started.elapsed())
}

/// Invocations of the `probe` test component with an empty script (one state write): a fresh
/// instance from the pooling allocator per call, against a native closure doing the same.
///
/// # Errors
/// Component failures.
pub async fn instantiate(n: usize) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let url = format!("sqlite://{}", scratch.0.join("unused.db").display());
    let sb = sandbox(&url, &scratch.0, "probe", "")?;
    invoke_loop(&sb, 200, |_| b"{}".to_vec()).await?; // warm up
    reset_hwm();
    let wasm = invoke_loop(&sb, n, |_| b"{}".to_vec()).await?;
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
    Ok(())
}

/// The task component's invocation throughput with fuel metering on (an unreachable budget)
/// vs off. Epoch interruption, the memory limiter and the table cap are always on.
///
/// # Errors
/// Component failures.
pub async fn limits(n: usize) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let url = format!("sqlite://{}", scratch.0.join("unused.db").display());
    let payload = |k| serde_json::to_vec(&task_payload(k)).unwrap_or_default();
    let plain = sandbox(&url, &scratch.0, "task", "")?;
    let fuel = sandbox(&url, &scratch.0, "task", "limits = { fuel = 1000000000 }")?;
    invoke_loop(&plain, 200, payload).await?;
    invoke_loop(&fuel, 200, payload).await?;
    reset_hwm();
    // Alternate halves so machine noise hits both alike.
    let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..2 {
        a += invoke_loop(&plain, n / 2, payload).await?;
        b += invoke_loop(&fuel, n / 2, payload).await?;
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
