//! The consumer of one service: decode, route, invoke, and commit a batch's outcomes.
//!
//! One shape for every batch: decode each envelope (bad ones are skipped and logged, never
//! crash the loop), drop those whose row is already final, run each remaining event through
//! its component with reads that see the batch's earlier acked writes, then commit every
//! outcome and every acked effect in ONE store transaction. A batch arrives here as one lane of
//! what the transport delivered; the pipeline (`pipeline.rs`) acknowledges the messages to the
//! transport only after every lane committed.

use super::Shared;
use super::batch_state::BatchState;
use super::commit::{self, BatchEnd, Handled};
use super::outbox::{EnqueueError, row_for};
use crate::catalog::{Catalog, Service};
use crate::config::Config;
use crate::envelope;
use crate::runtime::{self, EventData, Outcome};
use crate::store::{self, RowOutcome, RowState};
use crate::telemetry::{LoopError, MessageSkipped};
use crate::traces::{InvocationAttributes, Traced};
use crate::transport::Delivery;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(super) const ERROR_BACKOFF: Duration = Duration::from_millis(500);

/// Pause before a batch runs again after its transaction failed (a deadlock between hosts
/// resolves at once; a short pause lets the other host finish).
const RERUN_PAUSE: Duration = Duration::from_millis(20);

/// The longest pause between runs of a batch whose transaction keeps failing.
const MAX_RERUN_PAUSE: Duration = Duration::from_secs(5);

/// Handles one lane of a batch to its commit, running it again while its transaction fails;
/// `false` if the host stopped first (the lane is then not committed).
pub(super) async fn run_lane(
    shared: &Arc<Shared>,
    service: &Arc<Service>,
    lane: &[&Delivery],
    dead_letters: &mpsc::UnboundedSender<DeadLetter>,
    traced: &Traced,
    stop: &CancellationToken,
) -> bool {
    let mut pause = RERUN_PAUSE;
    let mut rerun = Rerun::default();
    // Undecodable messages are passed on by the first run only: a rerun decodes the same bytes.
    let mut dead_letters = Some(dead_letters);
    loop {
        let ended = handle_batch(shared, service, lane, dead_letters, &rerun, traced, stop).await;
        dead_letters = None;
        match ended {
            BatchEnd::Committed => return true,
            // Not acknowledged, so the transport delivers the batch again.
            BatchEnd::Stopped => return false,
            BatchEnd::Isolate => rerun.isolate = true,
            BatchEnd::Rerun {
                without: None,
                careful: true,
                ..
            } => rerun.careful = true,
            BatchEnd::Rerun {
                without,
                careful,
                suspect,
            } => {
                rerun.careful |= careful;
                // Its transaction failed after handlers read state or ran statements in it
                // (a deadlock between hosts): nothing of it committed; run it all again.
                rerun.without.extend(without);
                if let Some(id) = suspect
                    && rerun.blame(id)
                    && !blame(shared, service, id, stop).await
                {
                    return false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => return false,
                }
                // A failure that repeats (not a one-off deadlock) backs off.
                pause = (pause * 2).min(MAX_RERUN_PAUSE);
            }
        }
    }
}

/// How a batch runs again after its transaction failed.
#[derive(Default)]
struct Rerun {
    /// Rows whose invocations were cut off midway: their failed attempts are recorded, and the
    /// relay delivers them again after their backoff.
    without: BTreeSet<i64>,
    /// Commit each event on its own ([`BatchEnd::Isolate`]).
    isolate: bool,
    /// A savepoint per invocation (see `batch_state`).
    careful: bool,
    /// How many times each row's read or statement broke this batch's transaction.
    broke: std::collections::HashMap<i64, u32>,
}

/// How many times one row's read or statement may break its batch's transaction with a
/// transient-looking error (a deadlock, a lost connection) before its attempt fails: enough for
/// the failures that rerunning cures, few enough that a statement that always fails that way
/// (e.g. PostgreSQL's `temp_file_limit`, class 53) cannot hold its service's batch forever.
const BREAKS_BEFORE_BLAME: u32 = 5;

impl Rerun {
    /// Counts a break by row `id`; `true` when it is the last one allowed (the row is now left
    /// out of this batch's runs, and its failed attempt is to be recorded).
    fn blame(&mut self, id: i64) -> bool {
        let breaks = self.broke.entry(id).or_default();
        *breaks += 1;
        if *breaks < BREAKS_BEFORE_BLAME {
            return false;
        }
        self.without.insert(id);
        true
    }
}

