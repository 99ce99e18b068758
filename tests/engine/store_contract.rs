//! The store contract: what every backend's [`Store`] must do, each clause written once as an
//! `async fn <clause>(store: &dyn Store, db: &TestDb)` and run against SQLite, MariaDB and
//! PostgreSQL by [`store_suite!`] (graphile-worker's `driver_contract` habit). The consume
//! transaction's clauses are in `store_contract/apply.rs`, those of the columns beside the
//! status (`next_retry_at`, `last_error`) in `store_contract/columns.rs`. Each test gets a
//! fresh database; rows are read back with plain SQL ([`TestDb`]), never through the store
//! under test.

mod apply;
mod columns;

use crate::support::Backend;
use crate::testdb::{self, TestDb};
use apply::{
    a_batch_skips_rows_already_final_and_their_effects,
    a_failed_attempt_backs_off_and_the_last_one_is_dead_with_a_cut_reason,
    state_writes_of_a_batch_last_write_wins_and_deletes_delete,
};
use columns::{
    a_handlers_delay_hint_is_a_floor_capped_at_the_backoff_ceiling,
    the_consume_clears_last_error_and_a_publish_keeps_both_columns,
};
use std::sync::Arc;
use std::time::Duration;
use switchyard::store::{
    self, Backoff, BatchOutcomes, Effects, NewRow, RowOutcome, Store, earlier, later, now,
};

const A: &str = "alpha_outbox_messages";
const B: &str = "beta_outbox_messages";
const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(32),
};

/// A fresh database on one backend, migrated with tables [`A`] and [`B`], and its store.
pub struct Fixture {
    _server: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
    _dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub db: TestDb,
}

impl Fixture {
    pub async fn new(backend: Backend) -> Fixture {
        let server = match backend {
            Backend::Sqlite => None,
            _ => Some(testdb::SERVERS.clone().read_owned().await),
        };
        let dir = tempfile::tempdir().unwrap();
        let (url, db) = testdb::fresh(backend, dir.path()).await;
        let store = store::open(&url).await.unwrap();
        store.migrate(&[A.to_owned(), B.to_owned()]).await.unwrap();
        Fixture {
            _server: server,
            _dir: dir,
            store,
            db,
        }
    }

    pub async fn finish(self) {
        drop(self.store);
        self.db.drop_database().await;
    }
}

/// Instantiates each listed `async fn name(store: &dyn Store, db: &TestDb)` once per backend,
/// as `store_contract::<backend>::<name>`.
macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        store_suite!(@backend sqlite, Sqlite, $($name),*);
        store_suite!(@backend mariadb, MariaDb, $($name),*);
        store_suite!(@backend postgres, Postgres, $($name),*);
    };
    (@backend $module:ident, $backend:ident, $($name:ident),*) => {
        mod $module {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   let f = super::Fixture::new($crate::support::Backend::$backend).await;
                   super::$name(&*f.store, &f.db).await;
                   f.finish().await;
               } )*
        }
    };
}

store_suite!(
    claims_due_rows_in_retry_time_then_id_order_and_marks_them_published,
    hold_keys_holds_a_row_behind_an_earlier_row_of_its_key_waiting_for_a_retry,
    a_failed_attempt_backs_off_and_the_last_one_is_dead_with_a_cut_reason,
    a_batch_skips_rows_already_final_and_their_effects,
    visibility_requeue_counts_a_failed_attempt_of_stale_published_rows_only,
    a_row_published_and_never_consumed_ends_dead_at_its_last_attempt,
    requeue_published_hands_rows_back_due_now_without_an_attempt,
    a_claim_takes_only_the_given_event_types,
    relocate_moves_claimed_rows_to_their_owners_table_in_one_transaction,
    insert_returns_each_rows_id_across_tables_and_statements,
    state_writes_of_a_batch_last_write_wins_and_deletes_delete,
    rows_and_state_larger_than_the_servers_packet_are_written_in_several_statements,
    a_handlers_delay_hint_is_a_floor_capped_at_the_backoff_ceiling,
    the_consume_clears_last_error_and_a_publish_keeps_both_columns,
    backlog_counts_rows_not_yet_consumed_and_the_earliest_pending_due_time,
);

