//! The consumer's loop: takes batches from the service's subscription, splits each into lanes
//! by message key, and acknowledges batches to the transport in the order they were taken.
//!
//! Two batches are in flight at once: lane k of batch N+1 starts as soon as lane k of batch N
//! has committed, while N's other lanes may still run, and the next batch is received while
//! one runs. Before, every lane waited for the slowest one and for the acknowledgement before
//! the next batch was taken (BENCHMARKS.md, pass 9: 0 to +10% events/s). Invariants:
//! - one key is always in the same lane while the lane count stays the same, and a lane runs
//!   its parts of successive batches one after another, so each key's events keep their order;
//!   when a config reload changes the lane count, the next batch's lanes wait for every lane
//!   of the batch before;
//! - a batch is acknowledged only after every one of its lanes committed and every batch taken
//!   before it was acknowledged (a Kafka offset acknowledges all before it);
//! - a batch taken is finished even during shutdown; if a lane of it stops uncommitted, it and
//!   every later batch stay unacknowledged, and the transport delivers them again (rows
//!   already final are skipped then).

use super::Shared;
use super::consumer::{DeadLetter, ERROR_BACKOFF, run_lane};
use crate::catalog::Service;
use crate::telemetry::LoopError;
use crate::transport::{Delivery, Subscription};
use futures::future::{BoxFuture, FutureExt, Shared as SharedFuture};
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Batches taken and not yet acknowledged: the one running and the next, whose lanes start as
/// the first one's lanes finish.
const IN_FLIGHT: usize = 2;

/// A batch taken, resolving to it and whether every lane of it committed.
type BatchRun = BoxFuture<'static, (Arc<Vec<Delivery>>, bool)>;

/// Whether a lane's part of a batch committed, shared by the part of the next batch that waits
/// for it.
type LaneEnd = SharedFuture<BoxFuture<'static, bool>>;

/// The latest part handed to each lane, so the next batch's part of the same lane runs after
/// it. A lane that got nothing of a batch keeps its earlier end.
#[derive(Default)]
struct LaneEnds {
    ends: Vec<Option<LaneEnd>>,
}

impl LaneEnds {
    /// What lane `k` of a batch split into `n` lanes waits for: the same lane's last part, or
    /// every lane's when the lane count changed (a key may have moved to another lane).
    fn before(&self, k: usize, n: usize) -> Vec<LaneEnd> {
        if self.ends.len() == n {
            self.ends[k].iter().cloned().collect()
        } else {
            self.ends.iter().flatten().cloned().collect()
        }
    }

