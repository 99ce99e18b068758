//! Issue 16's retention scenario: a table of `rows` old `consumed` rows (1,000,000 by
//! default), then the relay's claim (`Store::claim_due` of 10 newly enqueued pending rows, in
//! a loop) timed without cleanup (the baseline) and while retention deletes every old row in
//! rounds of `batch` (`Store::delete_consumed`, as the host's retention loop calls it, one
//! round after another with no pause), and the cleanup's throughput in rows/s.

use crate::{Db, Figures, FreshDb, Scratch};
use sqlx::{AssertSqlSafe, Connection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard::store::{Claim, Store, earlier, now};

pub(crate) const TABLE: &str = "bench_outbox_messages";
const NEW_TYPE: &str = "bench.new";
/// Rows enqueued before each timed claim.
pub(crate) const PER_CLAIM: usize = 10;
/// Rows per fill statement.
pub(crate) const FILL_CHUNK: usize = 100_000;

/// One plain connection for the bench's own statements (fill, enqueue).
pub(crate) enum Conn {
    Sqlite(sqlx::SqliteConnection),
    MySql(sqlx::MySqlConnection),
    Pg(sqlx::PgConnection),
}

impl Conn {
    pub(crate) async fn open(db: Db, url: &str) -> anyhow::Result<Conn> {
        Ok(match db {
            Db::Sqlite => Conn::Sqlite(sqlx::SqliteConnection::connect(url).await?),
            Db::Mariadb => Conn::MySql(sqlx::MySqlConnection::connect(url).await?),
            Db::Postgres => Conn::Pg(sqlx::PgConnection::connect(url).await?),
        })
    }

    /// One integer (a `COUNT(*)`).
    pub(crate) async fn count(&mut self, sql: &'static str) -> anyhow::Result<i64> {
        Ok(match self {
            Conn::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Conn::MySql(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Conn::Pg(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        })
    }

    pub(crate) async fn exec(&mut self, sql: String) -> anyhow::Result<()> {
        let sql = AssertSqlSafe(sql);
        match self {
            Conn::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(drop)?,
            Conn::MySql(c) => sqlx::raw_sql(sql).execute(c).await.map(drop)?,
            Conn::Pg(c) => sqlx::raw_sql(sql).execute(c).await.map(drop)?,
        }
        Ok(())
    }
}

/// `INSERT ... SELECT` of `n` consumed rows, consumed in 2000, from the backend's row source.
pub(crate) fn fill_sql(db: Db, n: usize) -> String {
    let insert = format!(
        "INSERT INTO {TABLE} (biz_type, service_name, topic, message_key, payload, status, \
         retry_count, max_retry, next_retry_at, consumed_at, created_at, updated_at) "
    );
    let values = "'bench.old', 'bench', 't', '', '{\"payload\":{}}', 'consumed', 0, 20, \
                  '2000-01-01 00:00:00', '2000-01-01 00:00:00', '2000-01-01 00:00:00', \
                  '2000-01-01 00:00:00'";
    match db {
        Db::Sqlite => format!(
            "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {n}) \
             {insert} SELECT {values} FROM s"
        ),
        Db::Mariadb => format!("{insert} SELECT {values} FROM seq_1_to_{n}"),
        Db::Postgres => format!(
            "{insert} SELECT {} FROM generate_series(1, {n})",
            values.replace("'2000-01-01 00:00:00'", "TIMESTAMP '2000-01-01 00:00:00'")
        ),
    }
}

/// `PER_CLAIM` pending rows of [`NEW_TYPE`], due now.
fn enqueue_sql() -> String {
    let row = "('bench.new', 'bench', 't', '', '{\"payload\":{}}', 'pending', 0, 20, \
               '2000-01-01 00:00:00')";
    format!(
        "INSERT INTO {TABLE} (biz_type, service_name, topic, message_key, payload, status, \
         retry_count, max_retry, next_retry_at) VALUES {}",
        [row; PER_CLAIM].join(", ")
    )
}

/// Claims of freshly enqueued rows until `done` says stop (or `max` claims); their latencies.
pub(crate) async fn claims(
    store: &dyn Store,
    conn: &mut Conn,
    name: &str,
    max: usize,
    done: &AtomicBool,
) -> anyhow::Result<Figures> {
    let types = vec![NEW_TYPE.to_owned()];
    let mut latencies = Vec::new();
    let start = Instant::now();
    while latencies.len() < max && !done.load(Ordering::Relaxed) {
        conn.exec(enqueue_sql()).await?;
        let claim = Claim {
            now: now(),
            limit: 100,
            hold_keys: false,
            types: &types,
        };
        let t = Instant::now();
        let rows = store.claim_due(TABLE, &claim).await?;
        latencies.push(t.elapsed());
        anyhow::ensure!(
            rows.len() == PER_CLAIM,
            "claimed {} rows, not {PER_CLAIM}",
            rows.len()
        );
    }
    Ok(Figures {
        name: name.to_owned(),
        events: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
        hwm_kib: crate::hwm_kib(),
    })
}

/// # Errors
/// Database failures, named.
pub async fn retention(
    db: Db,
    rows: usize,
    batch: u32,
    baseline_claims: usize,
) -> anyhow::Result<()> {
    let d = crate::db_name(db);
    let cmd = format!("switchyard-bench retention --db {d} --rows {rows} --batch {batch}");
    let scratch = Scratch::new()?;
    let fresh = FreshDb::create(db, &scratch.0).await?;
    let store: Arc<dyn Store> = switchyard::store::open(&fresh.url).await?;
    store.migrate(&[TABLE.to_owned()]).await?;
    let mut conn = Conn::open(db, &fresh.url).await?;
    let t = Instant::now();
    let mut left = rows;
    while left > 0 {
        let n = left.min(FILL_CHUNK);
        conn.exec(fill_sql(db, n)).await?;
        left -= n;
    }
    eprintln!(
        "filled {rows} consumed rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if db == Db::Postgres {
        conn.exec(format!("ANALYZE {TABLE}")).await?;
    }

    let never = AtomicBool::new(false);
    let baseline = claims(
        store.as_ref(),
        &mut conn,
        &format!("claim of {PER_CLAIM} new rows, no cleanup {d}"),
        baseline_claims,
        &never,
    )
    .await?;

    let done = Arc::new(AtomicBool::new(false));
    let cleanup = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let cutoff = earlier(now(), Duration::from_secs(86_400));
            let start = Instant::now();
            let mut deleted = 0u64;
            let result = loop {
                match store.delete_consumed(TABLE, cutoff, batch, false).await {
                    Ok(0) => break Ok(()),
                    Ok(n) => deleted += n,
                    Err(e) => break Err(e),
                }
            };
            done.store(true, Ordering::Relaxed);
            result.map(|()| (deleted, start.elapsed()))
        })
    };
    let during = claims(
        store.as_ref(),
        &mut conn,
        &format!("claim of {PER_CLAIM} new rows, during cleanup {d}"),
        usize::MAX,
        &done,
    )
    .await;
    let (deleted, elapsed) = cleanup.await??;
    let during = during?;
    let cleanup = Figures {
        name: format!("cleanup, rows deleted (batch {batch}) {d}"),
        events: deleted as usize,
        elapsed,
        latencies: Vec::new(),
        hwm_kib: crate::hwm_kib(),
    };
    crate::print_header(&cmd);
    baseline.print(None);
    during.print(Some(&baseline));
    cleanup.print(None);
    anyhow::ensure!(deleted as usize == rows, "deleted {deleted} of {rows} rows");
    drop(store);
    fresh.drop_db().await;
    Ok(())
}