fn new_row(table: &str, key: &str, n: usize, max_attempts: i32) -> NewRow {
    NewRow {
        table: table.to_owned(),
        biz_type: "probe.run".into(),
        service_name: "probe".into(),
        topic: "t".into(),
        message_key: key.to_owned(),
        payload: format!("{{\"n\":{n}}}"),
        max_attempts,
        chain_depth: 0,
        traceparent: None,
    }
}

/// The event types the contract's rows are of ([`new_row`]).
const TYPES: &[&str] = &["probe.run"];

/// A claim of [`TYPES`] rows.
async fn claim(
    store: &dyn Store,
    table: &str,
    now: store::Timestamp,
    limit: u32,
    hold_keys: bool,
) -> Vec<store::OutboxRow> {
    let types: Vec<String> = TYPES.iter().map(|t| t.to_string()).collect();
    let claim = store::Claim {
        now,
        limit,
        hold_keys,
        types: &types,
    };
    store.claim_due(table, &claim).await.unwrap()
}

async fn insert_one(store: &dyn Store, table: &str, key: &str, max_attempts: i32) -> i64 {
    store
        .insert(&[new_row(table, key, 0, max_attempts)], now())
        .await
        .unwrap()[0]
}

/// Sets a row's `next_retry_at` with a literal (portable across the three backends).
async fn due_at(db: &TestDb, table: &str, id: i64, at: &str) {
    db.exec(&format!(
        "UPDATE {table} SET next_retry_at = '{at}' WHERE id = {id}"
    ))
    .await;
}

async fn status(db: &TestDb, table: &str, id: i64) -> String {
    db.row(table, id).await.unwrap().status
}

async fn publish_count(db: &TestDb, table: &str, id: i64) -> i64 {
    // A count, because `publish_count` is a 32-bit column and the helper reads 64 bits.
    for n in 0..5 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE id = {id} AND publish_count = {n}");
        if db.scalar(&sql).await == 1 {
            return n;
        }
    }
    panic!("row {id} of {table}: publish_count is not 0..5")
}

fn batch(rows: Vec<(i64, RowOutcome)>) -> BatchOutcomes {
    BatchOutcomes {
        service: "probe".into(),
        rows,
    }
}

fn consumed(state_writes: Vec<(&str, Option<&str>)>, new_rows: Vec<NewRow>) -> RowOutcome {
    RowOutcome::Consumed {
        version: "v1".into(),
        effects: Effects {
            state_writes: state_writes
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.map(|v| v.as_bytes().to_vec())))
                .collect(),
            new_rows,
        },
    }
}

async fn claims_due_rows_in_retry_time_then_id_order_and_marks_them_published(
    store: &dyn Store,
    db: &TestDb,
) {
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(insert_one(store, A, "", 20).await);
    }
    let [late, early1, early2, future] = ids[..] else {
        unreachable!()
    };
    due_at(db, A, late, "2002-01-01 00:00:00").await;
    due_at(db, A, early1, "2001-01-01 00:00:00").await;
    due_at(db, A, early2, "2001-01-01 00:00:00").await;
    due_at(db, A, future, "2999-01-01 00:00:00").await;
    let first = claim(store, A, now(), 2, false).await;
    let got: Vec<i64> = first.iter().map(|r| r.id).collect();
    assert_eq!(
        got,
        [early1, early2],
        "earliest next_retry_at first, ties by id"
    );
    assert_eq!(first[0].payload, "{\"n\":0}");
    assert_eq!(status(db, A, late).await, "pending", "beyond the limit");
    let second = claim(store, A, now(), 10, false).await;
    let got: Vec<i64> = second.iter().map(|r| r.id).collect();
    assert_eq!(got, [late], "a row not yet due is not claimed");
    for id in [early1, early2, late] {
        assert_eq!(status(db, A, id).await, "published");
        assert_eq!(publish_count(db, A, id).await, 1);
    }
    assert_eq!(status(db, A, future).await, "pending");
    assert_eq!(publish_count(db, A, future).await, 0);
    assert!(claim(store, A, now(), 10, false).await.is_empty());
}

