//! Issue 17 point 4: the relay's claim as the table grows. One database, its outbox table
//! grown to each size in turn (10^4, 10^5, 10^6 `consumed` rows by default: a table that keeps
//! its history, no retention), and at each size `claims` timed claims of freshly enqueued
//! pending rows (`Store::claim_due`, the relay's claim: `FOR UPDATE SKIP LOCKED` on the
//! servers), exactly as the retention scenario times them (same fill, same enqueue, same
//! claim; [`crate::retention`]).

use crate::retention::{Conn, FILL_CHUNK, PER_CLAIM, TABLE, claims, fill_sql};
use crate::{Db, Figures, FreshDb, Scratch};
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use switchyard::store::Store;

/// Claims run and thrown away at each size before the timed ones (connection and cache warm).
const WARMUP: usize = 20;

/// # Errors
/// Database failures, named; a `rows` list that is not increasing.
pub async fn claim(
    db: Db,
    sizes: &[usize],
    count: usize,
    csv: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let d = crate::db_name(db);
    let list = sizes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let cmd = format!("switchyard-bench claim --db {d} --rows {list} --claims {count}");
    anyhow::ensure!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "--rows must be increasing (the table grows from one size to the next): {list}"
    );
    let scratch = Scratch::new()?;
    let fresh = FreshDb::create(db, &scratch.0).await?;
    let store: std::sync::Arc<dyn Store> = switchyard::store::open(&fresh.url).await?;
    store.migrate(&[TABLE.to_owned()]).await?;
    let mut conn = Conn::open(db, &fresh.url).await?;
    let never = AtomicBool::new(false);
    let mut have = 0;
    let mut out: Vec<(usize, Figures, f64)> = Vec::new();
    for &size in sizes {
        let t = Instant::now();
        while have < size {
            let n = (size - have).min(FILL_CHUNK);
            conn.exec(fill_sql(db, n)).await?;
            have += n;
        }
        let fill_s = t.elapsed().as_secs_f64();
        if db == Db::Postgres {
            conn.exec(format!("ANALYZE {TABLE}")).await?;
        }
        eprintln!("table at {size} consumed rows (filled in {fill_s:.1} s)");
        claims(store.as_ref(), &mut conn, "warm-up", WARMUP, &never).await?;
        let figures = claims(
            store.as_ref(),
            &mut conn,
            &format!("claim of {PER_CLAIM} new rows, {size} rows {d}"),
            count,
            &never,
        )
        .await?;
        // The claimed rows as the consumer would leave them, so the next size is again a
        // table of consumed rows (plus these few).
        conn.exec(format!(
            "UPDATE {TABLE} SET status = 'consumed', consumed_at = published_at \
             WHERE status = 'published'"
        ))
        .await?;
        out.push((size, figures, fill_s));
    }
    crate::print_header(&cmd);
    for (_, f, _) in &out {
        f.print(Some(&out[0].1));
    }
    println!("\n| rows in the table | fill s | claim p50 ms | p99 ms | max ms |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for (size, f, fill_s) in &out {
        println!(
            "| {size} | {fill_s:.1} | {:.2} | {:.2} | {:.2} |",
            ms(f, 0.5),
            ms(f, 0.99),
            ms(f, 1.0)
        );
    }
    if let Some(path) = csv {
        let mut text = String::from("rows,p50_ms,p99_ms,max_ms,claims\n");
        for (size, f, _) in &out {
            text.push_str(&format!(
                "{size},{:.3},{:.3},{:.3},{}\n",
                ms(f, 0.5),
                ms(f, 0.99),
                ms(f, 1.0),
                f.events
            ));
        }
        crate::scaling::write_csv(path, &text)?;
    }
    drop(store);
    fresh.drop_db().await;
    Ok(())
}

/// Percentile `p` of the figures' latencies, milliseconds.
fn ms(f: &Figures, p: f64) -> f64 {
    crate::percentile(&f.latencies, p).as_secs_f64() * 1e3
}
