//! Hostile handlers against the boundary between a handler and the host (issue 12): each attack
//! of the `hostile` test component ends with the outcome and reason the host promises, the
//! host's memory stays bounded (VmRSS of this process, which runs the host), and the attacked
//! service's next good event is still consumed.

use crate::support::{Harness, Setup, component};
use serde_json::json;
use std::time::Instant;

const TABLE: &str = "hostile_outbox_messages";

/// A service `hostile` with the attack route (tight budgets, a 1 s deadline) and a good route
/// (the probe component) whose events must keep flowing behind an attack.
fn routes() -> String {
    format!(
        r#"
[services.hostile]

[[routes]]
event_type = "hostile.run"
service = "hostile"
component = "{hostile}"
limits = {{ deadline_ms = 1000, max_state_writes = 100, max_state_bytes = 262144, max_emit_bytes = 200000, max_value_bytes = 65536 }}
emits = ["sink.note"]

[[routes]]
event_type = "hostile.ping"
service = "hostile"
component = "{hostile}"
limits = {{ max_hops = 3 }}
emits = ["hostile.ping"]

[[routes]]
event_type = "hostile.good"
service = "hostile"
component = "{probe}"
"#,
        hostile = component("hostile").display(),
        probe = component("probe").display(),
    )
}

/// Resident memory of this process (the host runs in it), KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Growth of this process's resident memory an attack may cause: the whole test binary's
/// share, far below the gigabytes an unbounded host buffer reached before the budgets.
const RSS_BOUND_KIB: u64 = 512 * 1024;

