//! Plain data of the operator's dead-letter commands (`switchyard dead`): which dead rows to
//! act on, what they look like, who acted and what changed.
//!
//! The statements are in `sql/dead.rs`. Every one of them touches only rows whose status is
//! `dead` (a row consumed, pending or published is the host's and is never changed here), so
//! they are safe while hosts run.

use super::Timestamp;

/// The host table that records every requeue and purge.
pub const DEAD_LETTER_ACTIONS: &str = "switchyard_dead_letter_actions";

/// Which dead rows of one table a command means. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    /// Only rows of this event type (`biz_type`).
    pub event_type: Option<String>,
    /// Only rows that went dead at or after this time (their `updated_at`, or `created_at`
    /// where a legacy row has none).
    pub since: Option<Timestamp>,
    /// Only rows that went dead at or before this time (a purge counts the rows, asks, then
    /// deletes what it counted: not a row that went dead while it asked).
    pub until: Option<Timestamp>,
    /// Only rows whose `last_error` contains this text (case-sensitive, on every backend).
    pub reason: Option<String>,
}

impl DeadFilter {
    /// True when no condition is set: every dead row.
    pub fn is_empty(&self) -> bool {
        self == &DeadFilter::default()
    }
}

/// The rows a requeue or purge acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadSelection {
    /// Exactly these rows, all or nothing: if one of them is not `dead` (or does not exist),
    /// nothing changes and the answer says what state each such row is in.
    Ids(Vec<i64>),
    /// Every row that is `dead` and matches (an empty filter: all dead rows).
    Matching(DeadFilter),
}

/// A dead row as `dead list` shows it.
#[derive(Debug, Clone)]
pub struct DeadRow {
    pub id: i64,
    pub biz_type: String,
    pub message_key: String,
    /// Failed attempts (`retry_count`).
    pub attempts: i32,
    /// The row's `max_retry`.
    pub max_attempts: i32,
    pub last_error: Option<String>,
    /// When it went dead: `updated_at` (`created_at` for a legacy row without it).
    pub dead_at: Option<Timestamp>,
}

/// Dead rows of one table: up to the limit asked for, and how many matched in all.
#[derive(Debug, Clone, Default)]
pub struct DeadPage {
    pub rows: Vec<DeadRow>,
    pub total: u64,
}

/// Every column of one outbox row, whatever its status (`dead show`). A column that cannot be
/// decoded (a legacy row written by another program) reads as `None`.
#[derive(Debug, Clone)]
pub struct WholeRow {
    pub id: i64,
    pub biz_type: String,
    pub service_name: String,
    pub topic: String,
    pub message_key: String,
    /// The wrapper JSON, exactly as stored.
    pub payload: Option<String>,
    pub status: String,
    pub retry_count: i32,
    pub max_retry: i32,
    pub next_retry_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub published_at: Option<Timestamp>,
    pub consumed_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    pub handler_version: Option<String>,
    pub publish_count: i32,
    pub chain_depth: i32,
}

/// Who acts on dead rows, when and why: written to [`DEAD_LETTER_ACTIONS`] with each row.
#[derive(Debug, Clone)]
pub struct DeadAction {
    /// The service whose table it is (recorded beside the table name).
    pub service: String,
    /// Who (`--by`, default `$USER`).
    pub actor: String,
    /// Why (`--note`); may be empty.
    pub note: String,
    /// When; also the requeued rows' new `next_retry_at` (due at once).
    pub at: Timestamp,
}

/// A row a requeue or purge changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActedRow {
    pub id: i64,
    pub biz_type: String,
}

/// What a requeue or purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadChange {
    /// These rows changed (none when nothing matched), and one action row each was recorded.
    Done(Vec<ActedRow>),
    /// Nothing changed: rows named by id that are not dead, with their status (`None`: no such
    /// row).
    NotDead(Vec<(i64, Option<String>)>),
}
