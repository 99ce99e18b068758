//! Retention (issue 16): the host deletes `consumed` rows older than `consumed_max_age`, in
//! bounded batches, copying them to `<table>_archive` where asked; young consumed, pending,
//! published and dead rows stay. A cleanup transaction held open never blocks a claim, and a
//! second host's round skips the rows it holds. An archive table `migrate` did not create
//! refuses the start.

use crate::support::{Backend, Harness, Setup, TransportKind, WAIT, config_text, eventually};
use crate::testdb::fresh;
use serde_json::json;
use switchyard::store::{earlier, now};

const PROBE: &str = "probe_outbox_messages";
const SINK: &str = "sink_outbox_messages";
/// An event type no route names: the relay never claims these rows, so they keep the status
/// the test gives them.
const UNROUTED: &str = "retention.test";
const OLD: &str = "'2000-01-01 00:00:00'";
const YOUNG: &str = "'2999-01-01 00:00:00'";

crate::backend_suite!(
    old_consumed_rows_go_to_the_archive_or_away_and_every_other_row_stays,
    a_round_deletes_at_most_its_batch_and_only_consumed_rows,
);
/// Servers only: a SQLite cleanup holds the file's one write lock, as every writer does.
mod servers {
    use super::a_claim_is_not_blocked_while_a_cleanup_transaction_is_open;
    crate::backend_suite!(servers: a_claim_is_not_blocked_while_a_cleanup_transaction_is_open);
}

/// Inserts a row of [`UNROUTED`] with `status` and the two times (SQL literals or `NULL`).
async fn row(h: &Harness, table: &str, status: &str, consumed_at: &str, updated_at: &str) -> i64 {
    let id = h.db.insert_raw(table, UNROUTED, "{}", 3).await;
    h.db.exec(&format!(
        "UPDATE {table} SET status = '{status}', consumed_at = {consumed_at}, \
         updated_at = {updated_at} WHERE id = {id}"
    ))
    .await;
    id
}

/// The rows every test starts with; returns (the ids that must go, the ids that must stay).
async fn mixed_rows(h: &Harness, table: &str, old: usize) -> (Vec<i64>, Vec<i64>) {
    let mut go = Vec::new();
    for _ in 0..old {
        go.push(row(h, table, "consumed", OLD, OLD).await);
    }
    // A legacy row consumed by a program that left `consumed_at` empty: its `updated_at`.
    go.push(row(h, table, "consumed", "NULL", OLD).await);
    let stay = vec![
        row(h, table, "consumed", YOUNG, YOUNG).await,
        row(h, table, "consumed", "NULL", "NULL").await,
        row(h, table, "dead", OLD, OLD).await,
        row(h, table, "pending", "NULL", OLD).await,
        row(h, table, "published", "NULL", OLD).await,
    ];
    (go, stay)
}

fn ids_in(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn old_consumed_rows_go_to_the_archive_or_away_and_every_other_row_stays(backend: Backend) {
    // The running host's retention loops delete while the rows are written.
    let mut h = Harness::start_with(
        Setup {
            backend,
            transport: TransportKind::Embedded,
        },
        "[retention]\nconsumed_max_age = \"1h\"\nbatch_size = 3\ninterval = \"50ms\"\n\
         [services.sink.retention]\narchive = true\n",
    )
    .await;
    let (probe_go, probe_stay) = mixed_rows(&h, PROBE, 7).await;
    let (sink_go, sink_stay) = mixed_rows(&h, SINK, 7).await;
    for (table, go) in [(PROBE, &probe_go), (SINK, &sink_go)] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE id IN ({})", ids_in(go));
        eventually(
            format!("old consumed rows of {table} deleted"),
            WAIT,
            || async {
                let left = h.db.scalar(&sql).await;
                if left == 0 { Ok(()) } else { Err(left) }
            },
        )
        .await;
    }
    let mut expect_probe = probe_stay.clone();
    expect_probe.sort();
    assert_eq!(
        h.db.ids(PROBE).await,
        expect_probe,
        "only old consumed rows went"
    );
    let mut expect_sink = sink_stay.clone();
    expect_sink.sort();
    assert_eq!(h.db.ids(SINK).await, expect_sink);
    // The sink's rows were archived whole, once each; the probe has no archive.
    assert_eq!(h.db.ids(&format!("{SINK}_archive")).await, sink_go);
    assert_eq!(
        h.db.scalar(&format!(
            "SELECT COUNT(*) FROM {SINK}_archive WHERE status = 'consumed' AND biz_type = '{UNROUTED}'"
        ))
        .await,
        sink_go.len() as i64
    );
    // The host still relays and consumes its own events beside retention.
    let id = h.publish("probe.run", json!({"set": {"a": "1"}})).await;
    assert_eq!(h.wait_final(PROBE, id).await.status, "consumed");
    h.stop().await;
}

