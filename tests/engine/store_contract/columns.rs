//! The contract of the columns beside `status` and `retry_count` that SmartFlow's rows carry:
//! a handler's delay hint in `next_retry_at` (a floor, capped at the backoff ceiling).

use super::{A, BACKOFF, batch, consumed, insert_one};
use crate::testdb::TestDb;
use std::time::Duration;
use switchyard::store::{RowOutcome, Store, later, now};

fn retry(reason: &str, delay: Option<Duration>) -> RowOutcome {
    RowOutcome::Retry {
        reason: reason.to_owned(),
        delay,
    }
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
            store.next_due(A).await.unwrap(),
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
