//! The harness started from `examples/smartflow.toml` itself (the database, component paths
//! and webhook address substituted, backoff shortened) on a database holding SmartFlow's
//! business tables (`examples/smartflow/schema/<backend>.sql`, applied as a user would), and
//! the SmartFlow tests' helpers: publish with a version, run to a final status, redeliver a
//! duplicate, read business rows back as JSON.

use super::{Backend, Harness, Setup, TestDb, TransportKind};
use serde_json::{Map, Value, json};
use sqlx::{AssertSqlSafe, Column, Row};
use std::path::Path;
use switchyard::NewEvent;
use switchyard::transport::Message;

/// The DDL of SmartFlow's business tables for the database `db` runs on, as shipped.
pub fn schema(db: &TestDb) -> String {
    let file = match db {
        TestDb::Sqlite(_) => "sqlite.sql",
        TestDb::MariaDb(..) => "mysql.sql",
        TestDb::Postgres(..) => "postgres.sql",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/smartflow/schema")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Creates SmartFlow's business tables, one statement at a time (the files end each statement
/// with `;` at the end of a line), as a user applying the shipped file would.
pub async fn apply_schema(db: &TestDb) {
    let ddl = schema(db);
    let mut statement = String::new();
    for line in ddl.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        statement.push_str(line);
        statement.push('\n');
        if line.trim_end().ends_with(';') {
            db.exec(&statement).await;
            statement.clear();
        }
    }
    assert!(statement.trim().is_empty(), "unterminated DDL: {statement}");
}

/// The webhook address written in the example config, replaced by each test's sink.
const EXAMPLE_SINK: &str = "127.0.0.1:8099";

/// `examples/smartflow.toml` with the test's database, absolute component paths, `sink` as
/// the webhook address, and a short backoff (100 ms doubling to 400 ms; the notification
/// service's own, 5 min to 30 min, likewise) so retries are quick.
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
        (
            "backoff_base_ms = 300000".to_owned(),
            "backoff_base_ms = 100".to_owned(),
        ),
        (
            "backoff_max_ms = 1800000".to_owned(),
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

/// [`config_text`] on the Kafka broker of the suite (`crate::kafka`), with each service's
/// topic and group under `prefix` instead of `smartflow` (topics outlive a test on the broker,
/// so every test needs its own): `<prefix>.task.outbox`, `<prefix>-task-outbox-consumer`.
pub fn kafka_config_text(database_url: &str, sink: &str, prefix: &str) -> String {
    let text = config_text(database_url, sink);
    let embedded = "[transport]\nkind = \"embedded\"\n";
    assert!(
        text.contains(embedded),
        "examples/smartflow.toml no longer contains {embedded}"
    );
    text.replace(embedded, &crate::kafka::config_extra())
        .replace("topic = \"smartflow.", &format!("topic = \"{prefix}."))
        .replace("group = \"smartflow-", &format!("group = \"{prefix}-"))
}

/// A started host on a fresh SQLite file wired as SmartFlow, webhooks going to `sink`.
pub async fn start(sink: &str) -> Harness {
    start_on(Backend::Sqlite, sink).await
}

/// A started host on a fresh database of `backend` wired as SmartFlow (embedded transport).
pub async fn start_on(backend: Backend, sink: &str) -> Harness {
    Harness::start_from(
        Setup {
            backend,
            transport: TransportKind::Embedded,
        },
        |url| config_text(url, sink),
    )
    .await
}

/// The rows `sql` selects, as JSON objects keyed by column name (integers, booleans, text,
/// times as RFC 3339 UTC; a boolean stored as an integer reads as the integer: compare with
/// [`truthy`]). `sql` is written once for every backend.
pub async fn rows_json(db: &TestDb, sql: &str) -> Vec<Value> {
    macro_rules! decode {
        ($rows:expr) => {
            $rows
                .iter()
                .map(|row| {
                    let mut out = Map::new();
                    for (i, c) in row.columns().iter().enumerate() {
                        let v = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                            json!(v)
                        } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
                            json!(v)
                        } else if let Ok(v) = row.try_get::<Option<i16>, _>(i) {
                            json!(v)
                        } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                            json!(v)
                        } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                            json!(v)
                        } else if let Ok(v) = row.try_get::<Option<time::OffsetDateTime>, _>(i) {
                            json!(v.map(rfc3339))
                        } else if let Ok(v) = row.try_get::<Option<time::PrimitiveDateTime>, _>(i) {
                            json!(v.map(|t| rfc3339(t.assume_utc())))
                        } else {
                            panic!("column {} of {sql:?}: no JSON reading", c.name())
                        };
                        out.insert(c.name().to_lowercase(), v);
                    }
                    Value::Object(out)
                })
                .collect()
        };
    }
    let q = AssertSqlSafe(sql.to_owned());
    match db {
        TestDb::Sqlite(pool) => decode!(sqlx::query(q).fetch_all(pool).await.unwrap()),
        TestDb::MariaDb(pool, _) => decode!(sqlx::query(q).fetch_all(pool).await.unwrap()),
        TestDb::Postgres(pool, _) => decode!(sqlx::query(q).fetch_all(pool).await.unwrap()),
    }
}

