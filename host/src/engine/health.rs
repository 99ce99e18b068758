//! Repeat offenders: a route whose every invocation fails (trap, deadline, limit, `retry`) for
//! longer than `limits.unhealthy_after_ms` is reported unhealthy: a log line, a metric and the
//! admin endpoint's `/routes`. Reporting only: the route keeps running and other routes are
//! never affected. A `dead` outcome is the handler's decision about a payload, not a failure.
//!
//! It also watches invocations in flight: one still running past its deadline (plus
//! [`OVERDUE_GRACE`]) means the deadline did not hold, e.g. a host call that blocks without
//! yielding; the route's view shows how long, and `/readyz` reports it.

use crate::telemetry::{RouteRecovered, RouteUnhealthy};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How long past its deadline an invocation may take to be stopped and report its outcome
/// before it counts as overdue (the epoch ticks every 10 ms).
pub const OVERDUE_GRACE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteHealthView {
    /// Failed invocations in a row.
    pub consecutive_failures: u64,
    /// When the current run of failures began (unix ms).
    pub failing_since_ms: Option<u64>,
    /// Whether the run has lasted longer than the window.
    pub unhealthy: bool,
    pub last_failure: Option<String>,
    /// How long the route's invocation in flight is past its deadline, if it is.
    #[serde(default)]
    pub overdue_ms: Option<u64>,
}

pub struct RouteHealth {
    /// Milliseconds; a config reload may change it.
    window_ms: AtomicU64,
    routes: Mutex<HashMap<String, (RouteHealthView, Option<SystemTime>)>>,
    /// The invocation of each route in flight, if one is: (started, deadline). A route belongs
    /// to one service, whose one consumer runs one invocation at a time, so one slot per route
    /// is enough (and is reused: no allocation per invocation after the route's first).
    in_flight: Mutex<HashMap<String, Option<(Instant, Duration)>>>,
}

/// An invocation in flight, registered by [`RouteHealth::begin`]; dropping it ends it.
pub struct InFlight<'a> {
    health: &'a RouteHealth,
    event_type: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .health
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = in_flight.get_mut(self.event_type) {
            *slot = None;
        }
    }
}

impl RouteHealth {
    pub fn new(window: Duration) -> RouteHealth {
        RouteHealth {
            window_ms: AtomicU64::new(window.as_millis() as u64),
            routes: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Registers an invocation of `event_type` with its deadline until the guard is dropped.
    pub fn begin<'a>(&'a self, event_type: &'a str, deadline: Duration) -> InFlight<'a> {
        let started = Some((Instant::now(), deadline));
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        match in_flight.get_mut(event_type) {
            Some(slot) => *slot = started,
            None => {
                in_flight.insert(event_type.to_owned(), started);
            }
        }
        InFlight {
            health: self,
            event_type,
        }
    }

    /// How far past its deadline (and the grace) the invocation of `event_type` in flight is
    /// at `now`, if it is.
    fn overdue_at(&self, event_type: &str, now: Instant) -> Option<Duration> {
        let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let (started, deadline) = (*in_flight.get(event_type)?)?;
        now.duration_since(started)
            .checked_sub(deadline + OVERDUE_GRACE)
    }

    /// Records one invocation of `event_type`'s route: `failure` is the reason, `None` a success.
    pub fn record(&self, service: &str, event_type: &str, failure: Option<&str>) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        // The name is copied only the first time: `entry` alone would copy it on every event.
        let (view, since) = if let Some(known) = routes.get_mut(event_type) {
            known
        } else {
            routes.entry(event_type.to_owned()).or_default()
        };
        match failure {
            None => {
                if view.unhealthy {
                    RouteRecovered {
                        service,
                        event_type,
                    }
                    .emit();
                }
                *view = RouteHealthView::default();
                *since = None;
            }
            Some(reason) => {
                let now = SystemTime::now();
                let start = *since.get_or_insert(now);
                view.consecutive_failures += 1;
                view.failing_since_ms = start
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64);
                view.last_failure = Some(reason.to_owned());
                let failing_for = now.duration_since(start).unwrap_or_default();
                if !view.unhealthy && failing_for >= self.window() {
                    view.unhealthy = true;
                    RouteUnhealthy {
                        service,
                        event_type,
                        failures: view.consecutive_failures,
                        last_reason: reason,
                    }
                    .emit();
                }
            }
        }
    }

    /// How long a route must fail every invocation before it is reported unhealthy.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.load(Ordering::Relaxed))
    }

    /// Applies a reloaded `limits.unhealthy_after_ms`.
    pub fn set_window(&self, window: Duration) {
        self.window_ms
            .store(window.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn view(&self, event_type: &str) -> RouteHealthView {
        let mut view = {
            let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            routes
                .get(event_type)
                .map(|(v, _)| v.clone())
                .unwrap_or_default()
        };
        view.overdue_ms = self
            .overdue_at(event_type, Instant::now())
            .map(|d| d.as_millis() as u64);
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_still_running_past_its_deadline_is_overdue_until_it_ends() {
        let health = RouteHealth::new(Duration::from_secs(60));
        let guard = health.begin("t", Duration::from_millis(100));
        let start = Instant::now();
        assert_eq!(health.overdue_at("t", start), None);
        let later = start + Duration::from_millis(100) + OVERDUE_GRACE + Duration::from_millis(50);
        let overdue = health.overdue_at("t", later).unwrap();
        assert!(overdue >= Duration::from_millis(40), "{overdue:?}");
        assert_eq!(health.overdue_at("other", later), None);
        drop(guard);
        assert_eq!(health.overdue_at("t", later), None);
    }

    #[test]
    fn a_route_failing_for_the_whole_window_is_unhealthy_until_it_succeeds() {
        let health = RouteHealth::new(Duration::ZERO);
        health.record("s", "t", Some("trap: unreachable"));
        let v = health.view("t");
        assert!(v.unhealthy && v.consecutive_failures == 1);
        health.record("s", "t", None);
        assert!(!health.view("t").unhealthy);
    }

    #[test]
    fn failures_shorter_than_the_window_are_not_reported() {
        let health = RouteHealth::new(Duration::from_secs(3600));
        for _ in 0..100 {
            health.record("s", "t", Some("deadline exceeded"));
        }
        let v = health.view("t");
        assert!(!v.unhealthy);
        assert_eq!(v.consecutive_failures, 100);
    }
}
