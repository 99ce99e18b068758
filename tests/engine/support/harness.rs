//! [`Harness`]: a migrated, started host on a fresh database, with the test services `task`
//! (the real component, on SmartFlow's `tasks` table), `probe` and `sink` (the probe test
//! component), and plain-SQL reads of its rows and state.

use super::{Backend, Setup, TestDb, TransportKind, WAIT, eventually};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard::config::Config;
use switchyard::transport::Transport;
use switchyard::transport::embedded::EmbeddedTransport;
use switchyard::{Running, Switchyard};

/// A built component; panics with the fix if it is missing.
pub fn component(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../build/components")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "component {} is missing: run scripts/build-components.sh (the README's test command does)",
        path.display()
    );
    path.canonicalize().unwrap()
}

/// Config text for the test services: `task` (real component, granted SmartFlow's `tasks`
/// table), `probe` and `sink` (probe).
pub fn config_text(database_url: &str, extra: &str) -> String {
    format!(
        r#"
database_url = "{database_url}"

[retry]
max_attempts = 3
backoff_base_ms = 10
backoff_max_ms = 40

[relay]
poll_interval_ms = 250

[services.task]
[services.probe]
[services.sink]

[[routes]]
event_type = "task.urgency.promote.requested"
service = "task"
component = "{task}"
sql = {{ tables = {{ tasks = "rw" }} }}

[[routes]]
event_type = "task.record.requested"
service = "task"
component = "{task}"
sql = {{ tables = {{ tasks = "rw" }} }}

[[routes]]
event_type = "probe.run"
service = "probe"
component = "{probe}"
emits = ["sink.note", "probe.run", "task.record.requested"]

[[routes]]
event_type = "sink.note"
service = "sink"
component = "{probe}"
{extra}
"#,
        task = component("task").display(),
        probe = component("probe").display(),
    )
}

/// Opens and migrates a host from config `text` (relative paths under `dir`) and returns why it
/// refuses to start (`{:#}`); panics, with `why`, if it starts.
pub async fn start_refused(text: &str, dir: &Path, why: &str) -> String {
    let config = Config::parse(text, Path::new("refused.toml"), dir.to_owned()).unwrap();
    let host = Switchyard::open(config).await.unwrap();
    host.migrate().await.unwrap();
    match host.start(Arc::new(EmbeddedTransport::new())).await {
        Ok(_) => panic!("the host started: {why}"),
        Err(e) => format!("{e:#}"),
    }
}

pub struct Harness {
    /// Keeps a SQLite database directory alive for the test.
    pub _dir: tempfile::TempDir,
    #[allow(dead_code, reason = "read by backend- and transport-specific tests")]
    pub setup: Setup,
    pub host: Switchyard,
    pub transport: Arc<dyn Transport>,
    pub running: Option<Running>,
    pub db: TestDb,
    /// Held while the test uses a database server (see `testdb::SERVERS`).
    pub _server: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
}

impl Harness {
    /// A migrated, started host on a fresh database.
    pub async fn start(setup: Setup) -> Harness {
        Self::start_with(setup, "").await
    }

    pub async fn start_with(setup: Setup, extra: &str) -> Harness {
        Self::start_edited(setup, extra, |text| text).await
    }

    /// As [`Harness::start_with`], with the whole config text passed through `edit` first
    /// (to change a value `config_text` already sets).
    pub async fn start_edited(
        setup: Setup,
        extra: &str,
        edit: impl Fn(String) -> String,
    ) -> Harness {
        Self::start_from(setup, |url| {
            edit(match setup.transport {
                TransportKind::Embedded => config_text(url, extra),
                TransportKind::Kafka => {
                    config_text(url, &format!("{extra}\n{}", crate::kafka::config_extra()))
                }
            })
        })
        .await
    }

