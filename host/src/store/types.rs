//! Plain data passed between the engine and a store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Wall-clock UTC instant, stored as SmartFlow's `datetime(3)`.
pub type Timestamp = time::PrimitiveDateTime;

/// The current UTC time, truncated to milliseconds like `datetime(3)`.
pub fn now() -> Timestamp {
    let t = time::OffsetDateTime::now_utc();
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    time::PrimitiveDateTime::new(t.date(), t.time())
}

/// `t + d`, saturating at the end of time.
pub fn later(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
        .unwrap_or(t)
}

/// `t - d`.
pub fn earlier(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(time::Duration::try_from(d).unwrap_or(time::Duration::ZERO))
        .unwrap_or(t)
}

/// SmartFlow's row states. `consumed` and `dead` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pending,
    Published,
    Consumed,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Published => "published",
            Status::Consumed => "consumed",
            Status::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "published" => Status::Published,
            "consumed" => Status::Consumed,
            "dead" => Status::Dead,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, Status::Consumed | Status::Dead)
    }
}

/// A row's place in the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowState {
    pub status: Status,
    pub retry_count: i32,
    /// Emits between this row and its producer's event (0: written by a producer).
    pub chain_depth: i32,
}

/// What a relay asks [`Store::claim_due`](super::Store::claim_due) for.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// Rows due at or before this time.
    pub now: Timestamp,
    /// At most this many rows.
    pub limit: u32,
    /// Hold back a row whose `message_key` has an earlier row waiting for a retry.
    pub hold_keys: bool,
    /// Only rows of these event types (`biz_type`); a row of any other type stays `pending`
    /// for a host that routes it. Each must be an event type the config validated
    /// ([`crate::config::NameKind::EventType`]): the claim lists them as SQL literals.
    pub types: &'a [String],
}

/// A claimed row moved to the table of the service that owns its event type, in one
/// transaction ([`Store::relocate`](super::Store::relocate)).
#[derive(Debug, Clone)]
pub struct Relocation {
    /// The claimed (`published`) row in the table it is moved out of.
    pub id: i64,
    /// The row written `pending` in its owner's table.
    pub row: NewRow,
}

/// A row as the relay reads it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub biz_type: String,
    pub service_name: String,
    pub message_key: String,
    /// SmartFlow's wrapper JSON `{event_id?, event_type, event_version?, aggregate_id?, payload}`.
    pub payload: String,
    pub retry_count: i32,
    /// The row's `traceparent` column: the trace its message's header carries on.
    pub traceparent: Option<String>,
    /// Why a column of the row could not be read, if one could not: the relay then records a
    /// failed attempt with this reason instead of publishing.
    pub unreadable: Option<String>,
}

/// A row to insert as `pending`.
#[derive(Debug, Clone)]
pub struct NewRow {
    pub table: String,
    pub biz_type: String,
    pub service_name: String,
    pub topic: String,
    pub message_key: String,
    pub payload: String,
    /// Attempts before the row goes `dead` (the config's `[retry] max_attempts`), stored in
    /// SmartFlow's `max_retry` column.
    pub max_attempts: i32,
    /// Emits between this row and its producer's event (0: written by a producer); stored in
    /// Switchyard's `chain_depth` column so `limits.max_hops` can stop emit loops.
    pub chain_depth: i32,
    /// The W3C trace context the row continues (the enqueue's or the emitting invocation's
    /// span), stored in the nullable `traceparent` column ([`crate::traces`]).
    pub traceparent: Option<String>,
}

/// SmartFlow's failed-attempt policy: `n = retry_count + 1`; `n >= max_retry` (the row's
/// `max_attempts`) → dead, else pending again after `min(base * 2^(n-1), max)`, or later when
/// the handler asked for a longer delay ([`Backoff::delay_with`]). Each service has its own
/// (`[retry]` with its `[services.X.retry]` overrides).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before attempt `n + 1`, after `n` failures (n >= 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }

    /// Delay before attempt `n + 1` when the handler's `retry` asked for `hint` (its
    /// `delay-ms`): a floor, never sooner than [`Backoff::delay`] (the contract's promise), and
    /// never later than `max`, so a handler cannot park a row beyond the service's own ceiling.
    pub fn delay_with(&self, failures: u32, hint: Option<Duration>) -> Duration {
        let computed = self.delay(failures);
        hint.map_or(computed, |h| computed.max(h.min(self.max)))
    }
}

