//! The real host under load: a fresh database, the `task` component routed for
//! `task.record.requested`, the configured transport, and events enqueued through the host's
//! own store and producer API. Completion and latency come from [`capture`](crate::capture):
//! the instant each event's consume transaction committed.

use crate::{
    Db, Figures, FreshDb, Scratch, Transport, capture, component, hwm_kib, reset_hwm, unique,
};
use anyhow::Context;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use switchyard::config::Config;
use switchyard::store::now;
use switchyard::{NewEvent, Running, Switchyard};

/// How the host is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The defaults: relay batches of 500, consumer batches of 500, relay woken on enqueue.
    Default,
    /// SmartFlow's strategy: relay.batch_size = 100, relay.poll_interval_ms = 1000,
    /// consumer.batch_size = 1 (one transaction per message), relay never woken on enqueue.
    SmartFlow,
    /// The defaults with `consumer.lanes` = n (a batch split by key, lanes side by side).
    Lanes(u32),
}

/// The task event for row `i`: a real `task.record.requested` payload.
pub fn task_payload(i: usize) -> serde_json::Value {
    json!({
        "id": i as i64 + 1,
        "user_id": (i % 100) as i64 + 1,
        "title": format!("benchmark task {i}"),
        "priority": (i % 4) as u8 + 1,
        "urgency_threshold_at": "2026-12-01T09:00:00Z",
    })
}

/// Config text for the bench host.
pub fn config_text(
    url: &str,
    transport: Transport,
    prefix: &str,
    mode: Mode,
    component: &Path,
    extra_route: &str,
    watch: bool,
) -> String {
    let transport = match transport {
        Transport::Embedded => String::new(),
        Transport::Kafka => format!(
            "[transport]\nkind = \"kafka\"\nbrokers = \"{}\"\nsession_timeout_ms = 6000\n",
            crate::kafka_brokers()
        ),
    };
    let (relay_batch, poll, consumer_batch) = match mode {
        Mode::Default | Mode::Lanes(_) => (500, 1000, 500),
        Mode::SmartFlow => (100, 1000, 1),
    };
    // The host reads SQLite's durability setting from its URL.
    let url = match crate::sqlite_synchronous() {
        crate::Synchronous::Normal if url.starts_with("sqlite:") => {
            format!("{url}?synchronous=normal")
        }
        _ => url.to_owned(),
    };
    let lanes = match mode {
        Mode::Lanes(n) => n,
        _ => 1,
    };
    format!(
        "database_url = \"{url}\"\n{transport}\n[naming]\nprefix = \"{prefix}\"\n\
         [relay]\nbatch_size = {relay_batch}\npoll_interval_ms = {poll}\n\
         [consumer]\nbatch_size = {consumer_batch}\nlanes = {lanes}\n\
         [reload]\nwatch = {watch}\ncache_dir = \"cache\"\n\
         [services.task]\n\
         [[routes]]\nevent_type = \"task.record.requested\"\nservice = \"task\"\ncomponent = \"{}\"\n\
         sql = {{ tables = {{ tasks = \"rw\", bench_items = \"rw\", bench_totals = \"rw\" }} }}\n\
         {extra_route}\n",
        component.display()
    )
}

/// A started bench host on a fresh database.
pub struct BenchHost {
    pub host: Switchyard,
    pub running: Running,
    pub db: FreshDb,
    pub scratch: Scratch,
}

impl BenchHost {
    /// # Errors
    /// Database, broker or component failures, with what failed.
    pub async fn start(
        db: Db,
        transport: Transport,
        mode: Mode,
        component: &Path,
        watch: bool,
    ) -> anyhow::Result<BenchHost> {
        Self::start_with(db, transport, mode, component, watch, "").await
    }

    /// As [`BenchHost::start`], with more services and routes appended to the config.
    ///
    /// # Errors
    /// As [`BenchHost::start`].
    pub async fn start_with(
        db: Db,
        transport: Transport,
        mode: Mode,
        component: &Path,
        watch: bool,
        extra_route: &str,
    ) -> anyhow::Result<BenchHost> {
        let scratch = Scratch::new()?;
        let fresh = FreshDb::create(db, &scratch.0).await?;
        let prefix = format!("sybench{}", unique().replace('_', ""));
        let text = config_text(
            &fresh.url,
            transport,
            &prefix,
            mode,
            component,
            extra_route,
            watch,
        );
        let cfg_path = scratch.0.join("bench.toml");
        std::fs::write(&cfg_path, &text)?;
        let config = Config::load(&cfg_path).context("parsing the bench config")?;
        let host = Switchyard::open(config).await?;
        host.migrate().await?;
        let running = host
            .start(host.configured_transport().await?)
            .await
            .context("starting the host")?;
        // Warm up: the first event waits for the consumer group to form (Kafka) and the first
        // instance to be created.
        capture::reset();
        host.publish(NewEvent::new("task.record.requested", task_payload(0)))
            .await?;
        wait_done(1, Duration::from_secs(60)).await?;
        capture::reset();
        Ok(BenchHost {
            host,
            running,
            db: fresh,
            scratch,
        })
    }

