//! The contract of the consume transaction and the failed-attempt rule: backoff and dead at
//! `max_attempts`, rows already final skipped with their effects, state writes of a batch.

use super::{A, B, BACKOFF, batch, consumed, insert_one, new_row, status};
use crate::testdb::TestDb;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard::store::{RowOutcome, Status, Store, later, now};

pub(super) async fn a_failed_attempt_backs_off_and_the_last_one_is_dead_with_a_cut_reason(
    store: &dyn Store,
    db: &TestDb,
) {
    let id = insert_one(store, A, "", 3).await;
    let t = now();
    store
        .fail_attempts(A, &[(id, "boom".into())], &BACKOFF, t)
        .await
        .unwrap();
    let row = db.row(A, id).await.unwrap();
    assert_eq!((row.status.as_str(), row.retry_count), ("pending", 1));
    assert_eq!(row.last_error.as_deref(), Some("boom"));
    assert_eq!(
        store.next_due(A, &["probe.run".to_owned()]).await.unwrap(),
        Some(later(t, BACKOFF.delay(1)))
    );
    store
        .fail_attempts(A, &[(id, "boom".into())], &BACKOFF, t)
        .await
        .unwrap();
    assert_eq!(db.row(A, id).await.unwrap().retry_count, 2);
    assert_eq!(
        store.next_due(A, &["probe.run".to_owned()]).await.unwrap(),
        Some(later(t, Duration::from_secs(2)))
    );
    let long = "x".repeat(5_000);
    store
        .fail_attempts(A, &[(id, long.clone())], &BACKOFF, t)
        .await
        .unwrap();
    let row = db.row(A, id).await.unwrap();
    assert_eq!((row.status.as_str(), row.retry_count), ("dead", 3));
    let error = row.last_error.unwrap();
    assert!(
        error.starts_with("retries exhausted after 3 attempts: xxx"),
        "{error:.60}"
    );
    assert_eq!(error.len(), 2_000, "cut to SmartFlow's 2,000 bytes");
    assert_eq!(
        store.next_due(A, &["probe.run".to_owned()]).await.unwrap(),
        None
    );
    // A final row is left alone, by fail_attempts and by apply.
    store
        .fail_attempts(A, &[(id, "again".into())], &BACKOFF, t)
        .await
        .unwrap();
    assert_eq!(db.row(A, id).await.unwrap().retry_count, 3);
    // The same rule inside the consume transaction, grouped over several rows.
    let (r1, r2, last) = (
        insert_one(store, A, "", 3).await,
        insert_one(store, A, "", 3).await,
        insert_one(store, A, "", 1).await,
    );
    let retry = |reason: &str| RowOutcome::Retry {
        reason: reason.to_owned(),
        delay: None,
    };
    let report = store
        .apply(
            A,
            &batch(vec![
                (r1, retry("same")),
                (r2, retry("same")),
                (last, retry(&long)),
            ]),
            &BACKOFF,
            t,
        )
        .await
        .unwrap();
    assert_eq!((report.retried, report.dead, report.skipped), (2, 1, 0));
    for r in [r1, r2] {
        let row = db.row(A, r).await.unwrap();
        assert_eq!((row.status.as_str(), row.retry_count), ("pending", 1));
        assert_eq!(row.last_error.as_deref(), Some("same"));
    }
    let row = db.row(A, last).await.unwrap();
    assert_eq!((row.status.as_str(), row.retry_count), ("dead", 1));
    let error = row.last_error.unwrap();
    assert!(error.starts_with("retries exhausted after 1 attempts: x"));
    assert_eq!(error.len(), 2_000);
    let states = store.row_states(A, &[r1, last, 999_999]).await.unwrap();
    assert_eq!(states[&r1].status, Status::Pending);
    assert_eq!(states[&last].status, Status::Dead);
    assert!(
        !states.contains_key(&999_999),
        "absent ids are not reported"
    );
}