/// Runs one attack to its final row; asserts bounded memory and that the service's next good
/// event is consumed after it. Returns (status, last_error).
async fn attack(h: &Harness, attack: &str, arg: &str) -> (String, String) {
    let before = rss_kib();
    let id = h
        .publish("hostile.run", json!({"attack": attack, "arg": arg}))
        .await;
    let good = h
        .publish("hostile.good", json!({"set": {"after": attack}}))
        .await;
    let row = h.wait_final(TABLE, id).await;
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < RSS_BOUND_KIB,
        "{attack}: host RSS grew by {grown} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    assert_eq!(
        h.wait_final(TABLE, good).await.status,
        "consumed",
        "{attack}: the service's next good event was not consumed"
    );
    assert_eq!(h.state("hostile", "after").await.as_deref(), Some(attack));
    (row.status, row.last_error.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_write_loop_on_one_key_hits_its_budget_not_the_hosts_memory() {
    let mut h = Harness::start_with(Setup::SQLITE_EMBEDDED, &routes()).await;
    let (status, err) = attack(&h, "state-flood", "").await;
    assert_eq!(status, "dead");
    // The component's first write is its "hostile-was-here" marker: 1 + 99 = the budget of 100.
    assert!(
        err.contains("state write 99 refused: budget exceeded: limits.max_state_writes"),
        "{err}"
    );
    assert_eq!(
        h.state("hostile", "same-key").await,
        None,
        "a dead invocation writes nothing"
    );
    let (_, err) = attack(&h, "state-bytes", "").await;
    assert!(
        err.contains("state write 4 refused: budget exceeded: limits.max_state_bytes"),
        "{err}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_are_bounded_in_bytes_as_well_as_in_count() {
    let mut h = Harness::start_with(Setup::SQLITE_EMBEDDED, &routes()).await;
    let (status, err) = attack(&h, "emit-bytes", "sink.note").await;
    assert_eq!(status, "dead");
    assert!(
        err.contains("emit 3 refused: budget exceeded: limits.max_emit_bytes"),
        "{err}"
    );
    assert!(h.rows("sink_outbox_messages").await.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_blocked_in_wasi_sleep_or_poll_ends_at_its_deadline_and_the_service_goes_on() {
    let mut h = Harness::start_with(Setup::SQLITE_EMBEDDED, &routes()).await;
    for blocking in ["sleep", "poll"] {
        let started = Instant::now();
        let (status, err) = attack(&h, blocking, "").await;
        // Three attempts (max_attempts = 3) of at most the 1 s deadline each, not 3 × 30 s.
        assert_eq!(status, "dead", "{blocking}");
        assert!(
            err.contains("deadline exceeded after 1000 ms"),
            "{blocking}: {err}"
        );
        println!("{blocking}: dead after {:?}", started.elapsed());
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_longer_than_2000_bytes_is_cut_where_it_enters_the_host() {
    let mut h = Harness::start_with(Setup::SQLITE_EMBEDDED, &routes()).await;
    // The probe's `dead` with a 100 KiB reason.
    let id = h
        .publish(
            "hostile.good",
            json!({"action": "dead", "reason": "r".repeat(100_000)}),
        )
        .await;
    let row = h.wait_final(TABLE, id).await;
    assert_eq!(row.status, "dead");
    assert_eq!(row.last_error.unwrap().len(), 2000);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_of_a_type_the_route_does_not_list_is_refused_naming_the_grant() {
    let mut h = Harness::start_with(Setup::SQLITE_EMBEDDED, &routes()).await;
    // task.record.requested is routed (to another service) but not in hostile.run's emits.
    let (status, err) = attack(&h, "emit-flood", "task.record.requested").await;
    assert_eq!(status, "dead");
    assert!(
        err.contains(
            "emit 0 refused: this route (hostile.run) may not emit \"task.record.requested\""
        ) && err.contains("add it to the route's emits"),
        "{err}"
    );
    assert!(
        h.rows("task_outbox_messages").await.is_empty(),
        "nothing reached the victim"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_emits_stops_at_max_hops() {
    let mut h = Harness::start_with(Setup::SQLITE_EMBEDDED, &routes()).await;
    let first = h
        .publish(
            "hostile.ping",
            json!({"attack": "ping", "arg": "hostile.ping"}),
        )
        .await;
    // Depths 0, 1, 2 and 3 exist; the event at depth 3 may not emit a fourth hop.
    let last = crate::support::eventually("the chain to end", crate::support::WAIT, || async {
        let rows: Vec<_> = h
            .rows(TABLE)
            .await
            .into_iter()
            .filter(|r| r.biz_type == "hostile.ping")
            .collect();
        match rows.iter().find(|r| r.status == "dead") {
            Some(dead) => Ok((rows.len(), dead.clone())),
            None => Err(rows.len()),
        }
    })
    .await;
    let (count, dead) = last;
    assert_eq!(count, 4, "a producer's event and three hops");
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or("")
            .contains("ping refused: hop limit")
            && dead
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("limits.max_hops is 3"),
        "{dead:?}"
    );
    assert_eq!(h.wait_final(TABLE, first).await.status, "consumed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_cannot_be_read_is_a_failed_attempt_and_the_relay_lives_on() {
    let mut h = Harness::start_with(Setup::SQLITE_EMBEDDED, &routes()).await;
    let good = h.publish("hostile.good", json!({"set": {"k": "1"}})).await;
    assert_eq!(h.wait_final(TABLE, good).await.status, "consumed");
    // A row another program wrote with a payload that is not UTF-8, due now, one attempt.
    h.db.exec(&format!(
        "INSERT INTO {TABLE} (biz_type, service_name, topic, message_key, payload, status, \
         retry_count, max_retry, next_retry_at, created_at, updated_at) \
         SELECT biz_type, service_name, topic, message_key, CAST(X'7B22FF' AS TEXT), 'pending', \
         0, 1, next_retry_at, created_at, updated_at FROM {TABLE} WHERE id = {good}"
    ))
    .await;
    let bad = h.db.scalar(&format!("SELECT MAX(id) FROM {TABLE}")).await;
    let row = crate::support::eventually(
        "the unreadable row to end",
        crate::support::WAIT,
        || async {
            let row =
                h.db.text(&format!(
                    "SELECT status || ' ' || COALESCE(last_error, '') FROM {TABLE} WHERE id = {bad}"
                ))
                .await;
            if row.starts_with("dead") {
                Ok(row)
            } else {
                Err(row)
            }
        },
    )
    .await;
    assert!(row.contains("column payload cannot be read"), "{row}");
    // The relay did not die with it: the next event flows, and nothing had to restart.
    let after = h.publish("hostile.good", json!({"set": {"k": "2"}})).await;
    assert_eq!(h.wait_final(TABLE, after).await.status, "consumed");
    assert_eq!(h.running().status().readiness(), Ok(()));
    h.stop().await;
}
