//! Typed telemetry events: each struct is one thing worth counting or logging, and its `emit`
//! writes the log line and the metric together, so metric names live only here.

use metrics::counter;

/// The invocation latency histogram (seconds), by service and event type; its buckets are
/// [`INVOCATION_BUCKETS`] (the admin endpoint's exporter is configured with them).
pub const INVOCATION_SECONDS: &str = "switchyard_invocation_seconds";

/// Bucket bounds of [`INVOCATION_SECONDS`], seconds: 1 ms to the default 5 s deadline and past.
pub const INVOCATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A relay published a batch of rows to its service's topic.
pub struct RelayBatchPublished<'a> {
    pub service: &'a str,
    pub published: usize,
    pub failed: usize,
}

impl RelayBatchPublished<'_> {
    pub fn emit(&self) {
        tracing::debug!(
            service = self.service,
            published = self.published,
            failed = self.failed,
            "relay batch published"
        );
        counter!("switchyard_relay_published_total", "service" => self.service.to_owned())
            .increment(self.published as u64);
        counter!("switchyard_relay_publish_failed_total", "service" => self.service.to_owned())
            .increment(self.failed as u64);
    }
}

/// One event's outcome was committed.
pub struct EventHandled<'a> {
    pub service: &'a str,
    pub event_type: &'a str,
    pub outbox_id: i64,
    /// `consumed`, `retry` or `dead`: static, so its metric label is never copied.
    pub outcome: &'static str,
    pub reason: Option<&'a str>,
    pub version: &'a str,
    pub micros: u128,
}

impl EventHandled<'_> {
    pub fn emit(&self) {
        match self.reason {
            None => tracing::debug!(
                service = self.service,
                event_type = self.event_type,
                outbox_id = self.outbox_id,
                outcome = self.outcome,
                version = self.version,
                micros = self.micros as u64,
                "event handled"
            ),
            Some(reason) => tracing::warn!(
                service = self.service,
                event_type = self.event_type,
                outbox_id = self.outbox_id,
                outcome = self.outcome,
                version = self.version,
                reason,
                "event not acknowledged"
            ),
        }
        counter!("switchyard_events_total", "service" => self.service.to_owned(), "outcome" => self.outcome)
            .increment(1);
        metrics::histogram!(INVOCATION_SECONDS, "service" => self.service.to_owned(), "event_type" => self.event_type.to_owned())
            .record(self.micros as f64 / 1e6);
    }
}

/// A message was dropped without touching any row (SmartFlow's "skip" cases).
pub struct MessageSkipped<'a> {
    pub service: &'a str,
    pub origin: &'a str,
    pub reason: &'a str,
}

impl MessageSkipped<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            service = self.service,
            origin = self.origin,
            reason = self.reason,
            "message skipped"
        );
        counter!("switchyard_messages_skipped_total", "service" => self.service.to_owned())
            .increment(1);
    }
}

/// A store or transport operation failed; the loop backs off and tries again.
pub struct LoopError<'a> {
    pub service: &'a str,
    pub stage: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl LoopError<'_> {
    pub fn emit(&self) {
        tracing::error!(service = self.service, stage = self.stage, error = %self.error, "retrying after error");
        counter!("switchyard_loop_errors_total", "service" => self.service.to_owned(), "stage" => self.stage.to_owned())
            .increment(1);
    }
}

/// A relay or consumer loop panicked or returned while the host was running; it restarts
/// after `backoff`.
pub struct LoopRestarted<'a> {
    pub name: &'a str,
    pub reason: &'a str,
    pub backoff: std::time::Duration,
}

impl LoopRestarted<'_> {
    pub fn emit(&self) {
        tracing::error!(
            task = self.name,
            reason = self.reason,
            backoff_ms = self.backoff.as_millis() as u64,
            "loop stopped; restarting it"
        );
        counter!("switchyard_loop_restarts_total", "task" => self.name.to_owned()).increment(1);
    }
}

/// Rows of other services' event types were moved out of a service's table into their owners'.
pub struct RowsRelocated<'a> {
    pub service: &'a str,
    pub rows: usize,
}

impl RowsRelocated<'_> {
    pub fn emit(&self) {
        if self.rows > 0 {
            tracing::info!(
                service = self.service,
                rows = self.rows,
                "moved rows of other services' event types to their owners' tables"
            );
            counter!("switchyard_rows_relocated_total", "service" => self.service.to_owned())
                .increment(self.rows as u64);
        }
    }
}

/// Rows left `published` past the visibility timeout each got a failed attempt.
pub struct StaleRowsRequeued<'a> {
    pub service: &'a str,
    pub rows: u64,
}

impl StaleRowsRequeued<'_> {
    pub fn emit(&self) {
        if self.rows > 0 {
            tracing::warn!(
                service = self.service,
                rows = self.rows,
                "rows published but never consumed: a failed attempt each"
            );
            counter!("switchyard_rows_requeued_total", "service" => self.service.to_owned())
                .increment(self.rows);
        }
    }
}

/// A retention round deleted (and, with `archive`, archived) a service's old consumed rows.
pub struct ConsumedRowsDeleted<'a> {
    pub service: &'a str,
    pub rows: u64,
    pub archived: bool,
}

impl ConsumedRowsDeleted<'_> {
    pub fn emit(&self) {
        if self.rows > 0 {
            tracing::debug!(
                service = self.service,
                rows = self.rows,
                archived = self.archived,
                "old consumed rows deleted"
            );
            counter!("switchyard_retention_deleted_total", "service" => self.service.to_owned())
                .increment(self.rows);
        }
    }
}

/// A route has failed every invocation for longer than its window.
pub struct RouteUnhealthy<'a> {
    pub service: &'a str,
    pub event_type: &'a str,
    pub failures: u64,
    pub last_reason: &'a str,
}