pub(super) async fn a_batch_skips_rows_already_final_and_their_effects(
    store: &dyn Store,
    db: &TestDb,
) {
    let (done, dead, open) = (
        insert_one(store, A, "", 20).await,
        insert_one(store, A, "", 20).await,
        insert_one(store, A, "", 20).await,
    );
    let first = batch(vec![
        (done, consumed(vec![("first", Some("1"))], vec![])),
        (
            dead,
            RowOutcome::Dead {
                reason: "bad wrapper".into(),
            },
        ),
    ]);
    let report = store.apply(A, &first, &BACKOFF, now()).await.unwrap();
    assert_eq!((report.consumed, report.dead), (1, 1));
    assert_eq!(
        db.row(A, done).await.unwrap().handler_version.as_deref(),
        Some("v1")
    );
    // Redelivered: the final rows come again with effects, beside a row still open.
    let again = batch(vec![
        (
            done,
            consumed(vec![("skipped", Some("x"))], vec![new_row(B, "", 1, 20)]),
        ),
        (
            dead,
            consumed(vec![("skipped", Some("y"))], vec![new_row(B, "", 2, 20)]),
        ),
        (
            open,
            consumed(vec![("applied", Some("z"))], vec![new_row(B, "", 3, 20)]),
        ),
        (
            999_999,
            consumed(vec![("skipped", Some("w"))], vec![new_row(B, "", 4, 20)]),
        ),
    ]);
    let report = store.apply(A, &again, &BACKOFF, now()).await.unwrap();
    assert_eq!((report.consumed, report.skipped), (1, 3));
    assert_eq!(report.emitted, BTreeMap::from([(B.to_owned(), 1)]));
    assert_eq!(store.state_get("probe", "skipped").await.unwrap(), None);
    assert_eq!(db.state("probe", "applied").await, Some(b"z".to_vec()));
    let emitted = db.ids(B).await;
    assert_eq!(emitted.len(), 1, "only the open row's new row is inserted");
    let row = db.row(B, emitted[0]).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.payload.as_str()),
        ("pending", "{\"n\":3}")
    );
    assert_eq!(status(db, A, done).await, "consumed");
    assert_eq!(status(db, A, dead).await, "dead");
    assert_eq!(status(db, A, open).await, "consumed");
    // A retry of a final row is skipped too: its count does not move.
    let retry = batch(vec![(
        dead,
        RowOutcome::Retry {
            reason: "late".into(),
            delay: None,
        },
    )]);
    let report = store.apply(A, &retry, &BACKOFF, now()).await.unwrap();
    assert_eq!((report.retried, report.skipped), (0, 1));
    assert_eq!(
        db.row(A, dead).await.unwrap().last_error.as_deref(),
        Some("bad wrapper")
    );
}

pub(super) async fn state_writes_of_a_batch_last_write_wins_and_deletes_delete(
    store: &dyn Store,
    db: &TestDb,
) {
    let ids: Vec<i64> = store
        .insert(
            &(0..4).map(|n| new_row(A, "", n, 20)).collect::<Vec<_>>(),
            now(),
        )
        .await
        .unwrap();
    let report = store
        .apply(
            A,
            &batch(vec![(
                ids[0],
                consumed(vec![("gone", Some("old")), ("kept", Some("k"))], vec![]),
            )]),
            &BACKOFF,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(report.consumed, 1);
    let outcomes = batch(vec![
        (
            ids[1],
            consumed(vec![("a", Some("1")), ("b", Some("x"))], vec![]),
        ),
        (
            ids[2],
            RowOutcome::Retry {
                reason: "its writes are dropped".into(),
                delay: None,
            },
        ),
        (
            ids[3],
            consumed(
                vec![
                    ("a", Some("2")),
                    ("b", None),
                    ("gone", None),
                    ("a", Some("3")),
                ],
                vec![],
            ),
        ),
    ]);
    store.apply(A, &outcomes, &BACKOFF, now()).await.unwrap();
    let get = |k: &'static str| store.state_get("probe", k);
    assert_eq!(
        get("a").await.unwrap(),
        Some(b"3".to_vec()),
        "last write wins"
    );
    assert_eq!(
        get("b").await.unwrap(),
        None,
        "set then deleted in one batch"
    );
    assert_eq!(
        get("gone").await.unwrap(),
        None,
        "a committed key is deleted"
    );
    assert_eq!(get("kept").await.unwrap(), Some(b"k".to_vec()));
    assert_eq!(db.state("probe", "a").await, Some(b"3".to_vec()));
    assert_eq!(
        store.state_get("other", "a").await.unwrap(),
        None,
        "state is per service"
    );
}
