//! Support for the SmartFlow tests: a host started from `examples/smartflow.toml` itself (the
//! database, component paths and webhook address substituted, backoff shortened), and a local
//! HTTP sink on an ephemeral 127.0.0.1 port standing in for Feishu's webhook.
//!
//! [`Smartflow`] is a small harness of its own (SQLite only, plain SQL reads), so these tests do
//! not depend on the shared harness's shape while others extend it.

use crate::support::WAIT;
use serde_json::{Value, json};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::config::Config;
use switchyard::transport::embedded::EmbeddedTransport;
use switchyard::transport::{Message, Transport};
use switchyard::{NewEvent, Running, Switchyard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The webhook address written in the example config, replaced by each test's sink.
const EXAMPLE_SINK: &str = "127.0.0.1:8099";

/// `examples/smartflow.toml` with the test's database, absolute component paths, `sink` as
/// the webhook address, and a short backoff (100 ms doubling to 400 ms) so retries are quick.
pub fn config_text(database_url: &str, sink: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/smartflow.toml")).unwrap();
    let components = root.join("build/components").canonicalize().unwrap();
    let mut out = text;
    for (from, to) in [
        (
            "database_url = \"sqlite://smartflow-demo.db\"".to_owned(),
            format!("database_url = \"{database_url}\""),
        ),
        (
            "\"../build/components/".to_owned(),
            format!("\"{}/", components.display()),
        ),
        (EXAMPLE_SINK.to_owned(), sink.to_owned()),
        (
            "backoff_base_ms = 1000".to_owned(),
            "backoff_base_ms = 100".to_owned(),
        ),
        (
            "backoff_max_ms = 32000".to_owned(),
            "backoff_max_ms = 400".to_owned(),
        ),
    ] {
        assert!(
            out.contains(&from),
            "examples/smartflow.toml no longer contains {from}"
        );
        out = out.replace(&from, &to);
    }
    out
}

/// A running SmartFlow host on its own SQLite file, and plain-SQL access to that file.
pub struct Smartflow {
    _dir: tempfile::TempDir,
    pub host: Switchyard,
    pub transport: Arc<dyn Transport>,
    running: Option<Running>,
    pool: SqlitePool,
}

/// One outbox row as the tests read it.
#[derive(Debug, Clone)]
pub struct RowView {
    pub status: String,
    pub retry_count: i32,
    pub last_error: Option<String>,
    pub biz_type: String,
    pub payload: String,
}

impl Smartflow {
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            assert!(
                r.shutdown(Duration::from_secs(10)).await,
                "host did not stop within its grace period"
            );
        }
    }

    pub async fn row(&self, table: &str, id: i64) -> Option<RowView> {
        let sql = format!(
            "SELECT status, retry_count, last_error, biz_type, payload FROM {table} WHERE id = ?"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .map(|r| RowView {
                status: r.get(0),
                retry_count: r.get(1),
                last_error: r.get(2),
                biz_type: r.get(3),
                payload: r.get(4),
            })
    }

    pub async fn ids(&self, table: &str) -> Vec<i64> {
        let sql = format!("SELECT id FROM {table} ORDER BY id");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    pub async fn rows(&self, table: &str) -> Vec<RowView> {
        let mut out = Vec::new();
        for id in self.ids(table).await {
            out.push(self.row(table, id).await.unwrap());
        }
        out
    }

    /// Waits until the row satisfies `done` (the database has no change feed to await).
    pub async fn wait_row(&self, table: &str, id: i64, done: impl Fn(&RowView) -> bool) -> RowView {
        let started = Instant::now();
        loop {
            let row = self.row(table, id).await;
            if let Some(r) = &row
                && done(r)
            {
                return r.clone();
            }
            assert!(
                started.elapsed() < WAIT,
                "row {id} of {table} did not reach the expected state: {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_final(&self, table: &str, id: i64) -> RowView {
        self.wait_row(table, id, |r| r.status == "consumed" || r.status == "dead")
            .await
    }

    pub async fn state(&self, service: &str, key: &str) -> Option<String> {
        let v: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT value FROM switchyard_state WHERE service = ? AND state_key = ?",
        )
        .bind(service)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .unwrap();
        v.map(|b| String::from_utf8(b).unwrap())
    }
}

/// A started host on a fresh SQLite file wired as SmartFlow, webhooks going to `sink`.
pub async fn start(sink: &str) -> Smartflow {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smartflow.db");
    let url = format!("sqlite://{}", path.display());
    let config = Config::parse(
        &config_text(&url, sink),
        Path::new("smartflow.toml"),
        dir.path().to_owned(),
    )
    .unwrap();
    let host = Switchyard::open(config).await.unwrap();
    host.migrate().await.unwrap();
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new());
    let running = host.start(transport.clone()).await.unwrap();
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let pool = SqlitePool::connect_with(opts).await.unwrap();
    Smartflow {
        _dir: dir,
        host,
        transport,
        running: Some(running),
        pool,
    }
}

/// Publishes with an explicit event version (the scheduler and notification accept "1").
pub async fn publish_v(h: &Smartflow, event_type: &str, version: &str, payload: Value) -> i64 {
    h.host
        .publish(NewEvent::new(event_type, payload).version(version))
        .await
        .unwrap()
}

/// A state value parsed as JSON.
pub async fn state_json(h: &Smartflow, service: &str, key: &str) -> Option<Value> {
    h.state(service, key)
        .await
        .map(|s| serde_json::from_str(&s).unwrap())
}

/// Publishes and waits for the row's final status; returns (status, last_error).
pub async fn run(
    h: &Smartflow,
    table: &str,
    event_type: &str,
    version: &str,
    payload: Value,
) -> (String, String) {
    let id = publish_v(h, event_type, version, payload).await;
    let row = h.wait_final(table, id).await;
    (row.status, row.last_error.unwrap_or_default())
}

/// Asserts the event ends dead and its reason contains `reason`.
pub async fn assert_dead(
    h: &Smartflow,
    table: &str,
    event_type: &str,
    version: &str,
    payload: Value,
    reason: &str,
) {
    let (status, error) = run(h, table, event_type, version, payload.clone()).await;
    assert_eq!(status, "dead", "{event_type} {payload} should be dead");
    assert!(
        error.contains(reason),
        "{event_type} {payload}: expected {reason:?} in {error:?}"
    );
}

/// Sends the envelope of already-final row `id` through the transport again (a duplicate
/// delivery), then waits for a marker event published behind it on the same queue, so the
/// duplicate has been seen when this returns.
pub async fn redeliver(
    h: &Smartflow,
    service: &str,
    table: &str,
    id: i64,
    marker: (&str, &str, Value),
) {
    let row = h.row(table, id).await.unwrap();
    let wrapper: Value = serde_json::from_str(&row.payload).unwrap();
    let envelope = json!({"outbox_id": id, "event_id": id.to_string(), "event_type": row.biz_type,
        "event_version": wrapper["event_version"], "service_name": service,
        "aggregate_id": wrapper["aggregate_id"], "payload": wrapper["payload"]});
    let svc = h.host.catalog().service(service).unwrap().clone();
    let msg = Message {
        key: String::new(),
        value: envelope.to_string().into_bytes(),
        event_type: row.biz_type.clone(),
    };
    for r in h.transport.publish(&svc, vec![msg]).await {
        r.unwrap();
    }
    let (event_type, version, payload) = marker;
    let marker = publish_v(h, event_type, version, payload).await;
    h.wait_final(table, marker).await;
}

/// Asserts every row of every SmartFlow table is `consumed`.
pub async fn assert_all_consumed(h: &Smartflow) {
    for table in [
        "agent_outbox_messages",
        "task_outbox_messages",
        "memory_outbox_messages",
        "active_scheduler_outbox_messages",
        "notification_outbox_messages",
    ] {
        for row in h.rows(table).await {
            assert_eq!(row.status, "consumed", "{table}: {row:?}");
        }
    }
}

/// A webhook stand-in: answers `200 {"code":0}` and records each request body while up; while
/// down it accepts and closes the connection at once (the sender sees a failed request).
pub struct Sink {
    pub addr: String,
    up: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Value>>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let received = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let (u, r, c) = (up.clone(), received.clone(), changed.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let (r, c) = (r.clone(), c.clone());
                tokio::spawn(async move {
                    if let Some(body) = serve(stream).await {
                        r.lock().unwrap().push(body);
                        c.notify_waiters();
                    }
                });
            }
        });
        Sink {
            addr,
            up,
            received,
            changed,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (without polling) until at least `n` requests were received.
    pub async fn wait_received(&self, n: usize) -> Vec<Value> {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.changed.notified();
                if self.received().len() >= n {
                    return self.received();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("sink did not receive {n} request(s): {:?}", self.received()))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (headers, then `content-length` bytes) and answers Feishu-style.
async fn serve(mut stream: TcpStream) -> Option<Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[header_end..header_end + length]).unwrap_or(Value::Null);
    let answer = br#"{"code":0,"msg":"success"}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await.ok()?;
    stream.write_all(answer).await.ok()?;
    stream.shutdown().await.ok()?;
    Some(body)
}