async fn hold_keys_holds_a_row_behind_an_earlier_row_of_its_key_waiting_for_a_retry(
    store: &dyn Store,
    db: &TestDb,
) {
    let waiting = insert_one(store, A, "k", 20).await;
    let held = insert_one(store, A, "k", 20).await;
    let other = insert_one(store, A, "other", 20).await;
    let keyless = insert_one(store, A, "", 20).await;
    due_at(db, A, waiting, "2999-01-01 00:00:00").await;
    let got: Vec<i64> = claim(store, A, now(), 10, true)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, [other, keyless], "only key k is held");
    assert_eq!(status(db, A, held).await, "pending");
    let got: Vec<i64> = claim(store, A, now(), 10, false)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, [held], "without hold_keys nothing is held");
    assert_eq!(status(db, A, waiting).await, "pending");
}
async fn visibility_requeue_counts_a_failed_attempt_of_stale_published_rows_only(
    store: &dyn Store,
    db: &TestDb,
) {
    let t = now();
    let old = earlier(t, Duration::from_secs(600));
    let rows: Vec<NewRow> = (0..4).map(|n| new_row(A, "", n, 20)).collect();
    let ids = store
        .insert(&rows, earlier(t, Duration::from_secs(1200)))
        .await
        .unwrap();
    let [stale, done, recent, pending] = ids[..] else {
        unreachable!()
    };
    assert_eq!(claim(store, A, old, 2, false).await.len(), 2);
    store
        .apply(
            A,
            &batch(vec![(done, consumed(vec![], vec![]))]),
            &BACKOFF,
            old,
        )
        .await
        .unwrap();
    assert_eq!(claim(store, A, t, 1, false).await[0].id, recent);
    let cutoff = earlier(t, Duration::from_secs(300));
    assert_eq!(
        store.requeue_stale(A, cutoff, t, &BACKOFF).await.unwrap(),
        1
    );
    let row = db.row(A, stale).await.unwrap();
    assert_eq!(row.status, "pending");
    assert!(row.last_error.unwrap().contains("visibility timeout"));
    assert_eq!(
        row.retry_count, 1,
        "a row nobody consumed used an attempt, so it cannot come back forever"
    );
    assert_eq!(status(db, A, recent).await, "published");
    assert_eq!(status(db, A, done).await, "consumed");
    assert_eq!(status(db, A, pending).await, "pending");
    assert_eq!(
        store.requeue_stale(A, cutoff, t, &BACKOFF).await.unwrap(),
        0
    );
    // The requeued row waits out its backoff (1 s after one failure), then a claim counts
    // its second publish.
    let got: Vec<i64> = claim(store, A, later(t, Duration::from_millis(500)), 10, false)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        got,
        [pending],
        "the requeued row is not due before its backoff"
    );
    let got: Vec<i64> = claim(store, A, later(t, Duration::from_secs(2)), 10, false)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, [stale]);
    assert_eq!(publish_count(db, A, stale).await, 2);
}

async fn a_row_published_and_never_consumed_ends_dead_at_its_last_attempt(
    store: &dyn Store,
    db: &TestDb,
) {
    let id = insert_one(store, A, "", 2).await;
    let mut t = now();
    for attempt in 1..=2 {
        assert_eq!(
            claim(store, A, t, 10, false).await.len(),
            1,
            "attempt {attempt}"
        );
        t = later(t, Duration::from_secs(60));
        assert_eq!(store.requeue_stale(A, t, t, &BACKOFF).await.unwrap(), 1);
        t = later(t, BACKOFF.max); // past the backoff
    }
    let row = db.row(A, id).await.unwrap();
    assert_eq!(row.status, "dead");
    assert!(
        row.last_error
            .unwrap()
            .starts_with("retries exhausted after 2 attempts: published but not consumed"),
    );
    assert!(
        claim(store, A, later(t, Duration::from_secs(3600)), 10, false)
            .await
            .is_empty()
    );
}