async fn a_round_deletes_at_most_its_batch_and_only_consumed_rows(backend: Backend) {
    // Retention off in the file: only the calls below delete.
    let mut h = Harness::start(Setup {
        backend,
        transport: TransportKind::Embedded,
    })
    .await;
    let (go, stay) = mixed_rows(&h, PROBE, 6).await;
    let store = h.host.store().clone();
    let cutoff = earlier(now(), std::time::Duration::from_secs(3600));
    let mut rounds = Vec::new();
    loop {
        let n = store
            .delete_consumed(PROBE, cutoff, 3, false)
            .await
            .unwrap();
        rounds.push(n);
        if n == 0 {
            break;
        }
    }
    assert_eq!(rounds, [3, 3, 1, 0], "7 old rows in batches of 3");
    let mut left = stay.clone();
    left.sort();
    assert_eq!(h.db.ids(PROBE).await, left);
    assert!(go.iter().all(|id| !left.contains(id)));
    // Archiving into a table `migrate` did not create fails and deletes nothing.
    let young = row(&h, PROBE, "consumed", OLD, OLD).await;
    assert!(store.delete_consumed(PROBE, cutoff, 3, true).await.is_err());
    assert!(h.db.ids(PROBE).await.contains(&young));
    h.stop().await;
}

async fn a_claim_is_not_blocked_while_a_cleanup_transaction_is_open(backend: Backend) {
    let mut h = Harness::start(Setup {
        backend,
        transport: TransportKind::Embedded,
    })
    .await;
    let (go, _) = mixed_rows(&h, PROBE, 20).await;
    let store = h.host.store().clone();
    let cutoff = earlier(now(), std::time::Duration::from_secs(3600));
    // A cleanup transaction, the store's statements, held open by the test.
    let lock = format!(
        "SELECT id, status FROM {PROBE} WHERE id IN ({}) ORDER BY id FOR UPDATE SKIP LOCKED",
        ids_in(&go)
    );
    let order = match backend {
        Backend::MariaDb => format!(" ORDER BY id LIMIT {}", go.len()),
        _ => String::new(),
    };
    let delete = format!("DELETE FROM {PROBE} WHERE id IN ({}){order}", ids_in(&go));
    let held = h.db.hold_open(&[&lock, &delete]).await;
    // The relay claims, publishes, and the consumer consumes a new row meanwhile.
    let id = h.publish("probe.run", json!({"set": {"a": "1"}})).await;
    assert_eq!(h.wait_final(PROBE, id).await.status, "consumed");
    // Another host's round skips the held rows instead of waiting for them.
    let skipped = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.delete_consumed(PROBE, cutoff, 100, false),
    )
    .await
    .expect("a second round does not wait for the held rows")
    .unwrap();
    assert_eq!(skipped, 0);
    held.commit().await;
    let sql = format!("SELECT COUNT(*) FROM {PROBE} WHERE id IN ({})", ids_in(&go));
    assert_eq!(h.db.scalar(&sql).await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_archiving_into_a_missing_table_refuses_to_start_saying_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _db) = fresh(Backend::Sqlite, dir.path()).await;
    let text = config_text(
        &url,
        "[retention]\nconsumed_max_age = \"7d\"\n[services.sink.retention]\narchive = true\n",
    );
    // `start_refused` migrates the outbox tables as a start does, never the archives.
    let err =
        crate::support::start_refused(&text, dir.path(), "the archive table is missing").await;
    assert!(
        err.contains(
            "service sink: retention.archive is on but its archive table \
                      sink_outbox_messages_archive is missing"
        ) && err.contains("run `switchyard migrate` first"),
        "{err}"
    );
}
