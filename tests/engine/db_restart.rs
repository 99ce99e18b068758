//! Connection loss: the database server restarts while a host is relaying and consuming. The
//! host logs, backs off and carries on; every row ends `consumed`, none twice.
//!
//! Restarting a server breaks every other test using it, so each test here holds
//! `testdb::SERVERS` for writing: no other server test of this binary runs meanwhile.

use crate::fleet;
use crate::support::{Backend, WAIT, eventually, until};
use crate::testdb::{self, TestDb};
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use switchyard::NewEvent;
use switchyard::store::now;

const ROWS: i64 = 10_000;

// SQLite has no server to restart.
crate::backend_suite!(servers: the_server_restarting_mid_run_loses_nothing);

fn run(cmd: &str) {
    let status = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(status.success(), "`{cmd}` failed with {status}");
}

/// Restarts the server with the commands an operator would use, then waits until it accepts
/// connections again (scripts/databases.sh starts a stopped server and waits for it).
fn restart(backend: Backend) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    match backend {
        Backend::MariaDb => {
            run("mysqladmin -uroot -h127.0.0.1 shutdown");
            // Wait for the old server to be gone before starting the new one.
            run(
                "for i in $(seq 1 100); do pgrep -x mariadbd >/dev/null || exit 0; sleep 0.1; done; exit 1",
            );
        }
        Backend::Postgres => {
            run("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart")
        }
        Backend::Sqlite => unreachable!("SQLite has no server"),
    }
    run(&format!("{root}/scripts/databases.sh"));
}

async fn the_server_restarting_mid_run_loses_nothing(backend: Backend) {
    let _exclusive = testdb::SERVERS.clone().write_owned().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    // A short visibility timeout: a claim whose commit was lost with the connection leaves
    // rows `published` that nobody will consume; they are republished after it. Each such
    // requeue counts an attempt (as does one of a row still waiting in the in-process queue),
    // so the rows get SmartFlow's default 20.
    let config = fleet::write_config(dir.path(), &url, |t| {
        t.replace(
            "poll_interval_ms = 250",
            "poll_interval_ms = 250\nvisibility_timeout_ms = 3000\nbatch_size = 100",
        )
        .replace("max_attempts = 3", "max_attempts = 20")
    });
    let (host, running) = fleet::start(&config).await;
    let outbox = host.outbox();
    let rows: Vec<_> = (0..ROWS)
        .map(|i| {
            outbox
                .row(NewEvent::new(
                    "probe.run",
                    json!({"incr": [format!("seen/{i}")]}),
                ))
                .unwrap()
        })
        .collect();
    host.store().insert(&rows, now()).await.unwrap();
    outbox.wake("probe");
    // Restart once the host is mid-way.
    let consumed = "SELECT COUNT(*) FROM probe_outbox_messages WHERE status = 'consumed'";
    eventually("the first row to be consumed", WAIT, || async {
        until(db.scalar(consumed).await, |n| *n >= 1)
    })
    .await;
    tokio::task::spawn_blocking(move || restart(backend))
        .await
        .unwrap();
    assert!(
        db.scalar(consumed).await < ROWS,
        "the restart happened after the run ended: the test proves nothing, raise ROWS"
    );
    // The test's own pool reconnects like the host's does.
    fleet::wait_count(&db, consumed, ROWS, Duration::from_secs(120), String::new).await;
    let applied_once = match &db {
        TestDb::Postgres(..) => {
            "SELECT COUNT(*) FROM switchyard_state WHERE service = 'probe' \
             AND value = convert_to('1', 'UTF8') AND state_key LIKE 'seen/%'"
        }
        _ => {
            "SELECT COUNT(*) FROM switchyard_state WHERE service = 'probe' \
             AND value = '1' AND state_key LIKE 'seen/%'"
        }
    };
    assert_eq!(
        db.scalar(applied_once).await,
        ROWS,
        "every event applied exactly once"
    );
    assert!(running.shutdown(Duration::from_secs(10)).await);
    db.drop_database().await;
}
