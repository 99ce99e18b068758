//! Publishes that run at the same moment: on SQLite they queue for its one writer and are
//! committed together (`store/sql/group_insert.rs`); on the servers side by side. Either way
//! each publish gets the ids of its own rows, and one the database refuses fails alone.

use crate::fleet;
use crate::support::Backend;
use crate::testdb;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use switchyard::NewEvent;

crate::backend_suite!(
    concurrent_publishes_each_get_their_own_rows,
    a_refused_publish_fails_alone_among_concurrent_ones,
);

const PUBLISHES: usize = 64;

/// A migrated host (not started: the rows stay where the publishes put them) on a fresh
/// database, and what must live as long as the test.
async fn open(
    backend: Backend,
) -> (
    Arc<switchyard::Switchyard>,
    testdb::TestDb,
    (
        Option<tokio::sync::OwnedRwLockReadGuard<()>>,
        tempfile::TempDir,
    ),
) {
    let server = match backend {
        Backend::Sqlite => None,
        _ => Some(testdb::SERVERS.clone().read_owned().await),
    };
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    let config = fleet::write_config(dir.path(), &url, |t| t);
    let host = Arc::new(fleet::open(&config).await);
    (host, db, (server, dir))
}

async fn concurrent_publishes_each_get_their_own_rows(backend: Backend) {
    let (host, db, _guards) = open(backend).await;
    let mut publishes = tokio::task::JoinSet::new();
    for n in 0..PUBLISHES {
        let host = host.clone();
        publishes.spawn(async move {
            let event = NewEvent::new("probe.run", json!({"set": {"n": n.to_string()}}))
                .key(format!("k{n}"));
            (n, host.publish(event).await.unwrap())
        });
    }
    let mut ids = BTreeSet::new();
    while let Some(done) = publishes.join_next().await {
        let (n, id) = done.unwrap();
        assert!(ids.insert(id), "id {id} returned to two publishes");
        let row = db.row("probe_outbox_messages", id).await.unwrap();
        assert!(
            row.payload.contains(&format!("\"n\":\"{n}\"")),
            "publish {n} got id {id}, whose row holds {}",
            row.payload
        );
    }
    assert_eq!(db.ids("probe_outbox_messages").await.len(), PUBLISHES);
    db.drop_database().await;
}

async fn a_refused_publish_fails_alone_among_concurrent_ones(backend: Backend) {
    let (host, db, _guards) = open(backend).await;
    db.refuse_inserts("probe_outbox_messages").await;
    let mut publishes = tokio::task::JoinSet::new();
    for n in 0..PUBLISHES {
        let host = host.clone();
        publishes.spawn(async move {
            let refused = n % 4 == 0;
            let event = if refused {
                NewEvent::new("probe.run", json!({}))
            } else {
                NewEvent::new("task.record.requested", json!({"id": n, "user_id": 1}))
            };
            (refused, host.publish(event).await)
        });
    }
    while let Some(done) = publishes.join_next().await {
        let (refused, result) = done.unwrap();
        match (refused, result) {
            (true, Err(e)) => assert!(e.to_string().contains("refused by test"), "{e}"),
            (false, Ok(_)) => {}
            (refused, result) => panic!("refused = {refused}, but the publish gave {result:?}"),
        }
    }
    assert_eq!(db.ids("probe_outbox_messages").await.len(), 0);
    assert_eq!(
        db.ids("task_outbox_messages").await.len(),
        PUBLISHES - PUBLISHES / 4
    );
    db.drop_database().await;
}
