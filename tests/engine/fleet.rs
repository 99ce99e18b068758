//! Hosts built by hand on one database, for tests that need more than the one-host harness:
//! a config file on disk (so `switchyard run` processes can read it), hosts started in this
//! process, and waiting for a count to reach a value.

use crate::support::{WAIT, config_text, eventually};
use crate::testdb::TestDb;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
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

/// Waits until `sql` (one integer) equals `want`, failing after `limit` with the last value
/// and `context()` (evaluated only then).
pub async fn wait_count(
    db: &TestDb,
    sql: &str,
    want: i64,
    limit: Duration,
    context: impl Fn() -> String,
) {
    /// The last count, shown with the caller's context if the wait fails.
    struct Count<'a, C>(i64, &'a C);
    impl<C: Fn() -> String> std::fmt::Debug for Count<'_, C> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}; {}", self.0, (self.1)())
        }
    }
    let context = &context;
    eventually(format!("{sql} to be {want}"), limit, || async move {
        let got = db.scalar(sql).await;
        if got == want {
            Ok(())
        } else {
            Err(Count(got, context))
        }
    })
    .await;
}

/// [`wait_count`] with the suite's usual limit.
pub async fn wait_for(db: &TestDb, sql: &str, want: i64) {
    wait_count(db, sql, want, WAIT, String::new).await;
}
