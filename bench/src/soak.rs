//! Issue 17 point 4: memory over a long run. The real host (the `task` component, defaults)
//! at a steady offered load, one event per enqueue transaction at `rate`/s as `latency`
//! offers it, for `minutes`; every second the process's resident memory (`VmRSS`) and its
//! peak (`VmHWM`, reset after the warm-up) are sampled with the events consumed in that second
//! and their p99 latency (enqueue committed -> consume committed).
//!
//! The bench's own bookkeeping is kept flat so that it does not show up as growth: an
//! enqueued row's timestamp is dropped once its consume is seen, latencies go into
//! fixed-size histograms (1% buckets) rather than lists, and the capture is drained every
//! 100 ms.

use crate::host::{BenchHost, Mode, task_payload};
use crate::{Db, Transport, capture, component, reset_hwm};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard::NewEvent;
use switchyard::store::now;
use tokio::sync::mpsc;

/// Buckets of [`Hist`]: 1% wide from 1 µs, the last ends past 400 s.
const BUCKETS: usize = 2000;
const GROWTH: f64 = 1.01;

/// A latency histogram of fixed size: percentiles within 1%.
struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: Duration,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            n: 0,
            max: Duration::ZERO,
        }
    }

    fn add(&mut self, d: Duration) {
        let us = (d.as_micros() as f64).max(1.0);
        let i = ((us.ln() / GROWTH.ln()) as usize).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.n += 1;
        self.max = self.max.max(d);
    }

    fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.n = 0;
        self.max = Duration::ZERO;
    }

    /// The `p` quantile in ms (a bucket's upper bound, never above the maximum); 0 when empty.
    fn ms(&self, p: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let want = ((p * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                let upper = GROWTH.powi(i as i32 + 1) / 1e3;
                return upper.min(self.max.as_secs_f64() * 1e3);
            }
        }
        self.max.as_secs_f64() * 1e3
    }
}

/// One second's sample.
struct Sample {
    second: u64,
    rss_kib: u64,
    hwm_kib: u64,
    consumed: u64,
    enqueued: u64,
    p99_ms: f64,
}

