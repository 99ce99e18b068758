//! The raw limit: the same inserts, claims, status updates, produce and consume as the host,
//! hand-written with sqlx and rdkafka (or a tokio channel for the embedded transport), with no
//! handler, no routing and no WebAssembly (DESIGN.md's "minimal batched pipeline": batches of
//! 500, claim `FOR UPDATE SKIP LOCKED` on MariaDB/PostgreSQL, `BEGIN IMMEDIATE` on SQLite,
//! mark consumed and upsert one state row per event, one transaction per batch). With
//! [`Work::Task`] (what [`run`] and [`latency`] do) the per-event work is the task component's
//! own statements instead of the state row. With [`Mode::SmartFlow`], the seed's strategy
//! instead: scan every 1 s for 100 rows, publish and mark each row in its own commit, consume
//! each message in its own transaction.
//!
//! It writes as the host does, so its latency shows the disk's bound and not a self-inflicted
//! one: on SQLite its writers take turns in the process (the host's `WriterTurn`) instead of
//! sleeping in SQLite's busy handler, and at a fixed rate ([`latency`]) one writer commits the
//! enqueues waiting for it together (the host's group commit).
//!
//! The tables are created by the host's own migrations, so indexes and columns are identical.

use crate::{Db, Figures, FreshDb, Scratch, Transport, hwm_kib, reset_hwm, unique};
use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{MySql, MySqlPool, PgPool, Postgres, QueryBuilder, Sqlite, SqlitePool};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard::config::Config;
use switchyard::store::{NewRow, now};
use switchyard::{NewEvent, Switchyard};
use tokio::sync::{Notify, mpsc};

const TABLE: &str = "task_outbox_messages";
const BATCH: usize = 500;

/// What the consume transaction does per event besides marking it consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Upsert one state row per event (what the task handler's effects cost).
    State,
    /// One INSERT and one UPDATE per event on the business tables of [`crate::sql`], each its
    /// own statement, in the batch's transaction: the native twin of the `sql` handler.
    Sql,
    /// What the `task` component does for `task.record.requested` (plugins/task `save`): read
    /// the task's row by id, insert it when missing; no state row.
    Task,
}

/// Which strategy the loop follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batches of 500 everywhere.
    Batched,
    /// SmartFlow's seed: a scan every 1 s for 100 rows, one commit per message.
    SmartFlow,
}

/// How events are offered.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// `n` events in insert transactions of 500.
    Bulk(usize),
    /// `rate` single-row transactions per second for `secs`.
    Rate(u32, u64),
}

enum Pool {
    My(MySqlPool),
    Pg(PgPool),
    /// With its writer turn: the host takes turns among its own writers (`WriterTurn`) instead
    /// of leaving them to SQLite's busy handler, whose sleeps (up to 100 ms each) would make the
    /// raw loop's tail the busy handler's, not the disk's.
    Lite(SqlitePool, tokio::sync::Mutex<()>),
}