/// Records the failed attempt of row `id`, which broke its batch's transaction
/// [`BREAKS_BEFORE_BLAME`] times; `false` if the host is stopping meanwhile.
async fn blame(shared: &Shared, service: &Service, id: i64, stop: &CancellationToken) -> bool {
    let config = shared.config.get();
    let backoff = super::backoff(&config, &service.name);
    let reason = format!(
        "its state read or sql statement broke the batch's transaction {BREAKS_BEFORE_BLAME} \
         times in a row (the database's errors are in the host's log): its attempt fails so the \
         rest of the batch can go on"
    );
    commit::fail_row(shared, service, &backoff, id, reason, stop).await
}

/// A message the consumer could not decode, for the pipeline to hand to
/// [`Subscription::dead_letter`](crate::transport::Subscription::dead_letter) before the batch
/// is acknowledged.
pub(super) struct DeadLetter {
    pub delivery: Delivery,
    pub reason: String,
}

/// A decoded message that names a row of this service.
struct Pending<'a> {
    delivery: &'a Delivery,
    env: envelope::Envelope<'a>,
}

/// Handles one batch to its commit (see [`BatchEnd`]).
async fn handle_batch(
    shared: &Shared,
    service: &Arc<Service>,
    batch: &[&Delivery],
    dead_letters: Option<&mpsc::UnboundedSender<DeadLetter>>,
    rerun: &Rerun,
    traced: &Traced,
    stop: &CancellationToken,
) -> BatchEnd {
    // One routing and config snapshot for the whole batch (a config reload swaps them between
    // batches).
    let catalog = shared.catalog.get();
    let config = shared.config.get();
    let mut pending = Vec::with_capacity(batch.len());
    let mut seen = BTreeSet::new();
    for &delivery in batch {
        let env = match envelope::decode(&delivery.value) {
            Ok(env) => env,
            Err(e) => {
                let reason = format!("undecodable envelope: {e}");
                // Kept by the pipeline before the batch is acknowledged, so the raw bytes
                // never disappear.
                if let Some(dead_letters) = dead_letters {
                    let _ = dead_letters.send(DeadLetter {
                        delivery: delivery.clone(),
                        reason: reason.clone(),
                    });
                }
                MessageSkipped {
                    service: &service.name,
                    origin: &delivery.origin,
                    reason: &reason,
                }
                .emit();
                continue;
            }
        };
        if !env.service_name.is_empty() && env.service_name != service.name {
            let reason = format!("envelope belongs to service {:?}", env.service_name);
            MessageSkipped {
                service: &service.name,
                origin: &delivery.origin,
                reason: &reason,
            }
            .emit();
            continue;
        }
        // A row of this table whose type another service owns (a config change moved the
        // type while its message was in flight, or another system's relay published it) is
        // decided in `handle_one`, never skipped: a skipped row would come back forever.
        // A message delivered twice in one batch is handled once.
        if seen.insert(env.outbox_id) {
            pending.push(Pending { delivery, env });
        }
    }
    if pending.is_empty() {
        return BatchEnd::Committed;
    }
    let ids: Vec<i64> = pending.iter().map(|p| p.env.outbox_id).collect();
    let states = loop {
        match shared.store.row_states(&service.table, &ids).await {
            Ok(s) => break s,
            Err(e) => {
                LoopError {
                    service: &service.name,
                    stage: "read row states",
                    error: &e,
                }
                .emit();
                tokio::select! {
                    _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                    _ = stop.cancelled() => return BatchEnd::Stopped,
                }
            }
        }
    };
    let reader = Arc::new(BatchState::new(shared.store.clone(), rerun.careful));
    let mut rows = Vec::with_capacity(pending.len());
    let mut logs = Vec::with_capacity(pending.len());
    // Bytes of acked effects buffered since the last commit (`consumer.max_batch_bytes`).
    let mut buffered = 0usize;
    for p in &pending {
        let id = p.env.outbox_id;
        let Some(state) = states.get(&id) else {
            let reason = format!("outbox row {id} does not exist in {}", service.table);
            MessageSkipped {
                service: &service.name,
                origin: &p.delivery.origin,
                reason: &reason,
            }
            .emit();
            continue;
        };
        if state.status.is_final() || rerun.without.contains(&id) {
            // Already applied (or dead), or cut off in an earlier run of this batch (its
            // failed attempt is recorded): acknowledge without running it again here.
            continue;
        }
        let (outcome, version, micros) = handle_one(
            shared, &catalog, &config, service, p, *state, &reader, traced,
        )
        .await;
        buffered = buffered.saturating_add(buffered_bytes(&outcome));
        logs.push(Handled {
            id,
            event_type: p.env.event_type.clone().into_owned(),
            label: outcome_label(&outcome),
            version,
            micros,
        });
        rows.push((id, outcome));
        if buffered > config.consumer.max_batch_bytes || rerun.isolate {
            // Cut the batch here: what it buffered so far commits now, the rest starts a new
            // one. The transport is acknowledged only after the last part commits.
            let ended = commit::commit(
                shared,
                service,
                &catalog,
                &config,
                std::mem::take(&mut rows),
                std::mem::take(&mut logs),
                reader.take_tx().await,
                stop,
            )
            .await;
            if ended != BatchEnd::Committed {
                return ended;
            }
            buffered = 0;
        }
    }
    let tx = reader.take_tx().await;
    commit::commit(shared, service, &catalog, &config, rows, logs, tx, stop).await
}