    pub async fn stop(self) {
        if !self.running.shutdown(Duration::from_secs(10)).await {
            eprintln!("warning: the host did not stop within 10 s");
        }
        drop(self.host);
        self.db.drop_db().await;
        drop(self.scratch);
    }
}

/// Waits until `want` events reached a final outcome, failing if nothing progresses for `stall`.
pub async fn wait_done(want: usize, stall: Duration) -> anyhow::Result<()> {
    let mut last = (0, Instant::now());
    loop {
        let done = capture::done();
        if done >= want {
            return Ok(());
        }
        if done != last.0 {
            last = (done, Instant::now());
        }
        anyhow::ensure!(
            last.1.elapsed() < stall,
            "only {done} of {want} events consumed, no progress for {stall:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Latencies (enqueue committed -> consume committed) of every captured event.
fn latencies(enqueued: &HashMap<i64, Instant>) -> (Vec<Duration>, Option<Instant>) {
    let handled = capture::take();
    let mut last = None;
    let mut out = Vec::with_capacity(handled.len());
    for h in handled {
        if let Some(t) = enqueued.get(&h.outbox_id) {
            out.push(h.at.saturating_duration_since(*t));
            last = Some(last.map_or(h.at, |l: Instant| l.max(h.at)));
        }
    }
    (out, last)
}

/// N events enqueued in transactions of 500 rows -> all consumed.
///
/// # Errors
/// As [`BenchHost::start`], or events that stop being consumed.
pub async fn throughput(
    db: Db,
    transport: Transport,
    events: usize,
    mode: Mode,
    name: &str,
) -> anyhow::Result<Figures> {
    let bh = BenchHost::start(db, transport, mode, &component("task")?, false).await?;
    drive(bh, events, task_payload, mode != Mode::SmartFlow, name).await
}

/// Enqueues `events` `task.record.requested` events with `payload` in transactions of 500
/// rows on a started host (waking its relay after each when `wake`), waits until all are
/// consumed, stops the host and returns the figures.
///
/// # Errors
/// Events that stop being consumed.
pub async fn drive(
    bh: BenchHost,
    events: usize,
    payload: impl Fn(usize) -> serde_json::Value,
    wake: bool,
    name: &str,
) -> anyhow::Result<Figures> {
    reset_hwm();
    let outbox = bh.host.outbox();
    let mut enqueued = HashMap::with_capacity(events);
    let started = Instant::now();
    let mut i = 1;
    while i <= events {
        let n = 500.min(events + 1 - i);
        let rows = (i..i + n)
            .map(|k| {
                outbox.row(
                    NewEvent::new("task.record.requested", payload(k)).key(format!("k{}", k % 64)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids = bh.host.store().insert(&rows, now()).await?;
        let t = Instant::now();
        enqueued.extend(ids.into_iter().map(|id| (id, t)));
        if wake {
            outbox.wake("task");
        }
        i += n;
    }
    wait_done(events, Duration::from_secs(60)).await?;
    let (lat, last) = latencies(&enqueued);
    let elapsed = last.unwrap_or_else(Instant::now) - started;
    let hwm = hwm_kib();
    bh.stop().await;
    Ok(Figures {
        name: name.to_owned(),
        events,
        elapsed,
        latencies: lat,
        hwm_kib: hwm,
    })
}

/// A fixed offered load: one event per enqueue transaction, `rate` per second for `secs`.
///
/// # Errors
/// As [`throughput`].
pub async fn latency(
    db: Db,
    transport: Transport,
    rate: u32,
    secs: u64,
    mode: Mode,
    name: &str,
) -> anyhow::Result<Figures> {
    let bh = BenchHost::start(db, transport, mode, &component("task")?, false).await?;
    reset_hwm();
    let outbox = bh.host.outbox();
    let total = (rate as u64 * secs) as usize;
    let mut enqueued = HashMap::with_capacity(total);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    // Each enqueue is its own task, so a slow commit never lowers the offered rate.
    let mut inflight = tokio::task::JoinSet::new();
    for k in 1..=total {
        let due = started + period.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        // Keyed as the raw loop's rows (and SmartFlow's, by aggregate): lanes split by key.
        let row = outbox.row(
            NewEvent::new("task.record.requested", task_payload(k)).key(format!("k{}", k % 64)),
        )?;
        let (store, outbox) = (bh.host.store().clone(), outbox.clone());
        inflight.spawn(async move {
            let ids = store.insert(std::slice::from_ref(&row), now()).await?;
            let t = Instant::now();
            outbox.wake("task");
            anyhow::Ok((ids[0], t))
        });
    }
    while let Some(r) = inflight.join_next().await {
        let (id, t) = r??;
        enqueued.insert(id, t);
    }
    wait_done(total, Duration::from_secs(60)).await?;
    let (lat, last) = latencies(&enqueued);
    let elapsed = last.unwrap_or_else(Instant::now) - started;
    let hwm = hwm_kib();
    bh.stop().await;
    Ok(Figures {
        name: name.to_owned(),
        events: total,
        elapsed,
        latencies: lat,
        hwm_kib: hwm,
    })
}
