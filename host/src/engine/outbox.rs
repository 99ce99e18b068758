//! The producer API: enqueue an event inside the caller's own transaction.
//!
//! ```no_run
//! # async fn example(host: &switchyard::Switchyard, pool: &sqlx::SqlitePool) -> anyhow::Result<()> {
//! use switchyard::NewEvent;
//! let outbox = host.outbox();
//! let mut tx = pool.begin().await?;
//! sqlx::query("UPDATE orders SET state = 'paid' WHERE id = 7").execute(&mut *tx).await?;
//! let payload = serde_json::json!({"user_id": 7, "task_ids": [1], "triggered_at": "2026-11-29T09:00:00Z"});
//! let ticket = outbox.enqueue(&mut tx, NewEvent::new("task.urgency.promote.requested", payload)).await?;
//! tx.commit().await?;
//! ticket.wake(); // the relay publishes now instead of at its next poll
//! # Ok(())
//! # }
//! ```

use crate::catalog::{Catalog, CatalogCell, Service, Unrouted};
use crate::config::{Config, ConfigCell};
use crate::envelope::{DEFAULT_EVENT_VERSION, StoredWrapper, Wrapper};
use crate::runtime::Emit;
use crate::store::{
    NewRow, OutboxRow, Relocation, StoreError, Timestamp, mysql, now, postgres, sqlite,
};
use crate::traces::{self, Traced, Traces};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// An event to enqueue.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    /// Empty means SmartFlow's default `v1`.
    pub event_version: String,
    /// Empty means "use the outbox id".
    pub event_id: String,
    /// Empty means the message key (empty too when both are).
    pub aggregate_id: String,
    pub message_key: String,
    pub payload: serde_json::Value,
    /// The producer's W3C trace context (`00-<trace id>-<span id>-<flags>`): the event's
    /// trace continues from the producer's request. `None` (or a malformed one, which is
    /// ignored with a warning) starts a new trace.
    pub traceparent: Option<String>,
}

/// A handler's emit is enqueued like a producer's event (it has no event id of its own).
impl From<Emit> for NewEvent {
    fn from(emit: Emit) -> NewEvent {
        NewEvent {
            event_type: emit.event_type,
            event_version: emit.event_version,
            event_id: String::new(),
            aggregate_id: emit.aggregate_id,
            message_key: emit.message_key,
            payload: emit.payload,
            // The consumer sets the emitting invocation's own context on the row.
            traceparent: None,
        }
    }
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, payload: serde_json::Value) -> NewEvent {
        NewEvent {
            event_type: event_type.into(),
            event_version: String::new(),
            event_id: String::new(),
            aggregate_id: String::new(),
            message_key: String::new(),
            payload,
            traceparent: None,
        }
    }

    pub fn key(mut self, key: impl Into<String>) -> NewEvent {
        self.message_key = key.into();
        self
    }

    pub fn version(mut self, version: impl Into<String>) -> NewEvent {
        self.event_version = version.into();
        self
    }

    pub fn aggregate(mut self, id: impl Into<String>) -> NewEvent {
        self.aggregate_id = id.into();
        self
    }

    /// Continues the producer's trace (its W3C `traceparent`).
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> NewEvent {
        self.traceparent = Some(traceparent.into());
        self
    }
}