/// Bytes an outcome keeps in memory until its batch commits: the acked state writes and new
/// rows (a failure keeps only its reason).
fn buffered_bytes(outcome: &RowOutcome) -> usize {
    match outcome {
        RowOutcome::Consumed { effects, .. } => {
            let writes: usize = effects
                .state_writes
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum();
            let rows: usize = effects
                .new_rows
                .iter()
                .map(|r| r.payload.len() + r.message_key.len() + r.biz_type.len())
                .sum();
            writes + rows
        }
        RowOutcome::Retry { reason, .. } | RowOutcome::Dead { reason } => reason.len(),
    }
}

fn outcome_label(outcome: &RowOutcome) -> &'static str {
    match outcome {
        RowOutcome::Consumed { .. } => "consumed",
        RowOutcome::Retry { .. } => "retry",
        RowOutcome::Dead { .. } => "dead",
    }
}

/// The outcome of a row of this service's table whose event type another service owns: a
/// failed attempt where this host runs the table's relay (which then moves the row to its
/// owner's table), else dead with a reason naming the owner (no relay here could move it, and
/// a retry would only bring it back to this consumer).
fn owned_elsewhere(catalog: &Catalog, service: &Service, event_type: &str) -> Option<RowOutcome> {
    let owner = &catalog.route(event_type).ok()?.service;
    if owner.name == service.name {
        return None;
    }
    Some(if service.mode.relays() {
        RowOutcome::Retry {
            reason: format!(
                "event type {event_type} is owned by service {:?}: the relay moves the row to \
                 {}",
                owner.name, owner.table
            ),
            delay: None,
        }
    } else {
        RowOutcome::Dead {
            reason: format!(
                "event type {event_type} is owned by service {:?}, but this row is in {}, \
                 whose relay is not this host's: move the row to {} (or route the type to \
                 service {:?})",
                owner.name, service.table, owner.table, service.name
            ),
        }
    })
}

