//! Hosts built by hand on one database, for tests that need more than the one-host harness:
//! a config file on disk (so `switchyard run` processes can read it), hosts started in this
//! process, and waiting for a count to reach a value.

use crate::support::{WAIT, config_text};
use crate::testdb::TestDb;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::config::Config;
use switchyard::transport::embedded::EmbeddedTransport;
use switchyard::{Running, Switchyard};

/// Writes the test config for `url` to `dir/switchyard.toml`, passed through `edit` (to set a
/// value `config_text` already has a line or section for).
pub fn write_config(dir: &Path, url: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, edit(config_text(url, ""))).unwrap();
    path
}

/// A host from the config file, migrated, not started.
pub async fn open(config: &Path) -> Switchyard {
    let host = Switchyard::open(Config::load(config).unwrap())
        .await
        .unwrap();
    host.migrate().await.unwrap();
    host
}

/// A host from the config file, started on its own in-process queue.
pub async fn start(config: &Path) -> (Switchyard, Running) {
    let host = open(config).await;
    let running = host
        .start(Arc::new(EmbeddedTransport::new()))
        .await
        .unwrap();
    (host, running)
}

/// Polls `sql` (one integer) until it equals `want`, failing after `limit` with `context()`.
pub async fn wait_count(
    db: &TestDb,
    sql: &str,
    want: i64,
    limit: Duration,
    context: impl Fn() -> String,
) {
    let started = Instant::now();
    loop {
        let got = db.scalar(sql).await;
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{sql} is {got}, expected {want} within {limit:?}; {}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`wait_count`] with the suite's usual limit.
pub async fn wait_for(db: &TestDb, sql: &str, want: i64) {
    wait_count(db, sql, want, WAIT, String::new).await;
}
