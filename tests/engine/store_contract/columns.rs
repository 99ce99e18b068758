//! The contract of the columns beside `status` and `retry_count` that SmartFlow's rows carry:
//! a handler's delay hint in `next_retry_at` (a floor, capped at the backoff ceiling),
//! `last_error` cleared by the consume, `next_retry_at` and `last_error` kept by a publish.

use super::{A, BACKOFF, batch, consumed, due_at, insert_one};
use crate::testdb::TestDb;
use std::time::Duration;
use switchyard::store::{RowOutcome, Store, later, now};

fn retry(reason: &str, delay: Option<Duration>) -> RowOutcome {
    RowOutcome::Retry {
        reason: reason.to_owned(),
        delay,
    }
}

/// How many rows of `A` match `condition` (plain SQL, the same on every backend).
async fn count(db: &TestDb, id: i64, condition: &str) -> i64 {
    db.scalar(&format!(
        "SELECT COUNT(*) FROM {A} WHERE id = {id} AND {condition}"
    ))
    .await
}

pub(super) async fn a_handlers_delay_hint_is_a_floor_capped_at_the_backoff_ceiling(
    store: &dyn Store,
    _db: &TestDb,
) {
    // (hint, expected delay) with SmartFlow's 1 s base and 32 s ceiling, one row at a time so
    // `next_due` (the earliest pending row) reads the row under test.
    for (hint, expected) in [
        (Some(Duration::from_secs(10)), Duration::from_secs(10)),
        (Some(Duration::from_secs(3600)), BACKOFF.max),
        (Some(Duration::from_millis(100)), BACKOFF.delay(1)),
        (None, BACKOFF.delay(1)),
    ] {
        let id = insert_one(store, A, "", 20).await;
        let t = now();
        let report = store
            .apply(A, &batch(vec![(id, retry("later", hint))]), &BACKOFF, t)
            .await
            .unwrap();
        assert_eq!(report.retried, 1);
        assert_eq!(
            store.next_due(A, &["probe.run".to_owned()]).await.unwrap(),
            Some(later(t, expected)),
            "hint {hint:?}"
        );
        let done = batch(vec![(id, consumed(vec![], vec![]))]);
        store.apply(A, &done, &BACKOFF, now()).await.unwrap();
    }
    // A hint does not put off a row's end: at its last attempt it is dead.
    let id = insert_one(store, A, "", 1).await;
    let hinted = retry("last", Some(Duration::from_secs(10)));
    let report = store
        .apply(A, &batch(vec![(id, hinted)]), &BACKOFF, now())
        .await
        .unwrap();
    assert_eq!(report.dead, 1);
}

pub(super) async fn the_consume_clears_last_error_and_a_publish_keeps_both_columns(
    store: &dyn Store,
    db: &TestDb,
) {
    let (retried, published) = (
        insert_one(store, A, "", 20).await,
        insert_one(store, A, "", 20).await,
    );
    let t = now();
    let failed = batch(vec![
        (retried, retry("boom", Some(Duration::from_secs(10)))),
        (published, retry("bang", None)),
    ]);
    store.apply(A, &failed, &BACKOFF, t).await.unwrap();
    // Consumed after a failed attempt: no error left, `next_retry_at` still the retry's.
    let done = batch(vec![(retried, consumed(vec![], vec![]))]);
    store.apply(A, &done, &BACKOFF, now()).await.unwrap();
    let row = db.row(A, retried).await.unwrap();
    assert_eq!((row.status.as_str(), row.last_error), ("consumed", None));
    assert_eq!(
        count(db, retried, "next_retry_at > created_at").await,
        1,
        "the consume keeps next_retry_at (when the row was last due)"
    );
    // Published again after its backoff: the last error and the due time stay until it is
    // handled.
    due_at(db, A, published, "2001-01-01 00:00:00").await;
    let claimed = super::claim(store, A, now(), 10, false).await;
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [published]
    );
    let row = db.row(A, published).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.last_error.as_deref()),
        ("published", Some("bang"))
    );
    assert_eq!(
        count(db, published, "next_retry_at < created_at").await,
        1,
        "the publish keeps next_retry_at"
    );
}