    /// Records the new ends of a batch split into `n` lanes (`None` for a lane it left empty).
    fn replace(&mut self, n: usize, ends: Vec<Option<LaneEnd>>) {
        if self.ends.len() != n {
            // Every new part waited for all the old ends. A lane the batch left empty keeps
            // them all: a key of the next batch in that lane may have been in any old lane.
            let old: Vec<LaneEnd> = self.ends.drain(..).flatten().collect();
            let all_old = (!old.is_empty()).then(|| {
                futures::future::join_all(old)
                    .map(|ends| ends.into_iter().all(|c| c))
                    .boxed()
                    .shared()
            });
            self.ends = ends
                .into_iter()
                .map(|end| end.or_else(|| all_old.clone()))
                .collect();
            return;
        }
        for (slot, end) in self.ends.iter_mut().zip(ends) {
            if end.is_some() {
                *slot = end;
            }
        }
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    service: Arc<Service>,
    subscription: Arc<tokio::sync::Mutex<Box<dyn Subscription>>>,
    stop: CancellationToken,
) {
    // Held by the supervisor between restarts: a consumer that panicked left it intact.
    let mut subscription = subscription.lock().await;
    let (dead_letters, mut undecodable) = mpsc::unbounded_channel::<DeadLetter>();
    let mut in_flight: FuturesOrdered<BatchRun> = FuturesOrdered::new();
    let mut lane_ends = LaneEnds::default();
    let mut stopping = false;
    loop {
        if stopping && in_flight.is_empty() {
            return;
        }
        let max = shared.config.get().consumer.batch_size as usize;
        let take = !stopping && in_flight.len() < IN_FLIGHT;
        tokio::select! {
            Some((batch, committed)) = in_flight.next(), if !in_flight.is_empty() => {
                if !committed {
                    return; // not acknowledged, so the transport delivers it (and later ones) again
                }
                // Kept before the batch is acknowledged, so the raw bytes never disappear.
                while let Ok(DeadLetter { delivery, reason }) = undecodable.try_recv() {
                    subscription.dead_letter(&delivery, &reason).await;
                }
                if !acknowledge(&mut **subscription, &service, &batch, &stop).await {
                    return;
                }
            }
            batch = subscription.next_batch(max), if take => {
                let Some(batch) = batch else {
                    stopping = true; // the transport closed: finish what was taken
                    continue;
                };
                in_flight.push_back(start_batch(
                    &shared,
                    &service,
                    Arc::new(batch),
                    &mut lane_ends,
                    &dead_letters,
                    &stop,
                ));
            }
            () = stop.cancelled(), if !stopping => stopping = true,
        }
    }
}

/// Acknowledges a committed batch, trying again while the transport refuses; `false` if the
/// host stopped first (redelivery is harmless then: the rows are final).
async fn acknowledge(
    subscription: &mut dyn Subscription,
    service: &Service,
    batch: &[Delivery],
    stop: &CancellationToken,
) -> bool {
    while let Err(e) = subscription.commit(batch).await {
        LoopError {
            service: &service.name,
            stage: "commit offsets",
            error: &e,
        }
        .emit();
        if stop.is_cancelled() {
            return false;
        }
        tokio::time::sleep(ERROR_BACKOFF).await;
    }
    true
}

/// The future of one batch: each of its lanes runs after the same lane's part of the batch
/// before, and it resolves to the batch and whether every lane committed.
fn start_batch(
    shared: &Arc<Shared>,
    service: &Arc<Service>,
    batch: Arc<Vec<Delivery>>,
    lane_ends: &mut LaneEnds,
    dead_letters: &mpsc::UnboundedSender<DeadLetter>,
    stop: &CancellationToken,
) -> BatchRun {
    let span = tracing::info_span!("batch", service = %service.name, size = batch.len());
    let traced = Arc::new(shared.traces.consume_batch(
        &service.name,
        &service.topic,
        batch.iter().map(|d| d.traceparent.as_deref()),
    ));
    let config = shared.config.get();
    let n = config.consumer.lanes_for(&config.database_url).max(1) as usize;
    let split = lanes(&batch, n);
    let mut ends = Vec::with_capacity(n);
    let mut parts = Vec::new();
    for (k, indices) in split.into_iter().enumerate() {
        if indices.is_empty() {
            ends.push(None);
            continue;
        }
        let before = lane_ends.before(k, n);
        let (done, end) = oneshot::channel();
        // A part dropped unfinished (the consumer stopped) counts as not committed.
        ends.push(Some(end.map(|r| r.unwrap_or(false)).boxed().shared()));
        let (shared, service, batch, traced, dead_letters, stop) = (
            shared.clone(),
            service.clone(),
            batch.clone(),
            traced.clone(),
            dead_letters.clone(),
            stop.clone(),
        );
        parts.push(
            async move {
                for end in before {
                    if !end.await {
                        return false; // an earlier part of this lane did not commit
                    }
                }
                let lane: Vec<&Delivery> = indices.iter().map(|&i| &batch[i]).collect();
                let committed =
                    run_lane(&shared, &service, &lane, &dead_letters, &traced, &stop).await;
                let _ = done.send(committed);
                committed
            }
            .instrument(span.clone()),
        );
    }
    lane_ends.replace(n, ends);
    async move {
        // Each lane has its own waker here, so a wakeup polls only the lane whose statement
        // answered. `join_all` of a few futures polls every one of them at each wakeup, and a
        // lane waiting in a handler's `sql` call is then resumed on its fiber only to find its
        // statement still running. Every lane runs to its end: none is dropped midway.
        let mut running: FuturesUnordered<_> = parts.into_iter().collect();
        let mut committed = true;
        while let Some(lane_committed) = running.next().await {
            committed &= lane_committed;
        }
        (batch, committed)
    }
    .boxed()
}

/// Splits a batch into `n` lanes of indices by message key, in delivery order within each
/// lane: one key is always in the same lane, so its events keep their order. Messages without
/// a key stay together in the first lane. Lanes may be empty.
fn lanes(batch: &[Delivery], n: usize) -> Vec<Vec<usize>> {
    let mut lanes = vec![Vec::new(); n];
    for (i, delivery) in batch.iter().enumerate() {
        let lane = if n == 1 || delivery.key.is_empty() {
            0
        } else {
            let mut hasher = std::hash::DefaultHasher::new();
            delivery.key.hash(&mut hasher);
            (hasher.finish() % n as u64) as usize
        };
        lanes[lane].push(i);
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(key: &str, n: i64) -> Delivery {
        Delivery {
            key: key.into(),
            value: Vec::new(),
            origin: format!("{key}#{n}"),
            position: (0, n),
            traceparent: None,
        }
    }

    #[test]
    fn lanes_keep_a_key_together_in_order_and_spread_keys() {
        let batch: Vec<Delivery> = (0..64)
            .map(|n| delivery(&format!("k{}", n % 16), n))
            .collect();
        let split = lanes(&batch, 4);
        assert_eq!(split.len(), 4);
        assert!(
            split.iter().filter(|l| !l.is_empty()).count() > 1,
            "16 keys over 4 lanes use more than one"
        );
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), batch.len());
        for lane in &split {
            assert!(lane.is_sorted(), "delivery order within a lane");
        }
        for key in (0..16).map(|k| format!("k{k}")) {
            let holding = split
                .iter()
                .filter(|lane| lane.iter().any(|&i| batch[i].key == key))
                .count();
            assert_eq!(holding, 1, "key {key} is in exactly one lane");
        }
        // The same key lands in the same lane in the next batch.
        let next: Vec<Delivery> = (0..16)
            .map(|n| delivery(&format!("k{n}"), 100 + n))
            .collect();
        let next_split = lanes(&next, 4);
        for key in (0..16).map(|k| format!("k{k}")) {
            let lane_of = |split: &[Vec<usize>], batch: &[Delivery]| {
                split
                    .iter()
                    .position(|l| l.iter().any(|&i| batch[i].key == key))
            };
            assert_eq!(lane_of(&split, &batch), lane_of(&next_split, &next));
        }
        // Keyless messages stay together; one lane is the whole batch.
        let keyless: Vec<Delivery> = (0..8).map(|n| delivery("", n)).collect();
        assert_eq!(lanes(&keyless, 4)[0].len(), 8);
        assert_eq!(lanes(&batch, 1), vec![(0..64).collect::<Vec<_>>()]);
    }

