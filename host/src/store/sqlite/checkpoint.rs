//! SQLite's WAL checkpoints, run beside the writers instead of inside one of their commits.
//!
//! By default SQLite checkpoints from the connection whose commit pushed the WAL past 1,000
//! pages, before that commit returns: copying the pages into the database file and, with
//! `synchronous = FULL`, an fsync of it. The host's writers take turns (`sql/write_tx.rs`), so
//! that one commit held every other writer for the checkpoint's length (the likely cause of the
//! single 50-360 ms stalls at a steady 1,000 events/s in docs/BENCHMARKS.md; not measured
//! apart, and at that load the writer turn is busy anyway). So every
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
            let Some(writer) = writer.upgrade() else {
                break; // the store was dropped
            };
            let written = writer.taken() - last_turns;
            let due = written >= TURNS_PER_CHECKPOINT
                || (written > 0 && checkpointed_at.elapsed() >= CATCH_UP);
            if !due {
                continue;
            }
            let c = match &mut conn {
                Some(c) => c,
                None => match options.connect().await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "sqlite wal checkpoint: cannot open the \
                            database; retrying next round");
                        continue;
                    }
                },
            };
            match both_passes(c, &writer).await {
                Ok(copied) => (checkpointed_at, last_turns) = (Instant::now(), copied),
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

/// The bulk pass beside the writers, then the tail in the writer turn. Returns the turns now
/// checkpointed: every one taken before this task's own, whose writes are done once this task
/// holds the turn.
async fn both_passes(conn: &mut SqliteConnection, writer: &WriterTurn) -> Result<u64, sqlx::Error> {
    checkpoint(conn).await?;
    let copied = writer.taken() + 1;
    let _turn = writer.take().await;
    checkpoint(conn).await?;
    Ok(copied)
}

/// One `PASSIVE` checkpoint: copies what it can now, waits for nobody.
async fn checkpoint(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(conn)
        .await
        .map(drop)
}
