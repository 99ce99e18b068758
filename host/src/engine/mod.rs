//! The engine: the only module that joins store, transport and runtime.
//!
//! [`Switchyard::open`] gives the database-side operations (migrate, publish, status) without
//! loading any component; [`Switchyard::start`] validates and compiles every route's component,
//! then starts a relay and a consumer per service, as its mode says (`config::ServiceMode`:
//! `external` services get neither, `relay` no consumer, `consume` a relay loop that only runs
//! the visibility timeout). Invariants kept here: a row leaves
//! `pending`/`published` only as `consumed` or `dead`; a batch's outcomes and acked effects
//! commit in one transaction before the transport is acknowledged.

mod batch_state;
mod commit;
mod consumer;
pub mod counters;
mod dead;
pub mod health;
mod lag;
pub mod outbox;
mod pipeline;
mod relay;
mod reload;
mod retention;
mod routes;
pub mod supervise;

pub use counters::Counters;
pub use dead::{Operator, ReplayReport, ReplaySelection};
pub use outbox::{EnqueueError, EnqueueOn, NewEvent, Outbox, Ticket, Wakers};
pub use routes::{RouteLoadError, RouteTable};

use crate::catalog::{Catalog, CatalogCell, Service};
use crate::config::{Config, ConfigCell, ServiceMode, TransportConfig};
use crate::runtime::Runtime;
use crate::store::{self, Backoff, Store, TableStatus, now};
use crate::traces::Traces;
use crate::transport::embedded::EmbeddedTransport;
use crate::transport::kafka::KafkaTransport;
use crate::transport::{Channel, Transport};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What relays and consumers share.
pub(crate) struct Shared {
    /// The live config: a config reload swaps it (see `reload::apply_config` for which keys
    /// apply live and which are refused until a restart).
    pub config: ConfigCell,
    pub catalog: CatalogCell,
    pub store: Arc<dyn Store>,
    pub transport: Arc<dyn Transport>,
    pub runtime: Runtime,
    pub routes: RouteTable,
    pub wakers: Arc<Wakers>,
    pub health: health::RouteHealth,
    /// Which relay and consumer loops are down (restarting).
    pub loops: Arc<supervise::LoopStatus>,
    pub counters: Counters,
    pub traces: Arc<Traces>,
}

/// Flushes `traces` off the async workers: the exporter blocks on the collector.
async fn flush(traces: &Arc<Traces>) {
    if traces.is_exporting() {
        let traces = traces.clone();
        let _ = tokio::task::spawn_blocking(move || traces.flush()).await;
    }
}

/// `last_error` of rows a previous run had queued in memory when it stopped.
const QUEUE_LOST: &str = "requeued at start: the in-process queue of the previous run was lost";

/// `last_error` of rows `switchyard release` handed back.
const RELEASED: &str = "released by `switchyard release`: published again by the next relay";

/// The failed-attempt delays of `service`'s rows: `[retry]` with its `[services.X.retry]`
/// overrides.
pub(crate) fn backoff(config: &Config, service: &str) -> Backoff {
    let retry = config.retry_for(service);
    Backoff {
        base: Duration::from_millis(retry.backoff_base_ms),
        max: Duration::from_millis(retry.backoff_max_ms),
    }
}

/// A configured host: database and routing, not yet running.
pub struct Switchyard {
    config: ConfigCell,
    catalog: CatalogCell,
    store: Arc<dyn Store>,
    wakers: Arc<Wakers>,
    /// This host's tracer (`[traces]`), shared by its producer API and its loops.
    traces: Arc<Traces>,
}

impl Switchyard {
    /// Builds the catalog and connects to the database. Loads no component.
    ///
    /// # Errors
    /// Invalid names in the catalog, or a database that cannot be reached.
    pub async fn open(config: Config) -> anyhow::Result<Switchyard> {
        let catalog = Catalog::from_config(&config)?;
        let url = config.database_url_resolved();
        // Each consumer lane holds a connection while its transaction is open; the relays,
        // reads and enqueues need some beside them.
        let lanes = catalog.services().count() as u32 * config.consumer.lanes_for(&url);
        let connections = store::SERVER_CONNECTIONS.max(lanes + 4);
        let store = store::open_with(&url, connections)
            .await
            .with_context(|| format!("opening database {url}"))?;
        let wakers = Arc::new(Wakers::new(&catalog));
        let catalog = CatalogCell::new(catalog);
        let traces = Arc::new(Traces::from_config(&config.traces)?);
        Ok(Switchyard {
            config: ConfigCell::new(config),
            catalog,
            store,
            wakers,
            traces,
        })
    }

