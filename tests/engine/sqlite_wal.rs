//! SQLite's WAL is checkpointed by the store's own task beside the writers, not inside the
//! commit that filled it (`store/sqlite/checkpoint.rs`): the database file catches up while the
//! store is open, and the WAL starts over instead of growing with every write.

use crate::support::eventually;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard::store::{self, NewRow, now};

const TABLE: &str = "probe_outbox_messages";

/// Opens a store on a fresh file; returns it with the paths of the file and its WAL.
async fn open(dir: &Path) -> (std::sync::Arc<dyn store::Store>, PathBuf, PathBuf) {
    let file = dir.join("switchyard.db");
    let wal = dir.join("switchyard.db-wal");
    let store = store::open(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    store.migrate(&[TABLE.to_owned()]).await.unwrap();
    (store, file, wal)
}

/// `n` rows of about 4 KB each.
fn rows(n: usize) -> Vec<NewRow> {
    (0..n)
        .map(|i| NewRow {
            table: TABLE.to_owned(),
            biz_type: "probe.run".into(),
            service_name: "probe".into(),
            topic: "t".into(),
            message_key: format!("k{i}"),
            payload: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(4000)),
            max_attempts: 3,
            chain_depth: 0,
            traceparent: None,
        })
        .collect()
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_checkpoints_its_wal_while_open_and_the_wal_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let (store, file, wal) = open(dir.path()).await;
    const ROUND_BYTES: u64 = 2 << 20;
    for round in 0..4 {
        let before = len(&file);
        // About 2 MB of rows in 20 commits, ~3.4 MB of WAL: below SQLite's own auto-checkpoint
        // threshold (1,000 pages, 4 MB), so only the store's checkpointer moves it into the file.
        for _ in 0..20 {
            store.insert(&rows(25), now()).await.unwrap();
        }
        eventually(
            format!("round {round}'s rows checkpointed into the database file"),
            Duration::from_secs(10),
            || async {
                let grown = len(&file) - before;
                if grown >= ROUND_BYTES * 3 / 4 {
                    Ok(())
                } else {
                    Err(format!(
                        "file grew {grown} bytes, WAL is {} bytes",
                        len(&wal)
                    ))
                }
            },
        )
        .await;
    }
    // 8 MB were written; a WAL that never started over would hold all of it.
    assert!(
        len(&wal) < 2 * ROUND_BYTES,
        "the WAL is {} bytes after 4 checkpointed rounds of {ROUND_BYTES}",
        len(&wal)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_written_without_pause_still_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _file, wal) = open(dir.path()).await;
    // 32 MB of rows in 800 commits one after the other: the checkpointer's first pass never
    // sees the WAL complete, so only its second pass, in the writer turn, lets it start over.
    const COMMITS: usize = 800;
    for _ in 0..COMMITS {
        store.insert(&rows(10), now()).await.unwrap();
    }
    // The WAL takes ~2.2 bytes per byte of these rows (their overflow pages, the indexes), so
    // one that never started over ends at ~71 MB (measured with the second pass taken out); one
    // that starts over every ~200 commits stays near 20 MB.
    let written = (COMMITS * 10 * 4000) as u64;
    assert!(
        len(&wal) < written * 3 / 2,
        "the WAL grew to {} bytes for {written} bytes of rows",
        len(&wal)
    );
}
