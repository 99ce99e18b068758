//! Issue 12: what a hostile route costs its neighbours. One host, two services: `task` (the
//! task component) and `hostile` (the hostile component in an infinite loop, deadline 1 s).
//! The task route's throughput is measured alone, then again while the hostile route's
//! consumer is busy looping (ten loop events queued, so it loops for the whole run).

use crate::host::{BenchHost, Mode, task_payload};
use crate::{Db, Figures, Transport, capture, component, db_name, hwm_kib, reset_hwm};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use switchyard::NewEvent;
use switchyard::store::now;

/// Loop events queued on the hostile route: ten deadlines of 1 s back to back.
const LOOPS: usize = 10;

/// # Errors
/// Database or component failures, or task events that stop being consumed.
pub async fn neighbour(db: Db, events: usize) -> anyhow::Result<()> {
    let hostile = format!(
        "[services.hostile]\n[[routes]]\nevent_type = \"hostile.run\"\nservice = \"hostile\"\n\
         component = \"{}\"\nlimits = {{ deadline_ms = 1000 }}\n",
        component("hostile")?.display()
    );
    let bh = BenchHost::start_with(
        db,
        Transport::Embedded,
        Mode::Default,
        &component("task")?,
        false,
        &hostile,
    )
    .await?;
    let alone = task_round(&bh, events, 0, "task route alone").await?;
    for _ in 0..LOOPS {
        bh.host
            .publish(NewEvent::new("hostile.run", json!({"attack": "loop"})))
            .await?;
    }
    let counters = bh.running.counters();
    let started = Instant::now();
    while counters.invocations_started("hostile.run") == 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the hostile route never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let beside = task_round(&bh, events, events, "task route beside an infinite loop").await?;
    let in_flight =
        counters.invocations_started("hostile.run") - counters.invocations_finished("hostile.run");
    anyhow::ensure!(
        in_flight == 1,
        "the hostile route was not looping at the end of the run ({in_flight} in flight)"
    );
    bh.stop().await;
    crate::print_header(&format!(
        "switchyard-bench neighbour --db {} --events {events}",
        db_name(db)
    ));
    alone.print(None);
    beside.print(Some(&alone));
    Ok(())
}

/// `events` task events (ids offset by `first`) enqueued in transactions of 500 -> all
/// consumed; only these events are counted, whatever the hostile route does meanwhile.
async fn task_round(
    bh: &BenchHost,
    events: usize,
    first: usize,
    name: &str,
) -> anyhow::Result<Figures> {
    capture::reset();
    reset_hwm();
    let outbox = bh.host.outbox();
    let mut ids = HashSet::with_capacity(events);
    let started = Instant::now();
    for chunk in (first..first + events).collect::<Vec<_>>().chunks(500) {
        let rows = chunk
            .iter()
            .map(|k| {
                outbox.row(
                    NewEvent::new("task.record.requested", task_payload(*k))
                        .key(format!("k{}", k % 64)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        ids.extend(bh.host.store().insert(&rows, now()).await?);
        outbox.wake("task");
    }
    let mut last = (0, Instant::now());
    loop {
        let done = capture::done_among(&ids);
        if done >= events {
            break;
        }
        if done != last.0 {
            last = (done, Instant::now());
        }
        anyhow::ensure!(
            last.1.elapsed() < Duration::from_secs(60),
            "{name}: only {done} of {events} consumed, no progress for 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Figures {
        name: name.into(),
        events,
        elapsed: started.elapsed(),
        latencies: Vec::new(),
        hwm_kib: hwm_kib(),
    })
}