impl RouteUnhealthy<'_> {
    pub fn emit(&self) {
        tracing::error!(
            service = self.service,
            event_type = self.event_type,
            failures = self.failures,
            last_reason = self.last_reason,
            "route unhealthy: every invocation is failing"
        );
        metrics::gauge!("switchyard_route_unhealthy", "event_type" => self.event_type.to_owned())
            .set(1.0);
    }
}

/// An unhealthy route succeeded again.
pub struct RouteRecovered<'a> {
    pub service: &'a str,
    pub event_type: &'a str,
}

impl RouteRecovered<'_> {
    pub fn emit(&self) {
        tracing::info!(
            service = self.service,
            event_type = self.event_type,
            "route recovered"
        );
        metrics::gauge!("switchyard_route_unhealthy", "event_type" => self.event_type.to_owned())
            .set(0.0);
    }
}

/// A changed component file now serves its routes.
pub struct ComponentReloaded<'a> {
    pub path: &'a std::path::Path,
    pub version: &'a str,
    pub routes: &'a [String],
    pub compile_ms: u128,
    /// `baseline` (serving until the optimized code is swapped in) or `optimized`.
    pub tier: &'static str,
}

impl ComponentReloaded<'_> {
    pub fn emit(&self) {
        tracing::info!(
            path = %self.path.display(), version = self.version, routes = ?self.routes,
            compile_ms = self.compile_ms as u64, tier = self.tier, "component reloaded"
        );
        metrics::counter!("switchyard_component_reloads_total", "outcome" => "ok").increment(1);
    }
}

/// A reloaded version's optimized code replaced its baseline code.
pub struct ComponentOptimized<'a> {
    pub path: &'a std::path::Path,
    pub version: &'a str,
    pub routes: &'a [String],
    pub compile_ms: u128,
}

impl ComponentOptimized<'_> {
    pub fn emit(&self) {
        tracing::info!(
            path = %self.path.display(), version = self.version, routes = ?self.routes,
            compile_ms = self.compile_ms as u64, "optimized code swapped in"
        );
        metrics::counter!("switchyard_component_optimized_total").increment(1);
    }
}

/// A changed component file was refused; the previous version keeps serving.
pub struct ComponentReloadFailed<'a> {
    pub path: &'a std::path::Path,
    pub reason: &'a str,
}

impl ComponentReloadFailed<'_> {
    pub fn emit(&self) {
        tracing::error!(path = %self.path.display(), reason = self.reason,
            "component reload failed; the previous version keeps serving");
        metrics::counter!("switchyard_component_reloads_total", "outcome" => "failed").increment(1);
    }
}

/// The config file was reloaded (routes and limits).
pub struct ConfigReloaded<'a> {
    pub path: &'a std::path::Path,
    pub routes: usize,
}

impl ConfigReloaded<'_> {
    pub fn emit(&self) {
        tracing::info!(path = %self.path.display(), routes = self.routes, "config reloaded");
        metrics::counter!("switchyard_config_reloads_total", "outcome" => "ok").increment(1);
    }
}

/// A changed config file was refused; the running config is kept.
pub struct ConfigReloadRefused<'a> {
    pub path: &'a std::path::Path,
    pub reason: &'a str,
}

impl ConfigReloadRefused<'_> {
    pub fn emit(&self) {
        tracing::error!(path = %self.path.display(), reason = self.reason,
            "config reload refused; the running config is kept");
        metrics::counter!("switchyard_config_reloads_total", "outcome" => "refused").increment(1);
    }
}

/// One service's backlog, sampled by the host (`engine/lag.rs`): the gauges a dashboard and
/// an alert read. Units: rows, messages, seconds.
pub struct BacklogSampled<'a> {
    pub service: &'a str,
    /// Rows `pending`, `published` (not yet consumed) and `dead` in the service's table.
    pub pending: i64,
    pub published: i64,
    pub dead: i64,
    /// Seconds since the earliest pending row became due; 0 when none is due.
    pub oldest_pending_age_seconds: f64,
    /// Messages its consumer group has not taken (embedded queue) or committed (Kafka);
    /// `None` when the transport could not say (the previous value stays).
    pub lag: Option<u64>,
}

impl BacklogSampled<'_> {
    pub fn emit(&self) {
        tracing::debug!(
            service = self.service,
            pending = self.pending,
            published = self.published,
            dead = self.dead,
            oldest_pending_age_seconds = self.oldest_pending_age_seconds,
            lag = self.lag,
            "backlog sampled"
        );
        let service = self.service.to_owned();
        for (status, n) in [
            ("pending", self.pending),
            ("published", self.published),
            ("dead", self.dead),
        ] {
            metrics::gauge!("switchyard_outbox_rows", "service" => service.clone(), "status" => status)
                .set(n as f64);
        }
        metrics::gauge!("switchyard_outbox_oldest_pending_age_seconds", "service" => service.clone())
            .set(self.oldest_pending_age_seconds);
        if let Some(lag) = self.lag {
            metrics::gauge!("switchyard_consumer_lag_messages", "service" => service)
                .set(lag as f64);
        }
    }
}

/// A backlog sample could not be read; the previous values stay on `/metrics`.
pub struct BacklogSampleFailed<'a> {
    pub service: &'a str,
    /// `store` (the outbox table) or `transport` (the consumer group's lag).
    pub source: &'static str,
    pub error: &'a dyn std::fmt::Display,
}

impl BacklogSampleFailed<'_> {
    pub fn emit(&self) {
        tracing::warn!(service = self.service, source = self.source, error = %self.error,
            "backlog sample failed");
        metrics::counter!("switchyard_backlog_sample_errors_total",
            "service" => self.service.to_owned(), "source" => self.source)
        .increment(1);
    }
}