async fn requeue_published_hands_rows_back_due_now_without_an_attempt(
    store: &dyn Store,
    db: &TestDb,
) {
    let (a, b) = (
        insert_one(store, A, "", 20).await,
        insert_one(store, A, "", 20).await,
    );
    let t = now();
    assert_eq!(claim(store, A, t, 1, false).await[0].id, a);
    let t = later(t, Duration::from_secs(1));
    assert_eq!(
        store.requeue_published(A, t, "handed back").await.unwrap(),
        1
    );
    let row = db.row(A, a).await.unwrap();
    assert_eq!((row.status.as_str(), row.retry_count), ("pending", 0));
    assert_eq!(row.last_error.as_deref(), Some("handed back"));
    let got: Vec<i64> = claim(store, A, t, 10, false)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, [a, b], "due at once, in id order");
}

async fn a_claim_takes_only_the_given_event_types(store: &dyn Store, db: &TestDb) {
    let mut other = new_row(A, "", 0, 20);
    other.biz_type = "nobody.routes.this".into();
    let ids = store
        .insert(&[new_row(A, "", 0, 20), other], now())
        .await
        .unwrap();
    let got: Vec<i64> = claim(store, A, now(), 10, false)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, [ids[0]]);
    assert_eq!(
        status(db, A, ids[1]).await,
        "pending",
        "a type this host does not route waits for a host that does"
    );
    let none = store::Claim {
        now: now(),
        limit: 10,
        hold_keys: false,
        types: &[],
    };
    assert!(store.claim_due(A, &none).await.unwrap().is_empty());
    assert_eq!(
        store.next_due(A, &["probe.run".to_owned()]).await.unwrap(),
        None,
        "a row the claim would not take does not wake the relay"
    );
    let status = store
        .table_status(A, &["probe.run".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        status.foreign, 1,
        "the unrouted row is the table's foreign backlog"
    );
    assert_eq!(store.table_status(A, &[]).await.unwrap().foreign, 2);
}

async fn relocate_moves_claimed_rows_to_their_owners_table_in_one_transaction(
    store: &dyn Store,
    db: &TestDb,
) {
    let (a, gone) = (
        insert_one(store, A, "k", 20).await,
        insert_one(store, A, "", 20).await,
    );
    assert_eq!(claim(store, A, now(), 10, false).await.len(), 2);
    // `gone` is decided by someone else (consumed) before the move: it stays where it is.
    store
        .apply(
            A,
            &batch(vec![(gone, consumed(vec![], vec![]))]),
            &BACKOFF,
            now(),
        )
        .await
        .unwrap();
    let moves: Vec<store::Relocation> = [a, gone]
        .into_iter()
        .map(|id| store::Relocation {
            id,
            row: NewRow {
                service_name: "beta".into(),
                message_key: "k".into(),
                ..new_row(B, "k", id as usize, 20)
            },
        })
        .collect();
    let moved = store.relocate(A, &moves, now()).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].0, a);
    let source = db.row(A, a).await.unwrap();
    assert_eq!(source.status, "consumed");
    assert!(
        source
            .last_error
            .unwrap()
            .contains(&format!("moved to {B} as row {}", moved[0].1)),
    );
    let target = db.row(B, moved[0].1).await.unwrap();
    assert_eq!(target.status, "pending");
    assert_eq!(target.biz_type, "probe.run");
    assert_eq!(
        db.ids(B).await,
        [moved[0].1],
        "the consumed row was not copied"
    );
}