/// The one row `sql` selects.
pub async fn row_json(db: &TestDb, sql: &str) -> Value {
    let mut rows = rows_json(db, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.remove(0)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A boolean column as stored on any backend (`true`, or `1` where booleans are integers).
pub fn truthy(v: &Value) -> bool {
    v.as_bool().unwrap_or_else(|| v.as_i64() == Some(1))
}

/// A time column as the instant it holds, whatever its spelling on the backend (RFC 3339, or
/// SQLite's `YYYY-MM-DD HH:MM:SS[.fff]` taken as UTC).
pub fn instant(v: &Value) -> time::OffsetDateTime {
    use time::format_description::well_known::Rfc3339;
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a time"));
    time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| {
            time::OffsetDateTime::parse(&format!("{}Z", s.replacen(' ', "T", 1)), &Rfc3339)
        })
        .unwrap_or_else(|e| panic!("{s:?} is not a time: {e}"))
}

/// Publishes with an explicit event version (the scheduler and notification accept "1").
pub async fn publish_v(h: &Harness, event_type: &str, version: &str, payload: Value) -> i64 {
    h.host
        .publish(NewEvent::new(event_type, payload).version(version))
        .await
        .unwrap()
}

/// Publishes and waits for the row's final status; returns (status, last_error).
pub async fn run(
    h: &Harness,
    table: &str,
    event_type: &str,
    version: &str,
    payload: Value,
) -> (String, String) {
    let id = publish_v(h, event_type, version, payload).await;
    let row = h.wait_final(table, id).await;
    (row.status, row.last_error.unwrap_or_default())
}

/// Waits for row `id` of `table` to be final and asserts it is `consumed` (showing its last
/// error if not).
pub async fn wait_consumed(h: &Harness, table: &str, id: i64) {
    let row = h.wait_final(table, id).await;
    assert_eq!(row.status, "consumed", "row {id} of {table}: {row:?}");
}

/// Publishes and asserts the row ends `consumed` (showing its last error if not).
pub async fn run_ok(h: &Harness, table: &str, event_type: &str, version: &str, payload: Value) {
    let (status, error) = run(h, table, event_type, version, payload.clone()).await;
    assert_eq!(
        status, "consumed",
        "{event_type} {payload} should be consumed; last error: {error}"
    );
}

/// Asserts the event ends dead and its reason contains `reason`.
pub async fn assert_dead(
    h: &Harness,
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
    h: &Harness,
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
        traceparent: None,
    };
    for r in h
        .transport
        .publish(switchyard::engine::channel(&svc), vec![msg])
        .await
    {
        r.unwrap();
    }
    let (event_type, version, payload) = marker;
    let marker = publish_v(h, event_type, version, payload).await;
    h.wait_final(table, marker).await;
}

/// Asserts every row of every SmartFlow table is `consumed`.
pub async fn assert_all_consumed(h: &Harness) {
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