    /// A part that resolves once `gate` is sent.
    fn gated() -> (oneshot::Sender<bool>, LaneEnd) {
        let (tx, rx) = oneshot::channel();
        (tx, rx.map(|r| r.unwrap_or(false)).boxed().shared())
    }

    #[tokio::test]
    async fn a_lanes_next_part_waits_for_its_last_part_and_a_new_lane_count_for_all() {
        let mut ends = LaneEnds::default();
        let (gate0, end0) = gated();
        let (gate1, end1) = gated();
        ends.replace(2, vec![Some(end0), Some(end1)]);
        gate0.send(true).unwrap();
        gate1.send(false).unwrap();
        let waits = |ends: &LaneEnds, k, n| {
            let before = ends.before(k, n);
            async move { futures::future::join_all(before).await }
        };
        assert_eq!(waits(&ends, 0, 2).await, vec![true]);
        assert_eq!(waits(&ends, 1, 2).await, vec![false]);
        // A lane the next batch left empty keeps its earlier end; lane 0 has the new one.
        let (gate2, end2) = gated();
        ends.replace(2, vec![Some(end2), None]);
        assert_eq!(waits(&ends, 1, 2).await, vec![false]);
        // A part dropped unfinished reads as not committed.
        drop(gate2);
        assert_eq!(waits(&ends, 0, 2).await, vec![false]);
        // Another lane count waits for every lane's end.
        assert_eq!(waits(&ends, 0, 3).await.len(), 2);
        // The ends of that batch replace the old ones; a lane it left empty waits for all the
        // old ends (one of them did not commit).
        let (gate3, end3) = gated();
        ends.replace(3, vec![None, Some(end3), None]);
        gate3.send(true).unwrap();
        assert_eq!(waits(&ends, 0, 3).await, vec![false]);
        assert_eq!(waits(&ends, 1, 3).await, vec![true]);
    }
}