/// What the store commits for an acked row, in the same transaction as its consumed mark.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    /// `(key, Some(value))` sets, `(key, None)` deletes, in call order; within a batch the
    /// last write of a key wins.
    pub state_writes: Vec<(String, Option<Vec<u8>>)>,
    /// Rows to insert as `pending`, in their owners' tables (the handler's emits).
    pub new_rows: Vec<NewRow>,
}

/// What happened to one row in a consumed batch.
#[derive(Debug, Clone)]
pub enum RowOutcome {
    /// Acked: mark consumed with the handler's content hash, apply the effects.
    Consumed { version: Arc<str>, effects: Effects },
    /// A failed attempt (handler `retry`, trap, deadline): `pending` after the backoff, or
    /// `dead` once the row's attempts are used up.
    Retry {
        reason: String,
        /// The handler's `delay-ms` hint, if it gave one ([`Backoff::delay_with`]).
        delay: Option<Duration>,
    },
    /// Permanently failed.
    Dead { reason: String },
}

/// The outcomes of one consumed batch of one service, in delivery order: the input of
/// [`Store::apply`](super::Store::apply).
#[derive(Debug, Clone)]
pub struct BatchOutcomes {
    pub service: String,
    pub rows: Vec<(i64, RowOutcome)>,
}

/// What `apply` did, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub consumed: u64,
    pub retried: u64,
    pub dead: u64,
    /// Rows already final (or absent) inside the transaction: nothing applied.
    pub skipped: u64,
    /// Emitted rows inserted, per table.
    pub emitted: BTreeMap<String, u64>,
}

/// Counts by status and the age of the oldest due row.
#[derive(Debug, Clone, Default)]
pub struct TableStatus {
    pub counts: BTreeMap<String, i64>,
    pub oldest_pending: Option<Timestamp>,
    /// Rows not yet final whose event type the table's service does not own: a legacy shared
    /// table's backlog, which the service's relay moves to the owners' tables.
    pub foreign: i64,
}

/// A service table's rows not yet consumed, read cheaply (through the status index, never
/// counting `consumed` rows) for the host's periodic backlog sample (`engine/lag.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Rows waiting for the relay (due or backing off).
    pub pending: i64,
    /// Rows published to the transport and not yet consumed (or failed).
    pub published: i64,
    /// Rows that ran out of attempts; they stay until an operator acts.
    pub dead: i64,
    /// When the earliest `pending` row became (or becomes) due: its `next_retry_at`.
    pub oldest_pending: Option<Timestamp>,
}

/// Splits a batch's final state values into upserts and deletes.
pub fn split_writes<'a>(
    writes: &BTreeMap<&'a str, Option<&'a [u8]>>,
) -> (Vec<(&'a str, &'a [u8])>, Vec<&'a str>) {
    let sets = writes
        .iter()
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect();
    let deletes = writes
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    (sets, deletes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_matches_smartflow_sequence() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(32),
        };
        let secs: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 32, 32]);
    }

    #[test]
    fn a_delay_hint_is_a_floor_capped_at_the_ceiling() {
        let b = Backoff {
            base: Duration::from_secs(300),
            max: Duration::from_secs(1800),
        };
        let secs = |n, hint: Option<u64>| b.delay_with(n, hint.map(Duration::from_secs)).as_secs();
        assert_eq!(secs(1, None), 300);
        assert_eq!(secs(1, Some(1)), 300, "never sooner than the backoff");
        assert_eq!(secs(1, Some(600)), 600, "a longer wait is honoured");
        assert_eq!(secs(1, Some(86_400)), 1800, "at most the ceiling");
        assert_eq!(secs(3, Some(600)), 1200);
    }
}
