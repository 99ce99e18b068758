//! Config reload is honest: a key that applies live takes effect for the next unit of work, and
//! a change that needs a restart refuses the whole reload, naming every such key, while the
//! running config keeps serving.

use crate::support::{RowView, WAIT, eventually, until};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard::{NewEvent, Running, Switchyard};

const TABLE: &str = "probe_outbox_messages";

/// A host started from a config file on SQLite, the watcher off (reloads are explicit here).
async fn host_from_file(dir: &Path) -> (Switchyard, Running, PathBuf) {
    crate::reload::host_from_file(dir, "[reload]\nwatch = false\n").await
}

async fn final_row(dir: &Path, id: i64) -> RowView {
    let db = crate::reload::host_db(dir).await;
    let row = eventually(format!("row {id} final"), WAIT, || async {
        until(db.row(TABLE, id).await, |row| {
            row.as_ref()
                .is_some_and(|r| r.status == "consumed" || r.status == "dead")
        })
    })
    .await;
    row.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_retry_policy_applies_to_events_enqueued_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (host, running, path) = host_from_file(dir.path()).await;
    let retrying = json!({"action": "retry", "reason": "always"});
    // The running policy: 3 attempts.
    let before = host
        .publish(NewEvent::new("probe.run", retrying.clone()))
        .await
        .unwrap();
    let row = final_row(dir.path(), before).await;
    assert_eq!(
        (row.status.as_str(), row.retry_count),
        ("dead", 3),
        "{row:?}"
    );
    // Reloaded: 1 attempt. Applied without a restart, to the next event enqueued.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_attempts = 3", "max_attempts = 1");
    std::fs::write(&path, text).unwrap();
    running.reload_config().await.unwrap();
    assert_eq!(host.config().retry.max_attempts, 1);
    let after = host
        .publish(NewEvent::new("probe.run", retrying))
        .await
        .unwrap();
    let row = final_row(dir.path(), after).await;
    assert_eq!(
        (row.status.as_str(), row.retry_count),
        ("dead", 1),
        "{row:?}"
    );
    assert!(
        row.last_error
            .unwrap()
            .starts_with("retries exhausted after 1 attempts: always")
    );
    assert!(running.shutdown(Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_restart_keys_is_refused_naming_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let (host, running, path) = host_from_file(dir.path()).await;
    let original = std::fs::read_to_string(&path).unwrap();
    let other_db = format!("sqlite://{}", dir.path().join("other.sqlite").display());
    let changed = original
        .replace(
            &format!("sqlite://{}", dir.path().join("db.sqlite").display()),
            &other_db,
        )
        .replace(
            "[services.sink]\n",
            "[services.sink]\ntopic = \"elsewhere\"\n",
        )
        .replace("max_attempts = 3", "max_attempts = 1")
        + "\n[naming]\nprefix = \"acme\"\n";
    std::fs::write(&path, changed).unwrap();
    let err = running.reload_config().await.unwrap_err();
    for key in ["database_url", "naming.prefix", "services.sink.topic"] {
        assert!(err.contains(key), "{key} not named in: {err}");
    }
    assert!(err.contains("restart to apply"), "{err}");
    // Refused whole: not even the live key applied, and the host keeps serving.
    assert_eq!(host.config().retry.max_attempts, 3);
    let id = host
        .publish(NewEvent::new("probe.run", json!({"set": {"k": "v"}})))
        .await
        .unwrap();
    assert_eq!(final_row(dir.path(), id).await.status, "consumed");
    // The same file without the restart keys applies.
    std::fs::write(
        &path,
        original.replace("max_attempts = 3", "max_attempts = 2"),
    )
    .unwrap();
    running.reload_config().await.unwrap();
    assert_eq!(host.config().retry.max_attempts, 2);
    assert!(running.shutdown(Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_waiting_for_a_route_flows_once_a_reload_adds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (host, running, path) = host_from_file(dir.path()).await;
    let db = crate::reload::host_db(dir.path()).await;
    // Another producer's row of a type this host does not route yet: it waits, `pending`.
    let wrapper = r#"{"event_type":"probe.later","payload":{"set":{"later":"ran"}}}"#;
    let id = db.insert_raw(TABLE, "probe.later", wrapper, 20).await;
    let status = host.status().await.unwrap();
    let probe = status.iter().find(|(s, _)| s.name == "probe").unwrap();
    assert_eq!(
        probe.1.foreign, 1,
        "status shows the row waiting for an owner"
    );
    let text = format!(
        "{}\n[[routes]]\nevent_type = \"probe.later\"\nservice = \"probe\"\ncomponent = \"{}\"\n",
        std::fs::read_to_string(&path).unwrap(),
        crate::support::component("probe").display()
    );
    std::fs::write(&path, text).unwrap();
    running.reload_config().await.unwrap();
    host.outbox().wake("probe");
    assert_eq!(final_row(dir.path(), id).await.status, "consumed");
    assert_eq!(
        db.state("probe", "later").await.as_deref(),
        Some(&b"ran"[..])
    );
    assert!(running.shutdown(Duration::from_secs(10)).await);
}
