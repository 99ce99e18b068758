//! Issue 17 point 4: throughput as hosts are added. For each host count, that many
//! `Switchyard` hosts in this process (each `open` + `start`, as the bench's other host
//! scenarios start one) on one fresh database and one Kafka prefix, so they share the
//! service's table, topic and consumer group, as replicas of one deployment do. N `task`
//! events are inserted through the first host's store in transactions of 500 and every
//! host's relay is woken (their claims split the rows with `FOR UPDATE SKIP LOCKED`); the
//! run is timed from the first insert to the last consume commit, whichever host committed it
//! ([`crate::capture`] listens to the one process-wide `event handled` telemetry, so it sees
//! every host's consumer).
//!
//! The topic gets `partitions` partitions (`[transport] partitions`, the host's default is
//! 3): a partition is consumed by one member of the group, so hosts beyond the partition
//! count sit idle, and a count that does not divide evenly gives some hosts more of the load
//! (librdkafka's default `range` assignment: 3 partitions over 2 hosts is 2 + 1).

use crate::host::{Mode, config_text, task_payload};
use crate::{Db, Figures, FreshDb, Scratch, Transport, capture, component, hwm_kib, reset_hwm};
use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use switchyard::config::Config;
use switchyard::store::now;
use switchyard::{NewEvent, Outbox, Running, Switchyard};

/// Insert transactions of this many rows, as `e2e` enqueues.
const INSERT_BATCH: usize = 500;
/// Warm-up events, one per message key the measured events use (every partition gets some).
const KEYS: usize = 64;
/// How long a group is given to settle where the broker cannot describe it: twice the bench
/// config's `session_timeout_ms` (6 s; heartbeats every 2 s).
const SETTLE: Duration = Duration::from_secs(12);

