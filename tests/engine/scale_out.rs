//! Several hosts on one database: three `switchyard run` processes share one MariaDB or
//! PostgreSQL outbox table of 10,000 rows. Every row must be published at least once and
//! consumed exactly once; the double publishes (`publish_count` above 1) are counted and
//! printed (run with `--nocapture` to see them).

use crate::fleet;
use crate::support::Backend;
use crate::testdb::{self, TestDb};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchyard::NewEvent;
use switchyard::store::now;

const ROWS: i64 = 10_000;
const PROCESSES: usize = 3;

// SQLite is single-host (see single_host.rs).
crate::backend_suite!(servers: three_relay_processes_on_one_table_consume_every_row_once);

/// Kills the host processes if the test fails before stopping them.
struct Fleet(Vec<Child>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Rows each host's relay published, from its JSON log lines.
fn published_per_host(dir: &Path) -> Vec<u64> {
    (0..PROCESSES)
        .map(|i| {
            let text =
                std::fs::read_to_string(dir.join(format!("host-{i}.log"))).unwrap_or_default();
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["fields"]["message"] == "relay batch published")
                .map(|v| v["fields"]["published"].as_u64().unwrap_or(0))
                .sum()
        })
        .collect()
}

fn log_tails(dir: &Path) -> String {
    (0..PROCESSES)
        .map(|i| {
            let text =
                std::fs::read_to_string(dir.join(format!("host-{i}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("\"DEBUG\""))
                .rev()
                .take(5)
                .collect();
            format!("host {i}: {}", tail.join(" | "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn three_relay_processes_on_one_table_consume_every_row_once(backend: Backend) {
    let _server = testdb::SERVERS.clone().read_owned().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    let config = fleet::write_config(dir.path(), &url, |t| t);
    // Rows enqueued before any host runs, so all three race for the same due rows. Each event
    // increments its own counter: a second application would leave 2 in it.
    let host = fleet::open(&config).await;
    let outbox = host.outbox();
    let rows: Vec<_> = (0..ROWS)
        .map(|i| {
            let event = NewEvent::new("probe.run", json!({"incr": [format!("seen/{i}")]}))
                .key(format!("key-{}", i % 64));
            outbox.row(event).unwrap()
        })
        .collect();
    host.store().insert(&rows, now()).await.unwrap();
    drop(host);

    let mut fleet = Fleet(Vec::new());
    for i in 0..PROCESSES {
        let log = std::fs::File::create(dir.path().join(format!("host-{i}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["--json-logs", "run", "--config"])
            .arg(&config)
            // Warnings, plus one line per relay batch: how the work spread over the hosts.
            .env("RUST_LOG", "warn,switchyard::telemetry=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        fleet.0.push(child);
    }
    let consumed = "SELECT COUNT(*) FROM probe_outbox_messages WHERE status = 'consumed'";
    fleet::wait_count(&db, consumed, ROWS, Duration::from_secs(300), || {
        log_tails(dir.path())
    })
    .await;
    for child in &mut fleet.0 {
        let stopped = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
    }
    for child in &mut fleet.0 {
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "a host exited with {status}: {}",
            log_tails(dir.path())
        );
    }

    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM probe_outbox_messages")
            .await,
        ROWS
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM probe_outbox_messages WHERE publish_count < 1")
            .await,
        0,
        "every row published at least once"
    );
    let applied_once = match &db {
        TestDb::Postgres(..) => {
            "SELECT COUNT(*) FROM switchyard_state WHERE service = 'probe' \
             AND state_key LIKE 'seen/%' AND value = convert_to('1', 'UTF8')"
        }
        _ => {
            "SELECT COUNT(*) FROM switchyard_state WHERE service = 'probe' \
             AND state_key LIKE 'seen/%' AND value = '1'"
        }
    };
    assert_eq!(
        db.scalar(applied_once).await,
        ROWS,
        "every event applied exactly once"
    );
    let extra = match &db {
        TestDb::MariaDb(..) => {
            "SELECT CAST(COALESCE(SUM(publish_count - 1), 0) AS SIGNED) FROM probe_outbox_messages"
        }
        _ => "SELECT COALESCE(SUM(publish_count - 1), 0) FROM probe_outbox_messages",
    };
    let double = db.scalar(extra).await;
    let version: String = db.text("SELECT VERSION()").await;
    let spread = published_per_host(dir.path());
    assert_eq!(
        spread.iter().sum::<u64>(),
        (ROWS + double) as u64,
        "the hosts' logs account for every publish"
    );
    println!(
        "scale-out on {version}: {ROWS} rows, {PROCESSES} processes, {double} double publishes, \
         published per host {spread:?}"
    );
    db.drop_database().await;
}