    /// A migrated, started host on a fresh database of `setup.backend` holding SmartFlow's
    /// business tables (as a user applies them), configured by the text `config` makes from
    /// the database URL.
    pub async fn start_from(setup: Setup, config: impl FnOnce(&str) -> String) -> Harness {
        super::logs();
        let dir = tempfile::tempdir().unwrap();
        let server = match setup.backend {
            Backend::Sqlite => None,
            _ => Some(crate::testdb::SERVERS.clone().read_owned().await),
        };
        let (url, db) = crate::testdb::fresh(setup.backend, dir.path()).await;
        let config =
            Config::parse(&config(&url), Path::new("test.toml"), dir.path().to_owned()).unwrap();
        let host = Switchyard::open(config).await.unwrap();
        host.migrate().await.unwrap();
        // As `switchyard migrate` does: the retention archives the config asks for.
        host.migrate_archives().await.unwrap();
        super::smartflow::apply_schema(&db).await;
        let transport: Arc<dyn Transport> = match setup.transport {
            TransportKind::Embedded => Arc::new(EmbeddedTransport::new()),
            TransportKind::Kafka => host.configured_transport().await.unwrap(),
        };
        let running = host.start(transport.clone()).await.unwrap();
        Harness {
            _dir: dir,
            setup,
            host,
            transport,
            running: Some(running),
            db,
            _server: server,
        }
    }

    /// The running host (its counters, routes, reload state).
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the host is running")
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            assert!(
                r.shutdown(Duration::from_secs(10)).await,
                "host did not stop within its grace period"
            );
        }
        self.db.drop_database().await;
    }

    /// Waits until the row reaches a final status, and returns it.
    pub async fn wait_final(&self, table: &str, id: i64) -> RowView {
        self.wait_row(table, id, |r| r.status == "consumed" || r.status == "dead")
            .await
    }

    /// Waits until the row satisfies `done` (the database has no change feed to await).
    pub async fn wait_row(&self, table: &str, id: i64, done: impl Fn(&RowView) -> bool) -> RowView {
        let what = format!("row {id} of {table} to reach the expected state");
        eventually(what, WAIT, || async {
            match self.row(table, id).await {
                Some(r) if done(&r) => Ok(r),
                row => Err(row),
            }
        })
        .await
    }

    pub async fn row(&self, table: &str, id: i64) -> Option<RowView> {
        self.db.row(table, id).await
    }

    pub async fn ids(&self, table: &str) -> Vec<i64> {
        self.db.ids(table).await
    }

    pub async fn rows(&self, table: &str) -> Vec<RowView> {
        let mut out = Vec::new();
        for id in self.ids(table).await {
            out.push(self.row(table, id).await.unwrap());
        }
        out
    }

    pub async fn state(&self, service: &str, key: &str) -> Option<String> {
        let v = self.db.state(service, key).await;
        v.map(|b| String::from_utf8(b).unwrap())
    }

    pub async fn publish(&self, event_type: &str, payload: serde_json::Value) -> i64 {
        self.host
            .publish(switchyard::NewEvent::new(event_type, payload))
            .await
            .unwrap()
    }

    /// Inserts a due `pending` row with SmartFlow's columns only, as a foreign producer would.
    pub async fn insert_raw(
        &self,
        table: &str,
        biz_type: &str,
        payload: &str,
        max_retry: i32,
    ) -> i64 {
        self.db
            .insert_raw(table, biz_type, payload, max_retry)
            .await
    }

    /// Makes every insert into `table` fail (a trigger), so a transaction that inserts there
    /// rolls back; [`Harness::allow_inserts`] undoes it.
    pub async fn refuse_inserts(&self, table: &str) {
        self.db.refuse_inserts(table).await;
    }

    pub async fn allow_inserts(&self, table: &str) {
        self.db.allow_inserts(table).await;
    }
}

#[derive(Debug, Clone)]
pub struct RowView {
    pub status: String,
    pub retry_count: i32,
    pub last_error: Option<String>,
    pub handler_version: Option<String>,
    pub biz_type: String,
    pub payload: String,
}

/// blake3 of a component file: what `handler_version` must record.
pub fn hash_of(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}