/// Writes a CSV file (creating its directory) and says where.
///
/// # Errors
/// The file cannot be written.
pub fn write_csv(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `n` started hosts sharing one database and one topic prefix.
struct Cluster {
    hosts: Vec<(Switchyard, Running, Outbox)>,
    db: FreshDb,
    scratch: Scratch,
}

impl Cluster {
    async fn start(db: Db, n: usize, partitions: u32, first_id: usize) -> anyhow::Result<Cluster> {
        let scratch = Scratch::new()?;
        let fresh = FreshDb::create(db, &scratch.0).await?;
        let prefix = format!("sybench{}", crate::unique().replace('_', ""));
        let text = config_text(
            &fresh.url,
            Transport::Kafka,
            &prefix,
            Mode::Default,
            &component("task")?,
            "",
            false,
        );
        let marker = "kind = \"kafka\"\n";
        anyhow::ensure!(
            text.contains(marker),
            "the bench config has no Kafka section"
        );
        let text = text.replacen(marker, &format!("{marker}partitions = {partitions}\n"), 1);
        let cfg_path = scratch.0.join("bench.toml");
        std::fs::write(&cfg_path, &text)?;
        let mut hosts = Vec::with_capacity(n);
        for i in 0..n {
            let config = Config::load(&cfg_path).context("parsing the bench config")?;
            let host = Switchyard::open(config).await?;
            let running = host
                .start(host.configured_transport().await?)
                .await
                .with_context(|| format!("starting host {}", i + 1))?;
            let outbox = host.outbox();
            hosts.push((host, running, outbox));
        }
        let cluster = Cluster {
            hosts,
            db: fresh,
            scratch,
        };
        let group = format!("{prefix}-task-outbox-consumer");
        wait_balanced(&group, n, partitions).await;
        if let Err(e) = cluster.warm_up(first_id).await {
            cluster.stop().await;
            return Err(e);
        }
        Ok(cluster)
    }

    /// One event per key through the first host, so every partition's consumer has formed
    /// and created its first instance before the clock starts.
    async fn warm_up(&self, first_id: usize) -> anyhow::Result<()> {
        capture::reset();
        let (host, _, _) = &self.hosts[0];
        let mut ids = HashSet::new();
        for k in 0..KEYS {
            let event = NewEvent::new("task.record.requested", task_payload(first_id + k))
                .key(format!("k{k}"));
            ids.insert(host.publish(event).await?);
        }
        let mut done = HashMap::new();
        wait_consumed(&ids, &mut done, Duration::from_secs(120)).await?;
        capture::reset();
        Ok(())
    }

    async fn stop(self) {
        let stops = self.hosts.into_iter().map(|(host, running, _)| async move {
            if !running.shutdown(Duration::from_secs(10)).await {
                eprintln!("warning: a host did not stop within 10 s");
            }
            drop(host);
        });
        futures::future::join_all(stops).await;
        self.db.drop_db().await;
        drop(self.scratch);
    }
}

/// Waits (up to 90 s) until the consumer group has `n` members in a stable state, each owning
/// partitions (as many as can), as the broker describes it; prints the assignment. A broker
/// that describes no group at all (tansu) gets a fixed pause instead; past 90 s it says so on
/// stderr and returns.
async fn wait_balanced(group: &str, n: usize, partitions: u32) {
    let started = Instant::now();
    let group = group.to_owned();
    loop {
        let g = group.clone();
        let described = tokio::task::spawn_blocking(move || describe(&g)).await;
        let last = match described {
            Ok(Ok((state, members))) => {
                let owning = members.iter().filter(|m| !m.is_empty()).count();
                let owned: usize = members.iter().map(Vec::len).sum();
                let seen = format!("state {state}, members' partitions {members:?}");
                if state == "Stable"
                    && members.len() == n
                    && owning == n.min(partitions as usize)
                    && owned == partitions as usize
                {
                    eprintln!(
                        "group {group}: {n} host(s) balanced after {:.1} s: {seen}",
                        started.elapsed().as_secs_f64()
                    );
                    return;
                }
                seen
            }
            Ok(Err(e)) if e.to_string().contains("it lists []") => {
                // A broker that answers ListGroups/DescribeGroups with nothing (tansu does):
                // give the group the time of two session timeouts to settle instead.
                eprintln!(
                    "group {group}: the broker describes no group; waiting {} s for the \
                     group to settle (RUST_LOG=switchyard::transport::kafka=info shows each \
                     host's assignment)",
                    SETTLE.as_secs()
                );
                tokio::time::sleep(SETTLE).await;
                return;
            }
            Ok(Err(e)) => format!("describing the group failed: {e:#}"),
            Err(e) => format!("describing the group failed: {e}"),
        };
        if started.elapsed() > Duration::from_secs(90) {
            eprintln!(
                "warning: group {group} not seen balanced over {n} host(s) within 90 s \
                 ({last}); measuring anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The group's state and each member's partitions (decoded from its consumer-protocol
/// assignment).
fn describe(group: &str) -> anyhow::Result<(String, Vec<Vec<i32>>)> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", crate::kafka_brokers())
        .create()?;
    let list = client.fetch_group_list(Some(group), Duration::from_secs(5))?;
    let info = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .with_context(|| {
            let names: Vec<&str> = list.groups().iter().map(|g| g.name()).collect();
            format!("the broker does not list the group (it lists {names:?})")
        })?;
    let members = info
        .members()
        .iter()
        .map(|m| m.assignment().map(assigned).unwrap_or_default())
        .collect();
    Ok((info.state().to_owned(), members))
}

/// The partitions of a consumer-protocol `Assignment` (version i16, then per topic its name
/// and partitions, then user data). Malformed input gives what was read so far.
fn assigned(b: &[u8]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut at = 2;
    let i32_at = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let Some(topics) = i32_at(at) else {
        return out;
    };
    at += 4;
    for _ in 0..topics.max(0) {
        let Some(len) = b.get(at..at + 2) else {
            return out;
        };
        at += 2 + i16::from_be_bytes([len[0], len[1]]).max(0) as usize;
        let Some(count) = i32_at(at) else {
            return out;
        };
        at += 4;
        for _ in 0..count.max(0) {
            let Some(p) = i32_at(at) else {
                return out;
            };
            out.push(p);
            at += 4;
        }
    }
    out
}

/// Drains the capture until every row of `ids` reached a final outcome, recording in `done`
/// the first commit instant of each (a row a rebalance delivered twice counts once); fails
/// when nothing progresses for `stall`.
async fn wait_consumed(
    ids: &HashSet<i64>,
    done: &mut HashMap<i64, Instant>,
    stall: Duration,
) -> anyhow::Result<()> {
    let mut progress = Instant::now();
    while done.len() < ids.len() {
        let before = done.len();
        for h in capture::take() {
            if (h.outcome == "consumed" || h.outcome == "dead") && ids.contains(&h.outbox_id) {
                done.entry(h.outbox_id).or_insert(h.at);
            }
        }
        if done.len() != before {
            progress = Instant::now();
        }
        anyhow::ensure!(
            progress.elapsed() < stall,
            "only {} of {} events consumed, no progress for {stall:?}",
            done.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// One host count: N events through the cluster.
async fn run_hosts(db: Db, n: usize, events: usize, partitions: u32) -> anyhow::Result<Figures> {
    let cluster = Cluster::start(db, n, partitions, events + 1).await?;
    reset_hwm();
    let (first, _, first_outbox) = &cluster.hosts[0];
    let mut enqueued: HashMap<i64, Instant> = HashMap::with_capacity(events);
    let started = Instant::now();
    let mut i = 1;
    while i <= events {
        let k = INSERT_BATCH.min(events + 1 - i);
        let rows = (i..i + k)
            .map(|j| {
                first_outbox.row(
                    NewEvent::new("task.record.requested", task_payload(j))
                        .key(format!("k{}", j % KEYS)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids = first.store().insert(&rows, now()).await?;
        let t = Instant::now();
        enqueued.extend(ids.into_iter().map(|id| (id, t)));
        for (_, _, outbox) in &cluster.hosts {
            outbox.wake("task");
        }
        i += k;
    }
    let ids: HashSet<i64> = enqueued.keys().copied().collect();
    let mut done = HashMap::with_capacity(events);
    let waited = wait_consumed(&ids, &mut done, Duration::from_secs(60)).await;
    let hwm = hwm_kib();
    cluster.stop().await;
    waited?;
    let last = done.values().max().copied().unwrap_or_else(Instant::now);
    let latencies = done
        .iter()
        .map(|(id, t)| t.saturating_duration_since(enqueued[id]))
        .collect();
    Ok(Figures {
        name: format!(
            "{n} host(s), {} + kafka ({partitions} partitions)",
            crate::db_name(db)
        ),
        events,
        elapsed: last - started,
        latencies,
        hwm_kib: hwm,
    })
}

/// # Errors
/// Database, broker or component failures, or events that stop being consumed.
pub async fn scale(
    db: Db,
    hosts: &[usize],
    events: usize,
    partitions: u32,
    csv: Option<&Path>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        db != Db::Sqlite,
        "scale needs a database several hosts share: mariadb or postgres"
    );
    anyhow::ensure!(
        !hosts.is_empty() && hosts.iter().all(|&n| n > 0),
        "--hosts lists host counts, each 1 or more"
    );
    let list = hosts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let cmd = format!(
        "switchyard-bench scale --db {} --hosts {list} --events {events} --partitions {partitions}",
        crate::db_name(db)
    );
    let mut out = Vec::new();
    for &n in hosts {
        eprintln!("scale: {n} host(s), {events} events");
        out.push((n, run_hosts(db, n, events, partitions).await?));
    }
    crate::print_header(&cmd);
    for (_, f) in &out {
        f.print(Some(&out[0].1));
    }
    if let Some(path) = csv {
        let mut text = String::from("hosts,events_per_s,p50_ms,p99_ms,elapsed_s,partitions\n");
        for (n, f) in &out {
            text.push_str(&format!(
                "{n},{:.1},{:.1},{:.1},{:.3},{partitions}\n",
                f.rate(),
                crate::percentile(&f.latencies, 0.5).as_secs_f64() * 1e3,
                crate::percentile(&f.latencies, 0.99).as_secs_f64() * 1e3,
                f.elapsed.as_secs_f64()
            ));
        }
        write_csv(path, &text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::assigned;

    #[test]
    fn decodes_a_consumer_protocol_assignment() {
        // version 0, one topic "ab" with partitions 0 and 2, empty user data.
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 2, b'a', b'b', 0, 0, 0, 2];
        b.extend([0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(assigned(&b), vec![0, 2]);
        assert_eq!(assigned(&[0, 0]), Vec::<i32>::new());
    }
}