/// Runs one event; returns its row outcome, the component version, and the time taken.
#[allow(
    clippy::too_many_arguments,
    reason = "one batch's context, passed down as is"
)]
async fn handle_one(
    shared: &Shared,
    catalog: &Arc<Catalog>,
    config: &Config,
    service: &Service,
    p: &Pending<'_>,
    state: RowState,
    reader: &Arc<BatchState>,
    batch_span: &Traced,
) -> (RowOutcome, Arc<str>, u128) {
    let env = &p.env;
    if env.event_type.trim().is_empty() {
        return (
            RowOutcome::Dead {
                reason: "envelope has no event_type".into(),
            },
            Arc::default(),
            0,
        );
    }
    if let Some(outcome) = owned_elsewhere(catalog, service, &env.event_type) {
        return (outcome, Arc::default(), 0);
    }
    let Some(route) = shared.routes.get(&env.event_type) else {
        let reason = format!(
            "no handler registered for event type {:?} in service {:?}",
            env.event_type, service.name
        );
        return (RowOutcome::Dead { reason }, Arc::default(), 0);
    };
    let payload = env
        .payload
        .map(|p| p.get().as_bytes().to_vec())
        .unwrap_or_default();
    let event = EventData {
        outbox_id: env.outbox_id,
        event_id: env.event_id.clone().into_owned(),
        event_type: env.event_type.clone().into_owned(),
        event_version: env.event_version.clone().into_owned(),
        service: service.name.clone(),
        aggregate_id: env.aggregate_id.clone().into_owned(),
        message_key: p.delivery.key.clone(),
        payload,
        attempt: u32::try_from(state.retry_count)
            .unwrap_or(0)
            .saturating_add(1),
        chain_depth: u32::try_from(state.chain_depth).unwrap_or(0),
    };
    let component = &route.component;
    let mut span = shared.traces.invocation(
        p.delivery.traceparent.as_deref(),
        batch_span,
        InvocationAttributes {
            service: &service.name,
            event_type: &env.event_type,
            outbox_id: env.outbox_id,
            attempt: event.attempt,
        },
    );
    shared.counters.invocation_started(&env.event_type);
    let _in_flight = shared.health.begin(
        &env.event_type,
        Duration::from_millis(route.policy.limits.deadline_ms),
    );
    reader
        .begin_invocation(env.outbox_id, route.policy.limits.deadline_ms)
        .await;
    let out = shared
        .runtime
        .invoke(component, &route.policy, catalog, reader.clone(), event)
        .await;
    shared.counters.invocation_finished(&env.event_type);
    let micros = out.elapsed.as_micros();
    let outcome = match out.outcome {
        Outcome::Ack => {
            match stored_effects(catalog, config, out.effects, state, span.traceparent()) {
                Ok(effects) => {
                    reader.remember(&effects.state_writes);
                    RowOutcome::Consumed {
                        version: component.hash.clone(),
                        effects,
                    }
                }
                Err(e) => RowOutcome::Retry {
                    reason: format!("an emitted event cannot be stored: {e}"),
                    delay: None,
                },
            }
        }
        Outcome::Retry { reason, delay } => RowOutcome::Retry { reason, delay },
        Outcome::Dead { reason } => RowOutcome::Dead { reason },
    };
    // Its `sql` statements stand only if it is acknowledged with effects that can be stored.
    reader
        .end_invocation(matches!(outcome, RowOutcome::Consumed { .. }))
        .await;
    span.set("switchyard.version", component.hash.clone());
    span.set("switchyard.outcome", outcome_label(&outcome));
    if let RowOutcome::Retry { reason, .. } | RowOutcome::Dead { reason } = &outcome {
        span.fail(reason);
    }
    let failure = match &outcome {
        RowOutcome::Retry { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    shared
        .health
        .record(&service.name, &env.event_type, failure);
    (outcome, component.hash.clone(), micros)
}

/// What the store commits for an acked invocation: its state writes, and each emit routed to
/// its owner's table exactly as a producer's event would be ([`row_for`], with the owner's
/// `max_attempts`), one hop further down the chain, continuing the invocation's trace.
fn stored_effects(
    catalog: &Catalog,
    config: &Config,
    effects: runtime::Effects,
    state: RowState,
    traceparent: Option<&str>,
) -> Result<store::Effects, EnqueueError> {
    let new_rows = effects
        .emits
        .into_iter()
        .map(|emit| {
            let mut row = row_for(catalog, config, emit.into())?;
            row.chain_depth = state.chain_depth.saturating_add(1);
            row.traceparent = traceparent.map(str::to_owned);
            Ok(row)
        })
        .collect::<Result<Vec<_>, EnqueueError>>()?;
    Ok(store::Effects {
        state_writes: effects.state_writes,
        new_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::{Path, PathBuf};

    fn catalog() -> Catalog {
        let text = "database_url = 'sqlite://x'\n[transport]\nkind = 'kafka'\nbrokers = 'b:9092'\n\
                    [services.relayed]\nmode = 'relay'\n[services.consumed]\nmode = 'consume'\n\
                    [services.other]\nmode = 'external'\n\
                    [[routes]]\nevent_type = 'other.x'\nservice = 'other'\n";
        let config = Config::parse(text, Path::new("t.toml"), PathBuf::new()).unwrap();
        Catalog::from_config(&config).unwrap()
    }

    #[test]
    fn a_row_of_another_owners_type_is_moved_by_our_relay_or_dead_naming_the_owner() {
        let c = catalog();
        let service = |name: &str| c.service(name).unwrap().clone();
        match owned_elsewhere(&c, &service("relayed"), "other.x") {
            Some(RowOutcome::Retry { reason, .. }) => {
                assert!(reason.contains("the relay moves the row to other_outbox_messages"))
            }
            o => panic!("expected a retry the relay resolves, got {o:?}"),
        }
        match owned_elsewhere(&c, &service("consumed"), "other.x") {
            Some(RowOutcome::Dead { reason }) => {
                assert!(reason.contains("owned by service \"other\""), "{reason}");
                assert!(
                    reason.contains("move the row to other_outbox_messages"),
                    "{reason}"
                );
            }
            o => panic!("expected dead naming the owner, got {o:?}"),
        }
        assert!(owned_elsewhere(&c, &service("other"), "other.x").is_none());
        assert!(owned_elsewhere(&c, &service("relayed"), "nobody.x").is_none());
    }
}
