//! `Store::insert` returns the id of each row it wrote, in order, on every backend, also when
//! the rows span several multi-row statements (MySQL computes them: it has no `RETURNING`).

use crate::fleet;
use crate::support::Backend;
use crate::testdb;
use serde_json::json;
use switchyard::NewEvent;
use switchyard::store::now;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_insert_returns_each_rows_id() {
    insert_returns_each_rows_id(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_insert_returns_each_rows_id() {
    insert_returns_each_rows_id(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_insert_returns_each_rows_id() {
    insert_returns_each_rows_id(Backend::Postgres).await;
}

async fn insert_returns_each_rows_id(backend: Backend) {
    let _server = match backend {
        Backend::Sqlite => None,
        _ => Some(testdb::SERVERS.clone().read_owned().await),
    };
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    let config = fleet::write_config(dir.path(), &url, |t| t);
    let host = fleet::open(&config).await;
    let outbox = host.outbox();
    // Something already in the table, so ids do not simply start at 1.
    host.publish(NewEvent::new("probe.run", json!({"n": -1})))
        .await
        .unwrap();
    let rows: Vec<_> = (0..1_234)
        .map(|n| {
            outbox
                .row(NewEvent::new("probe.run", json!({ "n": n })))
                .unwrap()
        })
        .collect();
    let ids = host.store().insert(&rows, now()).await.unwrap();
    assert_eq!(ids.len(), rows.len());
    for (n, id) in ids
        .iter()
        .enumerate()
        .step_by(97)
        .chain([(1_233, &ids[1_233])])
    {
        let row = db.row("probe_outbox_messages", *id).await.unwrap();
        let wrapper: serde_json::Value = serde_json::from_str(&row.payload).unwrap();
        assert_eq!(wrapper["payload"]["n"], n, "row {id} holds event {n}");
    }
    db.drop_database().await;
}