    /// Creates or upgrades the host tables and every service's outbox table (additive only).
    ///
    /// # Errors
    /// The failing migration, named.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let tables: Vec<String> = self
            .catalog
            .get()
            .services()
            .map(|s| s.table.clone())
            .collect();
        self.store.migrate(&tables).await?;
        Ok(())
    }

    /// Creates the archive table of every service whose retention archives (`archive =
    /// true`): `switchyard migrate` only, never the running host.
    ///
    /// # Errors
    /// The failing statement, named.
    pub async fn migrate_archives(&self) -> anyhow::Result<Vec<String>> {
        let config = self.config.get();
        let tables: Vec<String> = self
            .catalog
            .get()
            .services()
            .filter(|s| config.retention_for(&s.name).archive)
            .map(|s| s.table.clone())
            .collect();
        self.store.migrate_archives(&tables).await?;
        Ok(tables.iter().map(|t| format!("{t}_archive")).collect())
    }

    /// Refuses to start a host whose retention archives into a table `migrate` has not
    /// created.
    async fn check_archives(&self, config: &Config) -> anyhow::Result<()> {
        for s in self.catalog.get().services() {
            if s.mode.relays() && config.retention_for(&s.name).archive {
                self.store.archive_ready(&s.table).await.map_err(|e| {
                    anyhow::anyhow!(
                        "service {}: retention.archive is on but its archive table \
                         {}_archive is missing ({e}): run `switchyard migrate` first",
                        s.name,
                        s.table
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The current routing (a snapshot; a config reload swaps it).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.get()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current config (a snapshot; a config reload of the running host swaps it).
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// The producer API bound to this host's routing and relay wake-ups.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(
            self.catalog.clone(),
            self.config.clone(),
            self.wakers.clone(),
            self.traces.clone(),
        )
    }

    /// Enqueues one event in its own transaction and wakes its relay.
    ///
    /// # Errors
    /// [`EnqueueError`]: unrouted type, empty payload, database failure.
    pub async fn publish(&self, event: NewEvent) -> Result<i64, EnqueueError> {
        let outbox = self.outbox();
        let (row, mut span) = outbox.traced_row(event)?;
        let ids = self
            .store
            .insert(std::slice::from_ref(&row), now())
            .await
            .inspect_err(|e| span.fail(&e.to_string()))?;
        span.set("switchyard.outbox_id", ids[0]);
        outbox.wake(&row.service_name);
        Ok(ids[0])
    }

    /// Sends every finished span to the collector now (`[traces]`): what a short-lived
    /// command does before it exits. Nothing without an endpoint.
    pub async fn flush_traces(&self) {
        flush(&self.traces).await;
    }

    /// Per service: counts by status and the oldest pending row.
    ///
    /// # Errors
    /// A database error.
    pub async fn status(&self) -> anyhow::Result<Vec<(Arc<Service>, TableStatus)>> {
        let catalog = self.catalog.get();
        let mut out = Vec::new();
        for s in catalog.services() {
            let own = catalog.types_of(&s.name);
            out.push((s.clone(), self.store.table_status(&s.table, &own).await?));
        }
        Ok(out)
    }

    /// Hands a service's in-flight rows back (`published` → `pending`, due now, no attempt
    /// counted) so another relay publishes them again: the rollback step for a service moved
    /// off this host (SmartFlow's relay only takes `pending` rows). Run it after this host
    /// stopped relaying the service. Returns how many rows.
    ///
    /// # Errors
    /// An unknown service, or a database error.
    pub async fn release(&self, service: &str) -> anyhow::Result<u64> {
        let catalog = self.catalog.get();
        let s = catalog
            .service(service)
            .with_context(|| format!("no service {service:?} in the config"))?;
        Ok(self
            .store
            .requeue_published(&s.table, now(), RELEASED)
            .await?)
    }

    /// The transport named in the config. For Kafka this connects and makes sure every
    /// service's topic exists (see [`KafkaTransport::connect`]).
    ///
    /// # Errors
    /// Kafka settings librdkafka refuses, or a topic that cannot be created or never appears.
    pub async fn configured_transport(&self) -> anyhow::Result<Arc<dyn Transport>> {
        Ok(match &self.config.get().transport {
            TransportConfig::Embedded => Arc::new(EmbeddedTransport::new()),
            TransportConfig::Kafka(kafka) => Arc::new(
                KafkaTransport::connect(
                    kafka,
                    // An external service's topic is its owner's to create.
                    self.catalog
                        .get()
                        .services()
                        .filter(|s| s.mode != ServiceMode::External)
                        .map(|s| s.topic.as_str()),
                )
                .await
                .with_context(|| format!("connecting to Kafka at {}", kafka.brokers))?,
            ),
        })
    }

    /// Migrates, compiles and validates every route's component, then starts each service's
    /// relay and consumer as its mode says. Nothing is consumed if any route fails to load.
    ///
    /// # Errors
    /// A component that fails to load (naming event type, service and file), a migration or
    /// transport failure.
    pub async fn start(&self, transport: Arc<dyn Transport>) -> anyhow::Result<Running> {
        let config = self.config.get();
        let runtime = Runtime::new(&config).context("starting the WebAssembly runtime")?;
        let routes = RouteTable::load(&runtime, &config, &self.catalog.get())?;
        self.migrate().await?;
        self.check_archives(&config).await?;
        let hosting = self.store.acquire_host().await?;
        // On a shared database, `published` rows may be in flight in another host's memory:
        // only the visibility timeout may hand them out again.
        if transport.is_volatile() && hosting == store::Hosting::Exclusive {
            // Whatever a previous run had queued in memory is gone, through no fault of the
            // rows: publish it again without counting an attempt.
            let t = now();
            for s in self.catalog.get().services().filter(|s| s.mode.relays()) {
                self.store
                    .requeue_published(&s.table, t, QUEUE_LOST)
                    .await?;
            }
        }
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            catalog: self.catalog.clone(),
            store: self.store.clone(),
            transport: transport.clone(),
            runtime,
            routes,
            wakers: self.wakers.clone(),
            health: health::RouteHealth::new(Duration::from_millis(
                config.limits.unhealthy_after_ms,
            )),
            counters: Counters::default(),
            loops: Arc::new(supervise::LoopStatus::default()),
            traces: self.traces.clone(),
        });
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for service in self.catalog.get().services() {
            if service.mode == ServiceMode::External {
                continue; // another system runs both halves; emits only insert its rows
            }
            // A `consume` service's relay loop only runs the visibility timeout.
            let wake = self.wakers.get(&service.name).unwrap_or_default();
            let (s, svc, token) = (shared.clone(), service.clone(), stop.child_token());
            tasks.spawn(supervise::supervise(
                format!("relay of {}", service.name),
                shared.loops.clone(),
                stop.child_token(),
                move || relay::run(s.clone(), svc.clone(), wake.clone(), token.clone()),
            ));
            if service.mode.relays() {
                // This host owns the table: it runs its retention (idle while it is off).
                let (s, svc, token) = (shared.clone(), service.clone(), stop.child_token());
                tasks.spawn(supervise::supervise(
                    format!("retention of {}", service.name),
                    shared.loops.clone(),
                    stop.child_token(),
                    move || retention::run(s.clone(), svc.clone(), token.clone()),
                ));
            }
            if !service.mode.consumes() {
                continue;
            }
            let subscription = transport
                .subscribe(channel(service))
                .await
                .with_context(|| {
                    format!(
                        "subscribing to {} for service {}",
                        service.topic, service.name
                    )
                })?;
            let subscription = Arc::new(tokio::sync::Mutex::new(subscription));
            let (s, svc, token) = (shared.clone(), service.clone(), stop.child_token());
            tasks.spawn(supervise::supervise(
                format!("consumer of {}", service.name),
                shared.loops.clone(),
                stop.child_token(),
                move || pipeline::run(s.clone(), svc.clone(), subscription.clone(), token.clone()),
            ));
        }
        if config.admin.listen.is_some() {
            // The backlog gauges of /metrics; nothing else shows them.
            tasks.spawn(lag::run(shared.clone(), stop.child_token()));
        }
        if config.reload.watch {
            let watch =
                reload::Watch::start(&shared).context("watching component files for hot reload")?;
            tasks.spawn(reload::run(shared.clone(), watch, stop.child_token()));
        }
        tracing::info!(
            services = self.catalog.get().services().count(),
            routes = shared.routes.snapshot().len(),
            "switchyard started"
        );
        Ok(Running {
            shared,
            stop,
            tasks,
        })
    }
}

/// The names a transport needs for a service's traffic.
pub fn channel(service: &Service) -> Channel<'_> {
    Channel {
        service: &service.name,
        topic: &service.topic,
        group: &service.group,
    }
}

