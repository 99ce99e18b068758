//! SQLite's WAL checkpoints, run beside the writers instead of inside one of their commits.
//!
//! By default SQLite checkpoints from the connection whose commit pushed the WAL past 1,000
//! pages, before that commit returns: copying the pages into the database file and, with
//! `synchronous = FULL`, an fsync of it. The host's writers take turns (`sql/write_tx.rs`), so
//! that one commit held every other writer for the checkpoint's length, and at a steady 1,000
//! events/s an enqueue now and then waited 50-360 ms (docs/BENCHMARKS.md, latency). So every
//! connection of the store opens with `wal_autocheckpoint = 0`, and this task, on a connection
//! of its own, checkpoints every [`ROUND`] in which the file was written enough (and at least
//! once a [`CATCH_UP`] while writes trickle in), in two passes:
//!
//! 1. a `PASSIVE` checkpoint without the writer turn: it takes no write lock and waits for no
//!    one, so the bulk of the copy and its fsync overlap the writers;
//! 2. a second one holding the writer turn, which copies only the frames committed during the
//!    first. The WAL then holds nothing left to copy, and SQLite starts it over from the
//!    beginning at the next write: without this moment a WAL written to without pause is never
//!    complete and grows without bound.
//!
//! Durability is unchanged: a commit is durable in the WAL before it returns either way; the
//! checkpoint only moves it into the database file, and SQLite still checkpoints when its last
//! connection closes.

use super::super::sql::WriterTurn;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use std::sync::Weak;
use std::time::{Duration, Instant};

/// How often the task looks at whether the file was written.
const ROUND: Duration = Duration::from_millis(100);

/// Writer turns since the last checkpoint that make one due at the next round (a few pages of
/// WAL each: about SQLite's own 1,000-page threshold at a few hundred turns).
const TURNS_PER_CHECKPOINT: u64 = 200;

/// The longest a written WAL waits for its checkpoint when fewer turns than
/// [`TURNS_PER_CHECKPOINT`] were taken.
const CATCH_UP: Duration = Duration::from_secs(1);

/// Starts the checkpointer of the store whose writer turn is `writer`; it ends with the store.
pub(super) fn spawn(options: SqliteConnectOptions, writer: Weak<WriterTurn>) {
    tokio::spawn(async move {
        let mut conn: Option<SqliteConnection> = None;
        let (mut checkpointed_at, mut last_turns) = (Instant::now(), 0);
        loop {
            tokio::time::sleep(ROUND).await;
            let Some(turns) = writer.upgrade().map(|w| w.taken()) else {
                break; // the store was dropped
            };
            let written = turns - last_turns;
            let due = written >= TURNS_PER_CHECKPOINT
                || (written > 0 && checkpointed_at.elapsed() >= CATCH_UP);
            if !due {
                continue;
            }
            if conn.is_none() {
                match options.connect().await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "sqlite wal checkpoint: cannot open the \
                            database; retrying next round");
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let bulk = checkpoint(c).await;
            // The turns counted as checkpointed: every one taken before this task's own (taken
            // here), whose writes are done when this task holds the turn.
            let mut copied = turns;
            let tail = match (bulk, writer.upgrade()) {
                (Ok(()), Some(writer)) => {
                    copied = writer.taken() + 1;
                    let _turn = writer.take().await;
                    checkpoint(c).await
                }
                (bulk, _) => bulk,
            };
            match tail {
                Ok(()) => (checkpointed_at, last_turns) = (Instant::now(), copied),
                Err(e) => {
                    tracing::warn!(error = %e, "sqlite wal checkpoint failed; retrying next round");
                    conn = None;
                }
            }
        }
        if let Some(c) = conn {
            let _ = c.close().await;
        }
    });
}

/// One `PASSIVE` checkpoint: copies what it can now, waits for nobody.
async fn checkpoint(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(conn)
        .await
        .map(drop)
}
