//! Per-host counters of what the engine has done, read through [`Running::counters`]: the
//! invocations started and finished per event type, the consume transactions that failed per
//! service, and the changed component files the hot reloader has checked.
//!
//! They exist so a caller (a test above all) can wait on "this happened N times" and assert
//! that something did *not* happen by reading a counter that would have moved, instead of
//! watching the clock. They belong to one started host (tests run many hosts in one process),
//! count from zero at start, and never leave the process: logs and metrics are the typed
//! events' job (`telemetry`).
//!
//! [`Running::counters`]: super::Running::counters

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one running host has done since it started.
#[derive(Debug, Default)]
pub struct Counters {
    invocations_started: Keyed,
    invocations_finished: Keyed,
    batch_commits_failed: Keyed,
    reload_checks: AtomicU64,
}

impl Counters {
    /// Component invocations of `event_type` that have started (one per attempt).
    pub fn invocations_started(&self, event_type: &str) -> u64 {
        self.invocations_started.get(event_type)
    }

    /// Component invocations of `event_type` that have returned an outcome (ack, retry or
    /// dead, a trap or limit included). Started minus finished is what is in flight.
    pub fn invocations_finished(&self, event_type: &str) -> u64 {
        self.invocations_finished.get(event_type)
    }

    /// Consume transactions of `service` (a batch's outcomes and effects) that failed and
    /// rolled back; the consumer applies the same batch again.
    pub fn batch_commits_failed(&self, service: &str) -> u64 {
        self.batch_commits_failed.get(service)
    }

    /// Changed files in watched component directories that the hot reloader has checked
    /// (after their debounce), whether or not a new version was swapped in.
    pub fn reload_checks(&self) -> u64 {
        self.reload_checks.load(Ordering::Relaxed)
    }

    pub(super) fn invocation_started(&self, event_type: &str) {
        self.invocations_started.add(event_type);
    }

    pub(super) fn invocation_finished(&self, event_type: &str) {
        self.invocations_finished.add(event_type);
    }

    pub(super) fn batch_commit_failed(&self, service: &str) {
        self.batch_commits_failed.add(service);
    }

    pub(super) fn reload_checked(&self) {
        self.reload_checks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts by name. Names are few (event types, services): after the first count of a name
/// only the read lock is taken.
#[derive(Debug, Default)]
struct Keyed(RwLock<HashMap<String, AtomicU64>>);

impl Keyed {
    fn add(&self, key: &str) {
        let read = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = read.get(key) {
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        drop(read);
        let mut write = self.0.write().unwrap_or_else(|p| p.into_inner());
        write
            .entry(key.to_owned())
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, key: &str) -> u64 {
        let read = self.0.read().unwrap_or_else(|p| p.into_inner());
        read.get(key).map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_kept_per_name_and_start_at_zero() {
        let c = Counters::default();
        assert_eq!(c.invocations_started("a.b"), 0);
        c.invocation_started("a.b");
        c.invocation_started("a.b");
        c.invocation_started("c.d");
        c.invocation_finished("a.b");
        assert_eq!(c.invocations_started("a.b"), 2);
        assert_eq!(c.invocations_started("c.d"), 1);
        assert_eq!(c.invocations_finished("a.b"), 1);
        assert_eq!(c.invocations_finished("c.d"), 0);
        assert_eq!(c.batch_commits_failed("a"), 0);
        c.reload_checked();
        assert_eq!(c.reload_checks(), 1);
    }
}