/// `SELECT` due rows (optionally locking), optionally mark them published, in one transaction.
macro_rules! claim {
    ($tx:expr, $db:ty, $limit:expr, $lock:expr, $mark:expr) => {{
        let mut tx = $tx;
        let t = now();
        let mut q = QueryBuilder::<$db>::new(format!(
            "SELECT id, payload FROM {TABLE} WHERE status = 'pending' AND next_retry_at <= "
        ));
        q.push_bind(t)
            .push(" ORDER BY next_retry_at, id LIMIT ")
            .push_bind($limit as i64)
            .push($lock);
        let rows: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
        if $mark && !rows.is_empty() {
            let mut u = QueryBuilder::<$db>::new(format!(
                "UPDATE {TABLE} SET status = 'published', publish_count = publish_count + 1, published_at = "
            ));
            u.push_bind(t).push(", updated_at = ").push_bind(t).push(" WHERE id IN (");
            let mut s = u.separated(", ");
            for (id, _) in &rows {
                s.push_bind(*id);
            }
            u.push(")");
            u.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        rows
    }};
}

/// Mark a batch consumed and upsert one state row per event, in one transaction.
macro_rules! consume {
    ($tx:expr, $db:ty, $batch:expr, $upsert:expr, $work:expr, $statements:expr, $task:expr) => {{
        let mut tx = $tx;
        let t = now();
        let mut u = QueryBuilder::<$db>::new(format!(
            "UPDATE {TABLE} SET status = 'consumed', handler_version = 'raw', consumed_at = "
        ));
        u.push_bind(t)
            .push(", updated_at = ")
            .push_bind(t)
            .push(" WHERE id IN (");
        let mut s = u.separated(", ");
        for (id, _) in $batch {
            s.push_bind(*id);
        }
        u.push(")");
        u.build().execute(&mut *tx).await?;
        if $work != Work::Task {
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO switchyard_state (service, state_key, value, updated_at) ",
            );
            q.push_values($batch, |mut b, (id, value)| {
                b.push_bind("task")
                    .push_bind(format!("raw/{id}"))
                    .push_bind(value.clone())
                    .push_bind(t);
            });
            q.push($upsert);
            q.build().execute(&mut *tx).await?;
        }
        if $work == Work::Task {
            let (select, insert) = $task;
            for (id, _) in $batch {
                let found: Option<(i64,)> = sqlx::query_as::<$db, (i64,)>(select)
                    .bind(*id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    sqlx::query::<$db>(insert)
                        .bind(*id)
                        .bind(*id % 100 + 1)
                        .bind(format!("benchmark task {id}"))
                        .bind(*id % 4 + 1)
                        .bind(t)
                        .bind(false)
                        .bind(t)
                        .bind(t)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        if $work == Work::Sql {
            for (id, _) in $batch {
                let (insert, update) = $statements;
                sqlx::query::<$db>(insert)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query::<$db>(update)
                    .bind(*id % crate::sql::TOTALS)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
    }};
}

/// The [`Work::Sql`] statements, `?` placeholders.
const WORK_Q: (&str, &str) = (
    "INSERT INTO bench_items (id, qty) VALUES (?, 1)",
    "UPDATE bench_totals SET n = n + 1 WHERE id = ?",
);
/// The same for PostgreSQL.
const WORK_PG: (&str, &str) = (
    "INSERT INTO bench_items (id, qty) VALUES ($1, 1)",
    "UPDATE bench_totals SET n = n + 1 WHERE id = $1",
);

/// The [`Work::Task`] statements (plugins/task `save`'s read, then its INSERT), `?` placeholders.
const TASK_Q: (&str, &str) = (
    "SELECT user_id FROM tasks WHERE id = ?",
    "INSERT INTO tasks (id, user_id, title, priority, urgency_threshold_at, completed, \
     updated_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
);
/// The same for PostgreSQL.
const TASK_PG: (&str, &str) = (
    "SELECT user_id FROM tasks WHERE id = $1",
    "INSERT INTO tasks (id, user_id, title, priority, urgency_threshold_at, completed, \
     updated_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
);

const UPSERT_MY: &str =
    " ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)";
const UPSERT_STD: &str = " ON CONFLICT (service, state_key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";

impl Pool {
    async fn connect(kind: Db, url: &str) -> anyhow::Result<Pool> {
        Ok(match kind {
            Db::Mariadb => Pool::My(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|c, _| {
                        Box::pin(async move {
                            sqlx::Executor::execute(
                                c,
                                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?,
            ),
            Db::Postgres => Pool::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .connect(url)
                    .await?,
            ),
            Db::Sqlite => {
                let synchronous = match crate::sqlite_synchronous() {
                    crate::Synchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
                    crate::Synchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
                };
                Pool::Lite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect_with(
                            sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                                .synchronous(synchronous)
                                .busy_timeout(Duration::from_secs(30)),
                        )
                        .await?,
                    tokio::sync::Mutex::new(()),
                )
            }
        })
    }

    /// The SQLite writer turn, held until the guard is dropped; none on the servers.
    async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self {
            Pool::Lite(_, turn) => Some(turn.lock().await),
            Pool::My(_) | Pool::Pg(_) => None,
        }
    }

    /// The host's own multi-row insert, in one transaction.
    async fn insert(&self, rows: &[NewRow]) -> anyhow::Result<Vec<i64>> {
        let _turn = self.turn().await;
        let t = now();
        Ok(match self {
            Pool::My(p) => {
                let mut tx = p.begin().await?;
                let ids = switchyard::store::mysql::insert_rows(&mut tx, rows, t).await?;
                tx.commit().await?;
                ids
            }
            Pool::Pg(p) => {
                let mut tx = p.begin().await?;
                let ids = switchyard::store::postgres::insert_rows(&mut tx, rows, t).await?;
                tx.commit().await?;
                ids
            }
            Pool::Lite(p, _) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let ids = switchyard::store::sqlite::insert_rows(&mut tx, rows, t).await?;
                tx.commit().await?;
                ids
            }
        })
    }

    async fn claim(&self, limit: usize, mark: bool) -> anyhow::Result<Vec<(i64, String)>> {
        const LOCK: &str = " FOR UPDATE SKIP LOCKED";
        let _turn = self.turn().await;
        Ok(match self {
            Pool::My(p) => claim!(p.begin().await?, MySql, limit, LOCK, mark),
            Pool::Pg(p) => claim!(p.begin().await?, Postgres, limit, LOCK, mark),
            Pool::Lite(p, _) => claim!(
                p.begin_with("BEGIN IMMEDIATE").await?,
                Sqlite,
                limit,
                "",
                mark
            ),
        })
    }

    /// SmartFlow: one row marked published in its own commit.
    async fn mark_published(&self, id: i64) -> anyhow::Result<()> {
        let _turn = self.turn().await;
        let t = now();
        macro_rules! one {
            ($p:expr, $db:ty) => {{
                let mut u = QueryBuilder::<$db>::new(format!(
                    "UPDATE {TABLE} SET status = 'published', publish_count = publish_count + 1, published_at = "
                ));
                u.push_bind(t).push(", updated_at = ").push_bind(t).push(" WHERE id = ").push_bind(id);
                u.build().execute($p).await?;
            }};
        }
        match self {
            Pool::My(p) => one!(p, MySql),
            Pool::Pg(p) => one!(p, Postgres),
            Pool::Lite(p, _) => one!(p, Sqlite),
        }
        Ok(())
    }

    async fn consume(&self, batch: &[(i64, Vec<u8>)], work: Work) -> anyhow::Result<()> {
        let _turn = self.turn().await;
        match self {
            Pool::My(p) => consume!(
                p.begin().await?,
                MySql,
                batch,
                UPSERT_MY,
                work,
                WORK_Q,
                TASK_Q
            ),
            Pool::Pg(p) => consume!(
                p.begin().await?,
                Postgres,
                batch,
                UPSERT_STD,
                work,
                WORK_PG,
                TASK_PG
            ),
            Pool::Lite(p, _) => consume!(
                p.begin_with("BEGIN IMMEDIATE").await?,
                Sqlite,
                batch,
                UPSERT_STD,
                work,
                WORK_Q,
                TASK_Q
            ),
        }
        Ok(())
    }
}

/// The two ends of the transport.
enum Wire {
    Embedded(mpsc::UnboundedSender<(i64, Vec<u8>)>),
    Kafka(FutureProducer, String),
}

enum Source {
    Embedded(mpsc::UnboundedReceiver<(i64, Vec<u8>)>),
    Kafka(StreamConsumer),
}

impl Wire {
    async fn send(&self, batch: &[(i64, String)]) -> anyhow::Result<()> {
        match self {
            Wire::Embedded(tx) => {
                for (id, payload) in batch {
                    tx.send((*id, payload.as_bytes().to_vec()))
                        .map_err(|_| anyhow::anyhow!("raw consumer stopped"))?;
                }
            }
            Wire::Kafka(producer, topic) => {
                let keys: Vec<String> = batch.iter().map(|(id, _)| id.to_string()).collect();
                let mut pending = Vec::with_capacity(batch.len());
                for ((_, payload), key) in batch.iter().zip(&keys) {
                    let record = FutureRecord::to(topic).key(key).payload(payload);
                    pending.push(producer.send(record, Duration::from_secs(30)));
                }
                for r in futures::future::join_all(pending).await {
                    r.map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

impl Source {
    /// Up to `max` messages: waits for the first, then takes what arrives within 1 ms.
    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
        let mut out = Vec::with_capacity(max);
        match self {
            Source::Embedded(rx) => {
                let Some(m) = rx.recv().await else {
                    return Ok(out);
                };
                out.push(m);
                while out.len() < max {
                    match rx.try_recv() {
                        Ok(m) => out.push(m),
                        Err(_) => break,
                    }
                }
            }
            Source::Kafka(c) => {
                let m = c.recv().await?;
                out.extend(decode(&m));
                while out.len() < max {
                    match tokio::time::timeout(Duration::from_millis(1), c.recv()).await {
                        Ok(m) => out.extend(decode(&m?)),
                        Err(_) => break,
                    }
                }
            }
        }
        Ok(out)
    }

    fn commit(&self) -> anyhow::Result<()> {
        if let Source::Kafka(c) = self {
            c.commit_consumer_state(CommitMode::Async)?;
        }
        Ok(())
    }
}

fn decode(m: &rdkafka::message::BorrowedMessage<'_>) -> Option<(i64, Vec<u8>)> {
    let id = std::str::from_utf8(m.key()?).ok()?.parse().ok()?;
    Some((id, m.payload().unwrap_or_default().to_vec()))
}

async fn wire(transport: Transport) -> anyhow::Result<(Wire, Source)> {
    Ok(match transport {
        Transport::Embedded => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Wire::Embedded(tx), Source::Embedded(rx))
        }
        Transport::Kafka => {
            let brokers = crate::kafka_brokers();
            let topic = format!("sybench_raw_{}", unique());
            let admin: AdminClient<_> = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()?;
            let results = admin
                .create_topics(
                    &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                )
                .await
                .with_context(|| format!("creating topic {topic} on {brokers}"))?;
            for r in results {
                r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
            }
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "5")
                .create()?;
            let consumer: StreamConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", format!("{topic}-group"))
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "6000")
                // As the host (transport/kafka/client.rs): tansu answers a fetch at its deadline.
                .set("fetch.wait.max.ms", "20")
                .create()?;
            consumer.subscribe(&[&topic])?;
            // Warm up: wait until the group has formed and a message goes through.
            let wire = Wire::Kafka(producer, topic);
            wire.send(&[(-1, "{}".to_owned())]).await?;
            let mut source = Source::Kafka(consumer);
            tokio::time::timeout(Duration::from_secs(60), source.next_batch(1))
                .await
                .context("the raw Kafka consumer received nothing within 60 s")??;
            source.commit()?;
            (wire, source)
        }
    })
}

/// Creates the tables with the host's migrations (then closes the host's store).
async fn migrate(url: &str, dir: &Path) -> anyhow::Result<()> {
    let text = crate::host::config_text(
        url,
        Transport::Embedded,
        "rawbench",
        crate::host::Mode::Default,
        &crate::component("task")?,
        "",
        false,
    );
    let config = Config::parse(&text, Path::new("bench.toml"), dir.to_owned())?;
    let host = Switchyard::open(config).await?;
    host.migrate().await?;
    Ok(())
}

/// The batched (or SmartFlow) pipeline, N events in bulk.
///
/// # Errors
/// Database or broker failures, named.
pub async fn run(
    db: Db,
    transport: Transport,
    events: usize,
    mode: Mode,
    name: &str,
) -> anyhow::Result<Figures> {
    run_lanes(db, transport, events, mode, 1, name).await
}

/// As [`run`], each consumed batch split into `lanes` transactions run side by side.
///
/// # Errors
/// As [`run`].
pub async fn run_lanes(
    db: Db,
    transport: Transport,
    events: usize,
    mode: Mode,
    lanes: usize,
    name: &str,
) -> anyhow::Result<Figures> {
    // Both strategies do the task handler's own statements per event.
    let load = Load::Bulk(events);
    pipeline(db, transport, load, mode, Work::Task, lanes, name).await
}

/// The batched pipeline doing `work` per event, N events in bulk.
///
/// # Errors
/// As [`run`].
pub async fn run_work(
    db: Db,
    transport: Transport,
    events: usize,
    work: Work,
    name: &str,
) -> anyhow::Result<Figures> {
    pipeline(
        db,
        transport,
        Load::Bulk(events),
        Mode::Batched,
        work,
        1,
        name,
    )
    .await
}

/// The batched pipeline at a fixed offered load, with `lanes` consume transactions side by side.
///
/// # Errors
/// As [`run`].
pub async fn latency(
    db: Db,
    transport: Transport,
    rate: u32,
    secs: u64,
    lanes: usize,
    name: &str,
) -> anyhow::Result<Figures> {
    let load = Load::Rate(rate, secs);
    pipeline(db, transport, load, Mode::Batched, Work::Task, lanes, name).await
}

async fn pipeline(
    db: Db,
    transport: Transport,
    load: Load,
    mode: Mode,
    work: Work,
    lanes: usize,
    name: &str,
) -> anyhow::Result<Figures> {
    let scratch = Scratch::new()?;
    let fresh = FreshDb::create(db, &scratch.0).await?;
    migrate(&fresh.url, &scratch.0).await?;
    if work == Work::Sql {
        crate::sql::create_tables(db, &fresh.url).await?;
    }
    let pool = Arc::new(Pool::connect(db, &fresh.url).await?);
    let (wire, mut source) = wire(transport).await?;
    // Rows built exactly as the host's producer API builds them (same wrapper JSON).
    let text = crate::host::config_text(
        &fresh.url,
        Transport::Embedded,
        "rawbench",
        crate::host::Mode::Default,
        &crate::component("task")?,
        "",
        false,
    );
    let host = Switchyard::open(Config::parse(
        &text,
        Path::new("bench.toml"),
        scratch.0.clone(),
    )?)
    .await?;
    let outbox = host.outbox();
    let row = move |k: usize| {
        outbox.row(
            NewEvent::new("task.record.requested", crate::host::task_payload(k))
                .key(format!("k{}", k % 64)),
        )
    };
    let total = match load {
        Load::Bulk(n) => n,
        Load::Rate(rate, secs) => (rate as u64 * secs) as usize,
    };
    reset_hwm();
    let wake = Arc::new(Notify::new());
    let enqueued_all = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    // Producer side: inserts, timestamps per id.
    let (enq_tx, mut enq_rx) = mpsc::unbounded_channel::<(Vec<i64>, Instant)>();
    let producer = {
        let (pool, wake, done) = (pool.clone(), wake.clone(), enqueued_all.clone());
        tokio::spawn(async move {
            match load {
                Load::Bulk(n) => {
                    let mut i = 1;
                    while i <= n {
                        let k = BATCH.min(n + 1 - i);
                        let rows = (i..i + k).map(&row).collect::<Result<Vec<_>, _>>()?;
                        let ids = pool.insert(&rows).await?;
                        let _ = enq_tx.send((ids, Instant::now()));
                        if mode == Mode::Batched {
                            wake.notify_one();
                        }
                        i += k;
                    }
                }
                Load::Rate(rate, _) => {
                    // One writer commits every enqueue waiting for it in one transaction (a
                    // group commit, as the host's `Store::insert` does): while a commit runs,
                    // the next enqueues gather instead of each retrying SQLite's write lock.
                    let (row_tx, mut row_rx) = mpsc::unbounded_channel::<NewRow>();
                    let writer = {
                        let (pool, wake, tx) = (pool.clone(), wake.clone(), enq_tx.clone());
                        tokio::spawn(async move {
                            while let Some(first) = row_rx.recv().await {
                                let mut rows = vec![first];
                                while let Ok(more) = row_rx.try_recv() {
                                    rows.push(more);
                                }
                                let ids = pool.insert(&rows).await?;
                                let _ = tx.send((ids, Instant::now()));
                                wake.notify_one();
                            }
                            anyhow::Ok(())
                        })
                    };
                    let period = Duration::from_secs_f64(1.0 / rate as f64);
                    for k in 1..=total {
                        tokio::time::sleep_until((started + period.mul_f64(k as f64)).into()).await;
                        row_tx.send(row(k)?)?;
                    }
                    drop(row_tx);
                    writer.await??;
                }
            }
            done.store(true, Ordering::SeqCst);
            anyhow::Ok(())
        })
    };

    // Relay.
    let relay = {
        let (pool, wake) = (pool.clone(), wake.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < total {
                match mode {
                    Mode::Batched => {
                        let rows = pool.claim(BATCH, true).await?;
                        if rows.is_empty() {
                            let _ =
                                tokio::time::timeout(Duration::from_millis(50), wake.notified())
                                    .await;
                            continue;
                        }
                        wire.send(&rows).await?;
                        sent += rows.len();
                    }
                    Mode::SmartFlow => {
                        let scan = Instant::now();
                        let rows = pool.claim(100, false).await?;
                        for r in &rows {
                            wire.send(std::slice::from_ref(r)).await?;
                            pool.mark_published(r.0).await?;
                        }
                        sent += rows.len();
                        tokio::time::sleep_until((scan + Duration::from_secs(1)).into()).await;
                    }
                }
            }
            anyhow::Ok(wire)
        })
    };

    // Consumer: records when each id's consume transaction committed.
    let max = if mode == Mode::Batched { BATCH } else { 1 };
    let mut consumed: HashMap<i64, Instant> = HashMap::with_capacity(total);
    let mut last_progress = Instant::now();
    while consumed.len() < total {
        let batch = tokio::time::timeout(Duration::from_secs(60), source.next_batch(max))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "raw pipeline stalled: {} of {total} consumed",
                    consumed.len()
                )
            })??;
        let batch: Vec<_> = batch.into_iter().filter(|(id, _)| *id > 0).collect();
        if batch.is_empty() {
            anyhow::ensure!(
                last_progress.elapsed() < Duration::from_secs(60),
                "raw pipeline stalled"
            );
            continue;
        }
        for chunk in batch.chunks(max) {
            if lanes > 1 {
                // Side by side, each its own transaction (the host's `consumer.lanes`).
                let mut parts = vec![Vec::new(); lanes];
                for row in chunk {
                    parts[row.0 as usize % lanes].push(row.clone());
                }
                let parts = parts.iter().filter(|part| !part.is_empty());
                let runs = parts.map(|part| pool.consume(part, work));
                for done in futures::future::join_all(runs).await {
                    done?;
                }
            } else {
                pool.consume(chunk, work).await?;
            }
            let t = Instant::now();
            consumed.extend(chunk.iter().map(|(id, _)| (*id, t)));
        }
        source.commit()?;
        last_progress = Instant::now();
    }
    producer.await??;
    let _wire = relay.await??;
    let mut enqueued = HashMap::with_capacity(total);
    while let Ok((ids, t)) = enq_rx.try_recv() {
        enqueued.extend(ids.into_iter().map(|id| (id, t)));
    }
    let last = consumed
        .values()
        .max()
        .copied()
        .unwrap_or_else(Instant::now);
    let latencies = consumed
        .iter()
        .filter_map(|(id, t)| enqueued.get(id).map(|e| t.saturating_duration_since(*e)))
        .collect();
    let hwm = hwm_kib();
    drop(host);
    drop(pool);
    fresh.drop_db().await;
    let _ = enqueued_all;
    Ok(Figures {
        name: name.to_owned(),
        events: total,
        elapsed: last - started,
        latencies,
        hwm_kib: hwm,
    })
}
