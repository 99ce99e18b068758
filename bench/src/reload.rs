//! Hot-reload latency: component file written -> first event served by the new version.
//! The small task component (issue 6: cold compile vs the compiled-component cache warm) and
//! an 18 MB componentize-py handler (issue 15: its new version serves on baseline (Winch) code
//! while the optimized (Cranelift) code compiles, then the optimized code takes over; the
//! handler's throughput before the reloads and after the last upgrade shows the steady state).

use crate::host::{BenchHost, Mode, task_payload};
use crate::{Db, Figures, Scratch, Transport, capture, component, hwm_kib, reset_hwm};
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchyard::NewEvent;
use switchyard::runtime::Tier;

/// The Python example handler, built by `scripts/build-handlers.sh`.
const BIG: &str = "python_handler";
/// Its route in the bench config (the handler emits `<service>.followup`).
const BIG_TYPE: &str = "py.run";

/// `bytes` with a custom section named `switchyard-bench` holding `tag` appended: a valid
/// component with the same behaviour and a different content hash.
fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let name = b"switchyard-bench";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// Writes `bytes` to `path` by atomic rename, as build tools do.
fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("wasm.part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Whether events flow while the new version compiles.
#[derive(Clone, Copy, PartialEq)]
enum Traffic {
    /// One event in flight all along: the old version keeps serving (and takes a core).
    Flowing,
    /// The first event is published once the new version is swapped in: a developer's edit
    /// loop, where nothing else runs meanwhile.
    AfterSwap,
}

/// One reload: when the file was written, the new version swapped in, its first event
/// consumed, and (for the big handler) its optimized code serving.
struct Reloaded {
    swapped: Duration,
    first_event: Duration,
    optimized: Option<Duration>,
}

/// Writes `bytes`, then keeps one event of `event_type` in flight (publishes the next as soon as
/// the last is handled, so no backlog builds up behind a long compile) until one is consumed by
/// that version; with `wait_optimized`, goes on until the route serves its optimized code.
async fn measure_reload(
    bh: &BenchHost,
    path: &Path,
    bytes: &[u8],
    event_type: &str,
    wait_optimized: bool,
    traffic: Traffic,
) -> anyhow::Result<Reloaded> {
    let hash = switchyard::runtime::content_hash(bytes);
    let serving = |tier: Option<Tier>| {
        bh.running.routes().iter().any(|(t, c)| {
            t == event_type && *c.hash == *hash && tier.is_none_or(|tier| c.tier == tier)
        })
    };
    capture::reset();
    replace(path, bytes)?;
    let t0 = Instant::now();
    let mut swapped = None;
    let mut k = 1_000_000;
    let mut in_flight = HashSet::new();
    let first_event = loop {
        if swapped.is_none() && serving(None) {
            swapped = Some(t0.elapsed());
        }
        if let Some(at) = capture::first_with_version(&hash) {
            break at - t0;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "version {} not serving after 60 s",
            &hash[..12]
        );
        let hold = traffic == Traffic::AfterSwap && swapped.is_none();
        if !hold && capture::done_among(&in_flight) == in_flight.len() {
            k += 1;
            in_flight.insert(bh.host.publish(event(event_type, k)).await?);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let swapped = swapped.unwrap_or(first_event);
    let mut optimized = None;
    while wait_optimized && optimized.is_none() {
        if serving(Some(Tier::Optimized)) {
            optimized = Some(t0.elapsed());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(300),
            "version {} has no optimized code after 300 s",
            &hash[..12]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Reloaded {
        swapped,
        first_event,
        optimized,
    })
}

fn event(event_type: &str, k: usize) -> NewEvent {
    if event_type == BIG_TYPE {
        NewEvent::new(
            event_type,
            json!({"key": format!("k{}", k % 16), "action": "ack"}),
        )
    } else {
        NewEvent::new(event_type, task_payload(k))
    }
}

fn figures(name: &str, v: &[Duration], hwm_kib: u64) -> Figures {
    Figures {
        name: name.into(),
        events: v.len(),
        elapsed: v.iter().sum(),
        latencies: v.to_vec(),
        hwm_kib,
    }
}

/// Hot-reload latency of the task component and of the big Python handler (`big_reps`
/// reloads; 0 skips it).
///
/// # Errors
/// Host or file failures; a missing Python handler names the script that builds it.
pub async fn reload(reps: usize, big_reps: usize) -> anyhow::Result<()> {
    small(reps).await?;
    if big_reps > 0 {
        big(big_reps).await?;
    }
    Ok(())
}

/// Issue 6: file written -> first event served by the new version (watch, 50 ms debounce,
/// compile, validate, swap, then the next event's consume commit), cold compile vs the
/// compiled-component cache warm (switching back to a version compiled earlier).
async fn small(reps: usize) -> anyhow::Result<()> {
    let comp = Scratch::new()?;
    let path = comp.0.join("task.wasm");
    let original = std::fs::read(component("task")?)?;
    let v0 = variant(&original, "v0");
    std::fs::write(&path, &v0)?;
    let bh = BenchHost::start(Db::Sqlite, Transport::Embedded, Mode::Default, &path, true).await?;
    reset_hwm();
    let (mut cold, mut cached) = (Vec::new(), Vec::new());
    for r in 0..reps {
        // A never-seen version: compiled from scratch (baseline, then optimized in the
        // background: waited for, so the next reload does not share the cores with it).
        let fresh = variant(&original, &format!("cold-{r}-{}", crate::unique()));
        cold.push(
            measure_reload(
                &bh,
                &path,
                &fresh,
                "task.record.requested",
                true,
                Traffic::Flowing,
            )
            .await?,
        );
        // v0 again: compiled optimized at start, so wasmtime's on-disk cache has it and the
        // host loads it from there at once.
        cached.push(
            measure_reload(
                &bh,
                &path,
                &v0,
                "task.record.requested",
                false,
                Traffic::Flowing,
            )
            .await?,
        );
    }
    let hwm = hwm_kib();
    bh.stop().await;
    let swapped = |v: &[Reloaded]| v.iter().map(|r| r.swapped).collect::<Vec<_>>();
    let first = |v: &[Reloaded]| v.iter().map(|r| r.first_event).collect::<Vec<_>>();
    crate::print_header(&format!(
        "switchyard-bench reload --reps {reps}   (events column = reloads; events/s = reloads/s)"
    ));
    let cold_first = figures(
        "reload cold compile: written -> first event",
        &first(&cold),
        hwm,
    );
    let cached_first = figures(
        "reload cache warm: written -> first event",
        &first(&cached),
        hwm,
    );
    figures(
        "reload cold compile: written -> swapped",
        &swapped(&cold),
        hwm,
    )
    .print(None);
    cold_first.print(None);
    let optimized: Vec<Duration> = cold.iter().filter_map(|r| r.optimized).collect();
    figures("reload cold compile: written -> optimized", &optimized, hwm).print(None);
    figures(
        "reload cache warm: written -> swapped",
        &swapped(&cached),
        hwm,
    )
    .print(None);
    cached_first.print(Some(&cold_first));
    Ok(())
}

/// The config lines of the big handler's service and routes.
fn big_routes(path: &Path) -> String {
    format!(
        "[services.py]\n\
         [[routes]]\nevent_type = \"{BIG_TYPE}\"\nservice = \"py\"\ncomponent = \"{p}\"\n\
         emits = [\"py.followup\"]\n\
         [[routes]]\nevent_type = \"py.followup\"\nservice = \"py\"\ncomponent = \"{p}\"\n",
        p = path.display()
    )
}

fn big_handler() -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../build/components")
        .join(format!("{BIG}.wasm"));
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run scripts/build-handlers.sh",
        path.display()
    );
    Ok(path.canonicalize()?)
}

/// Publishes `n` events to the big handler and waits for all of them (and their follow-ups):
/// its throughput on whatever code serves it now.
async fn big_throughput(bh: &BenchHost, n: usize, name: &str) -> anyhow::Result<Figures> {
    capture::reset();
    let t0 = Instant::now();
    let mut ids = HashSet::new();
    for k in 0..n {
        ids.insert(bh.host.publish(event(BIG_TYPE, k)).await?);
    }
    while capture::done_among(&ids) < n {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(300),
            "{name}: {} of {n} events done after 300 s",
            capture::done_among(&ids)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Figures {
        name: name.into(),
        events: n,
        elapsed: t0.elapsed(),
        latencies: Vec::new(),
        hwm_kib: hwm_kib(),
    })
}

/// Issue 15: an 18 MB componentize-py handler reloaded `reps` times with never-seen versions.
async fn big(reps: usize) -> anyhow::Result<()> {
    let comp = Scratch::new()?;
    let path = comp.0.join("py.wasm");
    let original = std::fs::read(big_handler()?)?;
    std::fs::write(&path, variant(&original, "v0"))?;
    let task = component("task")?;
    let bh = BenchHost::start_with(
        Db::Sqlite,
        Transport::Embedded,
        Mode::Default,
        &task,
        true,
        &big_routes(&path),
    )
    .await?;
    reset_hwm();
    const EVENTS: usize = 200;
    let before = big_throughput(&bh, EVENTS, "18 MB python: optimized code at start").await?;
    let (mut runs, mut quiet) = (Vec::new(), Vec::new());
    for r in 0..reps {
        let fresh = variant(&original, &format!("cold-{r}-{}", crate::unique()));
        runs.push(measure_reload(&bh, &path, &fresh, BIG_TYPE, true, Traffic::Flowing).await?);
        let fresh = variant(&original, &format!("quiet-{r}-{}", crate::unique()));
        let quiet_run = measure_reload(&bh, &path, &fresh, BIG_TYPE, true, Traffic::AfterSwap);
        quiet.push(quiet_run.await?.first_event);
    }
    let after = big_throughput(&bh, EVENTS, "18 MB python: optimized code after reloads").await?;
    let hwm = hwm_kib();
    bh.stop().await;
    crate::print_header(&format!(
        "switchyard-bench reload --big-reps {reps}   (18 MB componentize-py handler; events \
         column = reloads, or events for the throughput rows)"
    ));
    let pick = |f: fn(&Reloaded) -> Duration| runs.iter().map(f).collect::<Vec<_>>();
    let optimized = figures(
        "18 MB python: written -> optimized serving",
        &pick(|r| r.optimized.unwrap_or_default()),
        hwm,
    );
    figures(
        "18 MB python: written -> swapped (baseline)",
        &pick(|r| r.swapped),
        hwm,
    )
    .print(None);
    figures(
        "18 MB python: written -> first event",
        &pick(|r| r.first_event),
        hwm,
    )
    .print(Some(&optimized));
    figures(
        "18 MB python, no events meanwhile: -> first ev.",
        &quiet,
        hwm,
    )
    .print(Some(&optimized));
    optimized.print(None);
    before.print(None);
    after.print(Some(&before));
    Ok(())
}