async fn insert_returns_each_rows_id_across_tables_and_statements(store: &dyn Store, db: &TestDb) {
    // Something already in each table, so ids do not simply start at 1.
    insert_one(store, A, "", 20).await;
    insert_one(store, B, "", 20).await;
    insert_one(store, B, "", 20).await;
    // More rows than one multi-row statement holds on any backend, tables interleaved.
    let rows: Vec<NewRow> = (0..1_234)
        .map(|n| new_row(if n % 3 == 0 { B } else { A }, "", n, 20))
        .collect();
    let ids = store.insert(&rows, now()).await.unwrap();
    assert_eq!(ids.len(), rows.len());
    for (n, (row, id)) in rows.iter().zip(&ids).enumerate() {
        if n % 37 != 0 && n != rows.len() - 1 {
            continue;
        }
        let stored = db.row(&row.table, *id).await.unwrap();
        assert_eq!(
            stored.payload, row.payload,
            "row {id} of {} holds row {n}",
            row.table
        );
    }
    assert_eq!(db.ids(A).await.len(), 1 + 822);
    assert_eq!(db.ids(B).await.len(), 2 + 412);
}

/// 24 MiB of payloads in one insert, and 24 MiB of state in one batch: more than MariaDB's
/// default `max_allowed_packet` (16 MiB), so one multi-row statement each would be refused.
async fn rows_and_state_larger_than_the_servers_packet_are_written_in_several_statements(
    store: &dyn Store,
    db: &TestDb,
) {
    let big = "x".repeat(1 << 20);
    let rows: Vec<NewRow> = (0..24)
        .map(|n| NewRow {
            payload: format!("{{\"n\":{n},\"pad\":\"{big}\"}}"),
            ..new_row(A, "", n, 20)
        })
        .collect();
    let ids = store.insert(&rows, now()).await.unwrap();
    assert_eq!(ids.len(), 24);
    let last = db.row(A, ids[23]).await.unwrap();
    assert_eq!(last.payload, rows[23].payload);
    let writes: Vec<(String, Option<Vec<u8>>)> = (0..24)
        .map(|n| (format!("big/{n}"), Some(vec![b'v'; 1 << 20])))
        .collect();
    let batch = BatchOutcomes {
        service: "alpha".into(),
        rows: vec![(
            ids[0],
            RowOutcome::Consumed {
                version: "v".into(),
                effects: Effects {
                    state_writes: writes,
                    new_rows: Vec::new(),
                },
            },
        )],
    };
    let report = store.apply(A, &batch, &BACKOFF, now()).await.unwrap();
    assert_eq!(report.consumed, 1);
    assert_eq!(
        db.state("alpha", "big/23").await.map(|v| v.len()),
        Some(1 << 20)
    );
}

async fn backlog_counts_rows_not_yet_consumed_and_the_earliest_pending_due_time(
    store: &dyn Store,
    db: &TestDb,
) {
    assert_eq!(store.backlog(A).await.unwrap(), store::Backlog::default());
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(insert_one(store, A, "", 20).await);
    }
    let [done, sent, gone, late, later_one] = ids[..] else {
        unreachable!()
    };
    due_at(db, A, done, "2001-01-01 00:00:00").await;
    due_at(db, A, sent, "2002-01-01 00:00:00").await;
    due_at(db, A, late, "2003-01-01 00:00:00").await;
    due_at(db, A, later_one, "2004-01-01 00:00:00").await;
    assert_eq!(claim(store, A, now(), 1, false).await[0].id, done);
    store
        .apply(
            A,
            &batch(vec![(done, consumed(vec![], vec![]))]),
            &BACKOFF,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(claim(store, A, now(), 1, false).await[0].id, sent);
    db.exec(&format!("UPDATE {A} SET status = 'dead' WHERE id = {gone}"))
        .await;
    assert_eq!(
        store.backlog(A).await.unwrap(),
        store::Backlog {
            pending: 2,
            published: 1,
            dead: 1,
            oldest_pending: Some(time::macros::datetime!(2003-01-01 0:00)),
        },
        "consumed rows are not counted; the oldest pending row is the earliest due"
    );
    assert_eq!(
        store.backlog(B).await.unwrap(),
        store::Backlog::default(),
        "each table on its own"
    );
}
