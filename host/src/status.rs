//! `switchyard status`: one report, printed as the human table or as JSON for scripts
//! (`--json`), so both always say the same thing.
//!
//! Per service (from the database, read-only): its mode and names, counts by status, foreign
//! rows (not yet final, of types it does not own), the oldest pending row's age. Per route
//! (from a running host's admin endpoint, when `[admin] listen` is set and a host answers):
//! component version, load time, last reload error, health. It never changes the database
//! (no DDL: `migrate` is the one command that does) or the host.

use crate::engine::{RouteStatus, Switchyard};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// How long `status` waits for a running host's admin endpoint before reporting it
/// unreachable.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The statuses every service's `counts` lists, even at 0, so a script never has to default
/// a missing key.
pub const STATUSES: [&str; 4] = ["pending", "published", "consumed", "dead"];

/// What `switchyard status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When the counts were read, RFC 3339 UTC.
    pub at: String,
    pub services: Vec<ServiceReport>,
    /// The running host's view; `None` when `[admin] listen` is not set.
    pub admin: Option<AdminReport>,
}

/// One service's rows.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub service: String,
    /// `full`, `relay`, `consume` or `external`.
    pub mode: String,
    pub table: String,
    pub topic: String,
    pub group: String,
    /// Rows by status: always `pending`, `published`, `consumed` and `dead`, plus any other
    /// status found in the table.
    pub counts: BTreeMap<String, i64>,
    /// Rows not yet final whose event type another service owns or no route names.
    pub foreign: i64,
    /// Seconds since the earliest pending row became due (0 when it is not due yet); `null`
    /// when nothing is pending.
    pub oldest_pending_age_seconds: Option<f64>,
}

impl ServiceReport {
    /// Rows not yet final (`pending` + `published`): 0 once everything was consumed or died.
    pub fn open(&self) -> i64 {
        self.count("pending") + self.count("published")
    }

    pub fn count(&self, status: &str) -> i64 {
        self.counts.get(status).copied().unwrap_or(0)
    }
}

/// What the running host's admin endpoint said.
#[derive(Debug, Clone, Serialize)]
pub struct AdminReport {
    /// e.g. `http://127.0.0.1:9898`.
    pub url: String,
    /// Whether a host answered.
    pub reachable: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// Each route as `/routes` returns it; empty when unreachable.
    pub routes: Vec<RouteStatus>,
}

/// Reads the report: the database's counts, then the admin endpoint if configured.
///
/// # Errors
/// A database error (a missing table included: the caller explains `migrate`).
pub async fn gather(host: &Switchyard) -> anyhow::Result<StatusReport> {
    let now = crate::store::now();
    let mut services = Vec::new();
    for (service, status) in host.status().await? {
        let mut counts: BTreeMap<String, i64> =
            STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect();
        counts.extend(status.counts);
        services.push(ServiceReport {
            service: service.name.clone(),
            mode: service.mode.as_str().to_owned(),
            table: service.table.clone(),
            topic: service.topic.clone(),
            group: service.group.clone(),
            counts,
            foreign: status.foreign,
            oldest_pending_age_seconds: status
                .oldest_pending
                .map(|t| (now - t).as_seconds_f64().max(0.0)),
        });
    }
    let admin = match host.config().admin.listen {
        Some(addr) => Some(fetch_routes(addr).await),
        None => None,
    };
    Ok(StatusReport {
        at: now
            .assume_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        services,
        admin,
    })
}

/// Asks a running host's admin endpoint for its routes.
async fn fetch_routes(addr: std::net::SocketAddr) -> AdminReport {
    let url = format!("http://{addr}");
    let routes_url = format!("{url}/routes");
    let fetched = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<RouteStatus>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(ADMIN_TIMEOUT))
            .build()
            .into();
        let body = agent.get(&routes_url).call()?.body_mut().read_to_string()?;
        Ok(serde_json::from_str(&body)?)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    match fetched {
        Ok(routes) => AdminReport {
            url,
            reachable: true,
            error: None,
            routes,
        },
        Err(e) => AdminReport {
            url,
            reachable: false,
            error: Some(format!("{e:#}")),
            routes: Vec::new(),
        },
    }
}

impl StatusReport {
    /// The human table `switchyard status` prints by default.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9}  oldest pending",
            "service", "mode", "pending", "published", "consumed", "dead", "foreign"
        );
        for s in &self.services {
            let oldest = match s.oldest_pending_age_seconds {
                Some(age) => format!("{age:.1}s"),
                None => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9}  {oldest}",
                s.service,
                s.mode,
                s.count("pending"),
                s.count("published"),
                s.count("consumed"),
                s.count("dead"),
                s.foreign
            );
        }
        out.push_str(
            "(foreign: rows not yet final of event types another service owns or no route \
             names; the service's relay moves the routed ones to their owners' tables)\n",
        );
        if let Some(admin) = &self.admin {
            out.push_str(&admin.human());
        }
        out
    }
}

impl AdminReport {
    fn human(&self) -> String {
        let mut out = String::new();
        if !self.reachable {
            let _ = writeln!(
                out,
                "\nroutes: no running host answers at {} ({})",
                self.url.trim_start_matches("http://"),
                self.error.as_deref().unwrap_or("-")
            );
            return out;
        }
        let _ = writeln!(
            out,
            "\n{:<36} {:<16} {:<14} {:<10} {:<9} last reload error",
            "route", "service", "version", "loaded", "health"
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for r in &self.routes {
            let health = if r.health.unhealthy {
                "UNHEALTHY"
            } else if r.health.consecutive_failures > 0 {
                "failing"
            } else {
                "ok"
            };
            let _ = writeln!(
                out,
                "{:<36} {:<16} {:<14} {:<10} {:<9} {}",
                r.event_type,
                r.service,
                &r.version[..12.min(r.version.len())],
                format!(
                    "{:.0}s ago",
                    now_ms.saturating_sub(r.loaded_at_ms) as f64 / 1000.0
                ),
                health,
                r.last_reload_error.as_deref().unwrap_or("-")
            );
        }
        out
    }
}
