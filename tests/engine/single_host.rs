//! SQLite is single-host: a second host started on the same file is refused, saying why.

use crate::fleet;
use crate::support::Backend;
use crate::testdb;
use std::sync::Arc;
use switchyard::transport::embedded::EmbeddedTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_on_the_same_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _db) = testdb::fresh(Backend::Sqlite, dir.path()).await;
    let config = fleet::write_config(dir.path(), &url, |t| t);
    let (_first, running) = fleet::start(&config).await;
    // Commands that do not run relays still work beside the running host.
    let second = fleet::open(&config).await;
    let err = second
        .start(Arc::new(EmbeddedTransport::new()))
        .await
        .err()
        .expect("a second host on one SQLite file must be refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("another switchyard host is already running")
            && message.contains("SQLite is single-host"),
        "{message}"
    );
    assert!(running.shutdown(std::time::Duration::from_secs(10)).await);
    // Once the first host's store is gone, the lock is free again.
    drop(_first);
    let (_third, running) = fleet::start(&config).await;
    assert!(running.shutdown(std::time::Duration::from_secs(10)).await);
}