/// One route as `/routes` and `switchyard status` show it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RouteStatus {
    pub event_type: String,
    pub service: String,
    pub component: String,
    /// blake3 of the component file serving the route now.
    pub version: String,
    /// When that version was loaded (unix ms).
    pub loaded_at_ms: u64,
    /// The last failed reload of this route's file, if it has not been fixed since.
    pub last_reload_error: Option<String>,
    pub health: health::RouteHealthView,
}

/// A read-only view of a running host, for the admin endpoint (`admin::serve`, wired by the
/// binary: the engine never starts it).
#[derive(Clone)]
pub struct StatusHandle(Arc<Shared>);

impl StatusHandle {
    /// Whether the host serves every service: `Err` lists each relay or consumer loop that is
    /// down (restarting) and each route reported unhealthy.
    ///
    /// # Errors
    /// The reasons the host is not ready, one line each.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems: Vec<String> = self
            .0
            .loops
            .down()
            .into_iter()
            .map(|(name, why)| format!("{name} is down: {why}"))
            .collect();
        for route in self.routes() {
            if let Some(ms) = route.health.overdue_ms {
                problems.push(format!(
                    "route {} has an invocation {ms} ms past its deadline",
                    route.event_type
                ));
            }
            if route.health.unhealthy {
                problems.push(format!(
                    "route {} is unhealthy: {}",
                    route.event_type,
                    route.health.last_failure.unwrap_or_default()
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    pub fn routes(&self) -> Vec<RouteStatus> {
        let shared = &self.0;
        shared
            .routes
            .snapshot()
            .into_iter()
            .map(|(event_type, component)| RouteStatus {
                service: shared
                    .catalog
                    .get()
                    .route(&event_type)
                    .map(|r| r.service.name.clone())
                    .unwrap_or_default(),
                component: component.path.display().to_string(),
                version: component.hash.to_string(),
                loaded_at_ms: component
                    .loaded_at
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                last_reload_error: shared.routes.reload_error(&component.path),
                health: shared.health.view(&event_type),
                event_type,
            })
            .collect()
    }
}

/// A started host. Dropping it without [`Running::shutdown`] aborts its tasks.
pub struct Running {
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// How long in-flight batches may take at shutdown (`[consumer] shutdown_grace_ms` of the
    /// current config).
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shared.config.get().consumer.shutdown_grace_ms)
    }

    /// Re-reads the config file and applies it (what SIGHUP does): routes, limits, `[retry]`,
    /// `[relay]`, `[consumer]` and `hold_key_order` apply live; a change to a key that needs a
    /// restart refuses the whole reload, naming the key.
    ///
    /// # Errors
    /// Why the new config was refused; the running one is kept.
    pub async fn reload_config(&self) -> Result<usize, String> {
        reload::reload_config(&self.shared).await
    }

    /// Reloads one component file now (what the file watcher does after a change). Returns
    /// whether a new version was swapped in.
    pub async fn reload_component(&self, path: &std::path::Path) -> bool {
        reload::reload_component(&self.shared, &reload::normalize(path)).await
    }

    /// Component versions swapped in by hot reload since start.
    pub fn component_reloads(&self) -> u64 {
        self.shared.routes.swaps()
    }

    /// What this host has done since it started (invocations, failed commits, reload checks).
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The last failed reload of a component file, if not fixed since.
    pub fn reload_error(&self, path: &std::path::Path) -> Option<String> {
        self.shared.routes.reload_error(path)
    }

    /// A read-only view for status reporting.
    pub fn status(&self) -> StatusHandle {
        StatusHandle(self.shared.clone())
    }

    /// Each route's current component version.
    pub fn routes(&self) -> Vec<(String, Arc<crate::runtime::LoadedComponent>)> {
        self.shared.routes.snapshot()
    }

    /// Stops claiming and receiving, lets in-flight batches commit, and waits up to `grace`.
    /// Returns `false` if tasks had to be aborted.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future aborts the remaining tasks.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.stop.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        // The spans of the last batches go out before the host is gone.
        flush(&self.shared.traces).await;
        if drained.is_err() {
            self.tasks.abort_all();
            return false;
        }
        true
    }
}
