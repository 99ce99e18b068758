//! Ordering per message key with `hold_key_order`: a later row of a key is not published while
//! an earlier row of the same key waits for its retry; rows of other keys are not held.

//! The hold is in each backend's claim statement, so it is tested on each (on the in-process
//! queue: the transport plays no part in it).

use crate::fleet;
use crate::support::Backend;
use crate::testdb;
use serde_json::json;
use switchyard::NewEvent;

crate::backend_suite!(a_later_row_of_a_key_is_held_while_the_earlier_one_waits_for_its_retry);

async fn a_later_row_of_a_key_is_held_while_the_earlier_one_waits_for_its_retry(backend: Backend) {
    let _server = match backend {
        Backend::Sqlite => None,
        _ => Some(testdb::SERVERS.clone().read_owned().await),
    };
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    let config = fleet::write_config(dir.path(), &url, |t| {
        t.replace(
            "[services.probe]\n",
            "[services.probe]\nhold_key_order = true\n",
        )
    });
    let (host, running) = fleet::start(&config).await;
    // An earlier row of key k that failed once and waits for a retry far in the future,
    // written as a producer would (plain SQL, SmartFlow's columns).
    db.exec(
        "INSERT INTO probe_outbox_messages (biz_type, service_name, topic, message_key, payload, \
         status, retry_count, max_retry, next_retry_at) VALUES ('probe.run', 'probe', 't', 'k', \
         '{\"event_type\":\"probe.run\",\"payload\":{\"set\":{\"first\":\"1\"}}}', 'pending', 1, 20, \
         '2999-01-01 00:00:00')",
    )
    .await;
    let first = db.ids("probe_outbox_messages").await[0];
    let later = host
        .publish(NewEvent::new("probe.run", json!({"set": {"later": "1"}})).key("k"))
        .await
        .unwrap();
    let other = host
        .publish(NewEvent::new("probe.run", json!({"set": {"other": "1"}})).key("other"))
        .await
        .unwrap();
    let status = |id: i64| {
        format!(
            "SELECT COUNT(*) FROM probe_outbox_messages WHERE id = {id} AND status = 'consumed'"
        )
    };
    fleet::wait_for(&db, &status(other), 1).await;
    let row = db.row("probe_outbox_messages", later).await.unwrap();
    assert_eq!(
        row.status, "pending",
        "a row of key k published after another key's row that is already consumed is held"
    );
    assert_eq!(db.state("probe", "later").await, None);
    // The earlier row becomes due: it goes first, then the held one follows.
    db.exec("UPDATE probe_outbox_messages SET next_retry_at = '2000-01-01 00:00:00' WHERE message_key = 'k' AND retry_count = 1")
        .await;
    host.outbox().wake("probe");
    fleet::wait_for(&db, &status(first), 1).await;
    fleet::wait_for(&db, &status(later), 1).await;
    assert!(running.shutdown(std::time::Duration::from_secs(10)).await);
    db.drop_database().await;
}