/// Why an event could not be enqueued. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Unrouted(#[from] Unrouted),
    #[error("event {event_type:?} has an empty payload: SmartFlow rejects it")]
    EmptyPayload { event_type: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Per-service relay wake-ups.
#[derive(Default)]
pub struct Wakers {
    by_service: HashMap<String, Arc<Notify>>,
}

impl Wakers {
    pub fn new(catalog: &Catalog) -> Wakers {
        Wakers {
            by_service: catalog
                .services()
                .map(|s| (s.name.clone(), Arc::new(Notify::new())))
                .collect(),
        }
    }

    pub fn get(&self, service: &str) -> Option<Arc<Notify>> {
        self.by_service.get(service).cloned()
    }

    pub fn wake(&self, service: &str) {
        if let Some(n) = self.by_service.get(service) {
            n.notify_one();
        }
    }
}

/// Wakes the owning relay once the caller's transaction has committed.
#[derive(Debug)]
#[must_use = "call wake() after commit, or the row waits for the relay's next poll"]
pub struct Ticket {
    pub outbox_id: i64,
    pub table: String,
    notify: Option<Arc<Notify>>,
}

impl Ticket {
    pub fn wake(self) {
        if let Some(n) = self.notify {
            n.notify_one();
        }
    }
}

/// The one way an event becomes an outbox row, for a producer's [`NewEvent`] and a handler's
/// emit alike: its owner's table and topic (the `topic` column is informational: the relay
/// publishes to the service's topic), SmartFlow's wrapper, `v1` when no version is given, the
/// message key as the aggregate id when none is given, and the owner's `max_attempts`
/// (`[retry]` with its `[services.X.retry]` overrides) in `max_retry`.
///
/// # Errors
/// [`EnqueueError::Unrouted`] when no service owns the event type (never a default table);
/// [`EnqueueError::EmptyPayload`] for a `null` payload.
pub fn row_for(
    catalog: &Catalog,
    config: &Config,
    event: NewEvent,
) -> Result<NewRow, EnqueueError> {
    let route = catalog.route(&event.event_type)?;
    if event.payload.is_null() {
        return Err(EnqueueError::EmptyPayload {
            event_type: event.event_type,
        });
    }
    let service = &route.service;
    let wrapper = Wrapper {
        event_id: Some(event.event_id).filter(|s| !s.is_empty()),
        event_type: event.event_type.clone(),
        event_version: Some(if event.event_version.is_empty() {
            DEFAULT_EVENT_VERSION.to_owned()
        } else {
            event.event_version
        }),
        aggregate_id: [&event.aggregate_id, &event.message_key]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned(),
        payload: event.payload,
    };
    Ok(NewRow {
        table: service.table.clone(),
        biz_type: event.event_type,
        service_name: service.name.clone(),
        topic: service.topic.clone(),
        message_key: event.message_key,
        payload: wrapper.to_json(),
        max_attempts: config.retry_for(&service.name).max_attempts as i32,
        chain_depth: 0,
        traceparent: traces::normalized(event.traceparent.as_deref()),
    })
}

/// The row a claimed row becomes in its owner's table when the relay of the table it sits in
/// moves it there (a legacy shared table drained, a type whose owner a config change moved):
/// SmartFlow's wrapper as it was, with the event id it would have been published with (the
/// old row's id) when it had none, so a handler that deduplicates on the event id sees the
/// same id as before the move; attempts start again in the new table, under its owner's
/// `max_attempts`.
pub fn relocated_row(
    owner: &Service,
    row: &OutboxRow,
    mut wrapper: StoredWrapper<'_>,
    config: &Config,
) -> Relocation {
    if wrapper.event_id.as_deref().is_none_or(str::is_empty) {
        wrapper.event_id = Some(row.id.to_string().into());
    }
    Relocation {
        id: row.id,
        row: NewRow {
            table: owner.table.clone(),
            biz_type: row.biz_type.clone(),
            service_name: owner.name.clone(),
            topic: owner.topic.clone(),
            message_key: row.message_key.clone(),
            payload: wrapper.to_json(),
            max_attempts: config.retry_for(&owner.name).max_attempts as i32,
            chain_depth: 0,
            traceparent: row.traceparent.clone(),
        },
    }
}

/// Routes events to their owner's table and writes them as `pending` rows.
#[derive(Clone)]
pub struct Outbox {
    catalog: CatalogCell,
    config: ConfigCell,
    wakers: Arc<Wakers>,
    traces: Arc<Traces>,
}

impl Outbox {
    pub fn new(
        catalog: CatalogCell,
        config: ConfigCell,
        wakers: Arc<Wakers>,
        traces: Arc<Traces>,
    ) -> Outbox {
        Outbox {
            catalog,
            config,
            wakers,
            traces,
        }
    }

    /// Builds the row for an event with the current routing (see [`row_for`]).
    ///
    /// # Errors
    /// [`EnqueueError::Unrouted`] when no service owns the event type (never a default table).
    pub fn row(&self, event: NewEvent) -> Result<NewRow, EnqueueError> {
        row_for(&self.catalog.get(), &self.config.get(), event)
    }

    /// The row for an event, under its enqueue span (a child of the producer's traceparent):
    /// the row stores the span's context. The span ends when the returned [`Traced`] drops,
    /// after the insert.
    pub(crate) fn traced_row(&self, event: NewEvent) -> Result<(NewRow, Traced), EnqueueError> {
        let mut row = self.row(event)?;
        let span =
            self.traces
                .enqueue(row.traceparent.as_deref(), &row.service_name, &row.biz_type);
        row.traceparent = span.traceparent().map(str::to_owned);
        Ok((row, span))
    }

    /// Inserts the event as a `pending` row on the caller's connection or transaction (SQLite,
    /// MySQL/MariaDB or PostgreSQL: whatever [`EnqueueOn`] is implemented for).
    ///
    /// # Errors
    /// [`EnqueueError`]; the caller's transaction is left for the caller to roll back.
    pub async fn enqueue<C: EnqueueOn + ?Sized>(
        &self,
        conn: &mut C,
        event: NewEvent,
    ) -> Result<Ticket, EnqueueError> {
        let (row, mut span) = self.traced_row(event)?;
        let ids = conn
            .insert_outbox_rows(std::slice::from_ref(&row), now())
            .await
            .inspect_err(|e| span.fail(&e.to_string()))?;
        span.set("switchyard.outbox_id", ids[0]);
        Ok(Ticket {
            outbox_id: ids[0],
            notify: self.wakers.get(&row.service_name),
            table: row.table,
        })
    }

    /// Wakes the relay of a service (after rows were written some other way).
    pub fn wake(&self, service: &str) {
        self.wakers.wake(service);
    }
}

/// A connection, pooled connection or open transaction that [`Outbox::enqueue`] can write on:
/// the caller's own, so the event commits or rolls back with the caller's writes.
#[async_trait]
pub trait EnqueueOn: Send {
    /// Inserts `pending` rows and returns their ids.
    async fn insert_outbox_rows(
        &mut self,
        rows: &[NewRow],
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError>;
}

/// Implements [`EnqueueOn`] for a backend's connection, its transactions and pooled
/// connections, all through that backend's `insert_rows`.
macro_rules! enqueue_on {
    ($conn:ty, $db:ty, $insert:path) => {
        #[async_trait]
        impl EnqueueOn for $conn {
            async fn insert_outbox_rows(
                &mut self,
                rows: &[NewRow],
                now: Timestamp,
            ) -> Result<Vec<i64>, StoreError> {
                $insert(self, rows, now).await
            }
        }
        #[async_trait]
        impl EnqueueOn for sqlx::Transaction<'_, $db> {
            async fn insert_outbox_rows(
                &mut self,
                rows: &[NewRow],
                now: Timestamp,
            ) -> Result<Vec<i64>, StoreError> {
                $insert(&mut *self, rows, now).await
            }
        }
        #[async_trait]
        impl EnqueueOn for sqlx::pool::PoolConnection<$db> {
            async fn insert_outbox_rows(
                &mut self,
                rows: &[NewRow],
                now: Timestamp,
            ) -> Result<Vec<i64>, StoreError> {
                $insert(&mut *self, rows, now).await
            }
        }
    };
}

enqueue_on!(sqlx::SqliteConnection, sqlx::Sqlite, sqlite::insert_rows);
enqueue_on!(sqlx::MySqlConnection, sqlx::MySql, mysql::insert_rows);
enqueue_on!(sqlx::PgConnection, sqlx::Postgres, postgres::insert_rows);