/// One minute's figures.
struct Minute {
    label: String,
    consumed: u64,
    p50: f64,
    p99: f64,
    max: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

/// # Errors
/// As the host scenarios: database, broker or component failures, or events that stop being
/// consumed (no progress for 60 s after the offered load ended).
pub async fn soak(
    db: Db,
    transport: Transport,
    rate: u32,
    minutes: f64,
    csv: Option<&Path>,
) -> anyhow::Result<()> {
    let (d, t) = (crate::db_name(db), crate::tr_name(transport));
    let cmd =
        format!("switchyard-bench soak --db {d} --transport {t} --rate {rate} --minutes {minutes}");
    anyhow::ensure!(
        rate > 0 && minutes > 0.0,
        "--rate and --minutes must be positive"
    );
    let total = (f64::from(rate) * minutes * 60.0).round() as usize;
    let bh = BenchHost::start(db, transport, Mode::Default, &component("task")?, false).await?;
    capture::reset();
    reset_hwm();
    let rss_start = crate::status_kib("VmRSS");
    let failed = Arc::new(AtomicU64::new(0));
    let (enq_tx, mut enq_rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let started = Instant::now();
    let producer = {
        let (store, outbox, failed) = (bh.host.store().clone(), bh.host.outbox(), failed.clone());
        let period = Duration::from_secs_f64(1.0 / f64::from(rate));
        tokio::spawn(async move {
            for k in 1..=total {
                tokio::time::sleep_until((started + period.mul_f64(k as f64)).into()).await;
                let row = match outbox.row(NewEvent::new("task.record.requested", task_payload(k)))
                {
                    Ok(row) => row,
                    Err(e) => {
                        eprintln!("soak: building event {k}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                // Each enqueue is its own task, so a slow commit never lowers the offered rate.
                let (store, outbox, tx, failed) = (
                    store.clone(),
                    outbox.clone(),
                    enq_tx.clone(),
                    failed.clone(),
                );
                tokio::spawn(async move {
                    match store.insert(std::slice::from_ref(&row), now()).await {
                        Ok(ids) => {
                            let _ = tx.send((ids[0], Instant::now()));
                            outbox.wake("task");
                        }
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("soak: enqueue failed (first failure; counted): {e}");
                            }
                        }
                    }
                });
            }
        })
    };

    // Rows enqueued and not yet seen consumed; consumes seen before their enqueue's report.
    let mut pending: HashMap<i64, Instant> = HashMap::new();
    let mut early: HashMap<i64, Instant> = HashMap::new();
    let (mut sec, mut min, mut all) = (Hist::new(), Hist::new(), Hist::new());
    let (mut sec_consumed, mut sec_enqueued, mut min_consumed) = (0u64, 0u64, 0u64);
    let (mut consumed, mut enqueued) = (0usize, 0usize);
    let mut samples: Vec<Sample> = Vec::with_capacity((minutes * 60.0) as usize + 120);
    let mut minute_rows: Vec<Minute> = Vec::new();
    let mut next_sample = Duration::from_secs(1);
    let mut progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let load_end = Duration::from_secs_f64(minutes * 60.0);
    loop {
        tick.tick().await;
        for h in capture::take() {
            if h.outcome == "consumed" || h.outcome == "dead" {
                early.entry(h.outbox_id).or_insert(h.at);
            }
        }
        while let Ok((id, at)) = enq_rx.try_recv() {
            pending.insert(id, at);
            enqueued += 1;
            sec_enqueued += 1;
        }
        early.retain(|id, at| match pending.remove(id) {
            Some(t) => {
                let l = at.saturating_duration_since(t);
                sec.add(l);
                min.add(l);
                all.add(l);
                sec_consumed += 1;
                min_consumed += 1;
                consumed += 1;
                progress = Instant::now();
                false
            }
            // A second delivery of a row already counted is dropped after a minute.
            None => at.elapsed() < Duration::from_secs(60),
        });
        let elapsed = started.elapsed();
        if elapsed >= next_sample {
            let second = next_sample.as_secs();
            let (rss, hwm) = (crate::status_kib("VmRSS"), crate::status_kib("VmHWM"));
            samples.push(Sample {
                second,
                rss_kib: rss,
                hwm_kib: hwm,
                consumed: sec_consumed,
                enqueued: sec_enqueued,
                p99_ms: sec.ms(0.99),
            });
            sec.clear();
            (sec_consumed, sec_enqueued) = (0, 0);
            if second.is_multiple_of(60) && Duration::from_secs(second) <= load_end {
                minute_rows.push(Minute {
                    label: format!("{}", second / 60),
                    consumed: min_consumed,
                    p50: min.ms(0.5),
                    p99: min.ms(0.99),
                    max: min.ms(1.0),
                    rss_kib: rss,
                    hwm_kib: hwm,
                });
                min.clear();
                min_consumed = 0;
            }
            next_sample += Duration::from_secs(1);
        }
        let offered = producer.is_finished();
        let want = total - failed.load(Ordering::Relaxed) as usize;
        if offered && consumed >= want {
            break;
        }
        if offered && progress.elapsed() > Duration::from_secs(60) {
            anyhow::bail!(
                "soak: only {consumed} of {want} events consumed, no progress for 60 s \
                 ({enqueued} enqueued)"
            );
        }
    }
    let wall = started.elapsed();
    if min_consumed > 0 {
        minute_rows.push(Minute {
            label: "rest (after the last full minute)".into(),
            consumed: min_consumed,
            p50: min.ms(0.5),
            p99: min.ms(0.99),
            max: min.ms(1.0),
            rss_kib: crate::status_kib("VmRSS"),
            hwm_kib: crate::status_kib("VmHWM"),
        });
    }
    let peak = crate::status_kib("VmHWM");
    bh.stop().await;

    let mib = |k: u64| k as f64 / 1024.0;
    println!("\n$ {cmd}");
    println!(
        "{consumed} events consumed in {:.1} s ({:.0}/s), {} enqueue failures; latency over \
         the whole run p50 / p99 / max {:.1} / {:.1} / {:.1} ms",
        wall.as_secs_f64(),
        consumed as f64 / wall.as_secs_f64(),
        failed.load(Ordering::Relaxed),
        all.ms(0.5),
        all.ms(0.99),
        all.ms(1.0)
    );
    println!("| minute | events consumed | p50 ms | p99 ms | max ms | RSS MiB | peak MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in &minute_rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            m.label,
            m.consumed,
            m.p50,
            m.p99,
            m.max,
            mib(m.rss_kib),
            mib(m.hwm_kib)
        );
    }
    let at = |s: u64| {
        samples
            .iter()
            .find(|x| x.second == s)
            .map_or("-".to_owned(), |x| format!("{:.1}", mib(x.rss_kib)))
    };
    let last_min = (minutes.floor() as u64).max(1);
    println!(
        "RSS after warm-up {:.1} MiB; at minute 1 / 5 / {last_min}: {} / {} / {} MiB; \
         peak (VmHWM since warm-up) {:.1} MiB",
        mib(rss_start),
        at(60),
        at(300),
        at(last_min * 60),
        mib(peak)
    );
    if let Some(path) = csv {
        let mut text =
            String::from("second,rss_kib,hwm_kib,events_consumed,p99_ms,events_enqueued\n");
        for s in &samples {
            text.push_str(&format!(
                "{},{},{},{},{:.2},{}\n",
                s.second, s.rss_kib, s.hwm_kib, s.consumed, s.p99_ms, s.enqueued
            ));
        }
        crate::scaling::write_csv(path, &text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Hist;
    use std::time::Duration;

    #[test]
    fn histogram_percentiles_are_within_a_percent() {
        let mut h = Hist::new();
        for ms in 1..=100 {
            h.add(Duration::from_millis(ms));
        }
        assert!((h.ms(0.5) - 50.0).abs() <= 0.6, "{}", h.ms(0.5));
        assert!((h.ms(0.99) - 99.0).abs() <= 1.0, "{}", h.ms(0.99));
        assert!((h.ms(1.0) - 100.0).abs() < 1e-9);
        h.clear();
        assert_eq!(h.ms(0.5), 0.0);
    }
}
