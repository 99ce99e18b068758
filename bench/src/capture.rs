//! Observes the host from outside: a `tracing` layer that records the instant each event's
//! consume transaction committed (the host's `event handled` telemetry, emitted right after
//! the batch commits), with its outbox id, outcome and handler version.
//!
//! It never changes what the host does; it only listens to the typed event the consumer
//! already emits, so the figures measure the unmodified engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing_log::AsLog;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

/// One event whose consume transaction committed.
#[derive(Debug, Clone)]
pub struct Handled {
    pub outbox_id: i64,
    pub at: Instant,
    pub outcome: String,
    pub version: String,
}

static HANDLED: LazyLock<Mutex<Vec<Handled>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Final outcomes among [`HANDLED`], counted as they are captured: [`done`] is polled every
/// few milliseconds while the host runs, and counting the whole list each time was 3.7% of
/// the samples of a 20,000-event PostgreSQL run (perf), a cost the raw loop does not pay.
static FINAL: AtomicUsize = AtomicUsize::new(0);

/// Forgets everything captured so far (between scenarios).
pub fn reset() {
    let mut handled = lock();
    handled.clear();
    FINAL.store(0, Ordering::SeqCst);
}

/// Everything captured since the last [`reset`] or [`take`].
pub fn take() -> Vec<Handled> {
    let mut handled = lock();
    FINAL.store(0, Ordering::SeqCst);
    std::mem::take(&mut *handled)
}

/// How many final outcomes (consumed or dead) were captured since the last [`reset`] or
/// [`take`].
pub fn done() -> usize {
    FINAL.load(Ordering::SeqCst)
}

fn is_final(outcome: &str) -> bool {
    outcome == "consumed" || outcome == "dead"
}

/// How many of the rows `ids` reached a final outcome since the last [`reset`].
pub fn done_among(ids: &std::collections::HashSet<i64>) -> usize {
    lock()
        .iter()
        .filter(|h| is_final(&h.outcome) && ids.contains(&h.outbox_id))
        .count()
}

/// The captured events whose handler version is `version`.
pub fn first_with_version(version: &str) -> Option<Instant> {
    lock()
        .iter()
        .filter(|h| h.version == version && h.outcome == "consumed")
        .map(|h| h.at)
        .min()
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Handled>> {
    HANDLED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a callsite is the consumer's `event handled` / `event not acknowledged` event.
fn is_handled(m: &tracing::Metadata<'_>) -> bool {
    m.is_event()
        && m.target() == "switchyard::telemetry"
        && m.fields().field("outbox_id").is_some()
        && m.fields().field("outcome").is_some()
}

/// Installs the capture layer, plus human-readable logs on stderr at `RUST_LOG` (default
/// `warn`), as the global subscriber.
///
/// `log` records (sqlx, rdkafka, ...) are bridged at the stderr logs' level only, as the real
/// host's subscriber does at its `info`. `SubscriberInitExt::init` would bridge them at the
/// subscriber's maximum level, DEBUG here (the capture layer's): sqlx then formats a summary
/// and a copy of every statement for a `sqlx::query` record nobody shows, 2-4 µs per event in
/// the host and the raw loop alike, which the real host never pays (docs/BENCHMARKS.md, pass 7).
///
/// # Errors
/// A subscriber or `log` logger already installed: nothing would be captured.
pub fn install() -> anyhow::Result<()> {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let log_level = env
        .max_level_hint()
        .map_or(tracing_log::log::LevelFilter::Warn, |l| l.as_log());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(env);
    // A filter with a level hint, unlike a bare `filter_fn`, keeps the subscriber's maximum
    // level at DEBUG, so `tracing`'s TRACE callsites stay disabled at no cost. (`log` records
    // are cut at `log_level` above. When the bridge still followed this maximum, a bare
    // `filter_fn` let the compilers' trace records through and a component compiled about
    // three times slower than in the real host: Winch on the 18 MB Python handler, 4.9 s
    // against 1.6 s.)
    let capture = CaptureLayer
        .with_filter(Targets::new().with_target("switchyard::telemetry", tracing::Level::DEBUG));
    let subscriber = tracing_subscriber::registry().with(logs).with(capture);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| anyhow::anyhow!("installing the capture subscriber: {e}"))?;
    tracing_log::LogTracer::init_with_filter(log_level)
        .map_err(|e| anyhow::anyhow!("bridging `log` records: {e}"))?;
    Ok(())
}

struct CaptureLayer;

#[derive(Default)]
struct Fields {
    outbox_id: i64,
    outcome: String,
    version: String,
}

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "outbox_id" {
            self.outbox_id = value;
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "outcome" => self.outcome = value.to_owned(),
            "version" => self.version = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for CaptureLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !is_handled(event.metadata()) {
            return;
        }
        let at = Instant::now();
        let mut f = Fields::default();
        event.record(&mut f);
        let mut handled = lock();
        if is_final(&f.outcome) {
            FINAL.fetch_add(1, Ordering::SeqCst);
        }
        handled.push(Handled {
            outbox_id: f.outbox_id,
            at,
            outcome: f.outcome,
            version: f.version,
        });
    }
}
