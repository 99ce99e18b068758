//! The `sql` import (issue 13): a handler's statements on its service's own tables run in the
//! consume transaction, on SQLite, MariaDB and PostgreSQL — typed values both ways, commit with
//! the consumed mark, rollback on retry / dead / trap / deadline, a constraint error undoing one
//! statement, a database error forcing a retry, statements refused by the route's grant,
//! budgets, and a component importing `sql` without a grant refused at start.

use crate::support::{Backend, Harness, Setup, TransportKind, component};
use serde_json::{Value, json};

const TABLE: &str = "shop_outbox_messages";

crate::backend_suite!(
    typed_values_round_trip_and_commit_with_the_consumed_mark,
    rfc3339_text_binds_to_a_datetime_column_and_stays_text_in_a_text_column,
    statements_are_rolled_back_on_retry_dead_trap_and_deadline,
    a_constraint_error_undoes_only_its_statement,
    a_database_error_retries_the_event_whatever_it_returns,
    statements_outside_the_grant_are_refused_with_the_reason,
    budgets_stop_a_greedy_handler,
);

/// The `shop` service: the sql-probe component granted `items` (read-write) and `ro_items`
/// (read-only), with budgets small enough to reach.
fn extra() -> String {
    format!(
        r#"
[services.shop]

[[routes]]
event_type = "sql.run"
service = "shop"
component = "{}"
limits = {{ deadline_ms = 1000, max_sql_statements = 6, max_sql_rows = 4 }}
sql = {{ tables = {{ items = "rw", ro_items = "r" }} }}
"#,
        component("sql_probe").display()
    )
}

/// The business tables of the test, per backend (a user's own DDL: the host never creates them).
fn ddl(backend: Backend) -> [&'static str; 2] {
    match backend {
        Backend::Sqlite => [
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
             qty INTEGER NOT NULL, price REAL, flag BOOLEAN, at DATETIME, data BLOB)",
            "CREATE TABLE ro_items (id INTEGER PRIMARY KEY, label TEXT)",
        ],
        Backend::MariaDb => [
            // A `_bin` collation (SmartFlow's GORM tables use them): still text, not bytes.
            "CREATE TABLE items (id BIGINT PRIMARY KEY, \
             name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL UNIQUE, \
             qty INT NOT NULL, price DOUBLE, flag BOOLEAN, at DATETIME(3), data BLOB)",
            "CREATE TABLE ro_items (id BIGINT PRIMARY KEY, label VARCHAR(64))",
        ],
        Backend::Postgres => [
            "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE, \
             qty INT NOT NULL, price DOUBLE PRECISION, flag BOOLEAN, at TIMESTAMPTZ, data BYTEA)",
            "CREATE TABLE ro_items (id BIGINT PRIMARY KEY, label VARCHAR(64))",
        ],
    }
}

async fn start(backend: Backend) -> Harness {
    let h = Harness::start_with(
        Setup {
            backend,
            transport: TransportKind::Embedded,
        },
        &extra(),
    )
    .await;
    for statement in ddl(backend) {
        h.db.exec(statement).await;
    }
    h.db.exec("INSERT INTO ro_items (id, label) VALUES (1, 'read me')")
        .await;
    h
}

fn insert(id: i64, name: &str) -> Value {
    json!({"execute": "INSERT INTO items (id, name, qty) VALUES (?, ?, ?)", "params": [id, name, 1]})
}

async fn items(h: &Harness, condition: &str) -> i64 {
    h.db.scalar(&format!("SELECT COUNT(*) FROM items WHERE {condition}"))
        .await
}

async fn typed_values_round_trip_and_commit_with_the_consumed_mark(backend: Backend) {
    let mut h = start(backend).await;
    let id = h
        .publish(
            "sql.run",
            json!({"steps": [
                {"execute": "INSERT INTO items (id, name, qty, price, flag, at, data) \
                             VALUES (?, ?, ?, ?, ?, ?, ?)",
                 "params": [1, "apple", 3, 1.5, true, "2026-12-02T06:00:00Z", {"blob": [1, 2, 3]}]},
                // Reads see the invocation's own writes, typed.
                {"query": "SELECT id, name, qty, price, flag, at, data, NULL AS empty \
                           FROM items WHERE at <= ? AND name = ?",
                 "params": ["2026-12-02T07:00:00Z", "apple"]},
                {"execute": "UPDATE items SET qty = qty + ? WHERE id = ?", "params": [2, 1]},
                {"query": "SELECT label FROM ro_items WHERE id = ?", "params": [1]},
                {"query": "SELECT id, label FROM ro_items WHERE id = ?", "params": [404]}
            ], "results": "typed"}),
        )
        .await;
    let row = h.wait_final(TABLE, id).await;
    assert_eq!(row.status, "consumed", "{row:?}");
    assert_eq!(items(&h, "id = 1 AND qty = 5 AND name = 'apple'").await, 1);
    let results: Value =
        serde_json::from_str(&h.state("shop", "results/typed").await.unwrap()).unwrap();
    // SQLite has no boolean type: a BOOLEAN column holds the integer it was given.
    let flag = if backend == Backend::Sqlite {
        json!(1)
    } else {
        json!(true)
    };
    assert_eq!(results[0], json!(1), "rows inserted");
    assert_eq!(
        results[1],
        json!({
            "columns": ["id", "name", "qty", "price", "flag", "at", "data", "empty"],
            "rows": [[1, "apple", 3, 1.5, flag, "2026-12-02T06:00:00Z", {"blob": [1, 2, 3]}, null]],
        })
    );
    assert_eq!(results[2], json!(1), "rows updated");
    assert_eq!(results[3]["rows"], json!([["read me"]]));
    assert_eq!(
        results[4],
        json!({"columns": ["id", "label"], "rows": []}),
        "an empty result still names its columns"
    );
    h.stop().await;
}

async fn rfc3339_text_binds_to_a_datetime_column_and_stays_text_in_a_text_column(backend: Backend) {
    let mut h = start(backend).await;
    let at = "2026-12-02T06:00:00Z";
    let id = h
        .publish(
            "sql.run",
            json!({"steps": [
                {"execute": "INSERT INTO items (id, name, qty, at) VALUES (?, ?, ?, ?)",
                 "params": [7, at, 1, at]},
                {"query": "SELECT name, at FROM items WHERE at = ?", "params": [at]}
            ], "results": "times"}),
        )
        .await;
    assert_eq!(h.wait_final(TABLE, id).await.status, "consumed");
    let results: Value =
        serde_json::from_str(&h.state("shop", "results/times").await.unwrap()).unwrap();
    assert_eq!(
        results[1]["rows"],
        json!([[at, at]]),
        "the text column keeps the text as given; the datetime column reads back as RFC 3339"
    );
    h.stop().await;
}

async fn statements_are_rolled_back_on_retry_dead_trap_and_deadline(backend: Backend) {
    let mut h = start(backend).await;
    let mut ids = Vec::new();
    for (n, action) in ["retry", "dead", "trap", "loop"].iter().enumerate() {
        let item = 10 + n as i64;
        let event = json!({"steps": [insert(item, action)], "action": action});
        ids.push((item, *action, h.publish("sql.run", event).await));
    }
    // And one acknowledged beside them, which keeps its row.
    let kept = h
        .publish("sql.run", json!({"steps": [insert(20, "kept")]}))
        .await;
    for (item, action, id) in ids {
        let row = h.wait_final(TABLE, id).await;
        assert_eq!(row.status, "dead", "{action}: {row:?}");
        assert_eq!(
            items(&h, &format!("id = {item}")).await,
            0,
            "the statement of an invocation that ended with {action} was kept"
        );
    }
    assert_eq!(h.wait_final(TABLE, kept).await.status, "consumed");
    assert_eq!(items(&h, "id = 20").await, 1);
    h.stop().await;
}

async fn a_constraint_error_undoes_only_its_statement(backend: Backend) {
    let mut h = start(backend).await;
    let mut duplicate = insert(31, "pear");
    duplicate["tolerate"] = json!("constraint");
    let id = h
        .publish(
            "sql.run",
            json!({"steps": [insert(30, "pear"), duplicate, insert(32, "plum")], "results": "c"}),
        )
        .await;
    assert_eq!(h.wait_final(TABLE, id).await.status, "consumed");
    assert_eq!(items(&h, "id IN (30, 32)").await, 2);
    assert_eq!(items(&h, "id = 31").await, 0);
    let results: Value =
        serde_json::from_str(&h.state("shop", "results/c").await.unwrap()).unwrap();
    assert_eq!(results[1], json!({"error": "constraint"}));
    // Not tolerated, the same error names its kind.
    let id = h
        .publish("sql.run", json!({"steps": [insert(33, "pear")]}))
        .await;
    let row = h.wait_final(TABLE, id).await;
    let reason = row.last_error.unwrap_or_default();
    assert!(reason.starts_with("step 0: constraint: "), "{reason}");
    h.stop().await;
}

async fn a_database_error_retries_the_event_whatever_it_returns(backend: Backend) {
    let mut h = start(backend).await;
    let id = h
        .publish(
            "sql.run",
            json!({"steps": [
                insert(40, "fig"),
                {"execute": "UPDATE items SET no_such_column = 1 WHERE id = ?", "params": [40],
                 "tolerate": "database"},
                // Refused at once: the invocation is already marked for a retry.
                {"execute": "UPDATE items SET qty = 2 WHERE id = ?", "params": [40],
                 "tolerate": "database"}
            ], "action": "ack"}),
        )
        .await;
    let row = h.wait_final(TABLE, id).await;
    assert_eq!(
        row.status, "dead",
        "acknowledged after a failed statement: {row:?}"
    );
    assert_eq!(row.retry_count, 3, "every attempt was a retry: {row:?}");
    let reason = row.last_error.unwrap_or_default();
    assert!(
        reason.contains("a sql statement failed") && reason.contains("no_such_column"),
        "{reason}"
    );
    assert_eq!(
        items(&h, "id = 40").await,
        0,
        "the retried invocation's insert was kept"
    );
    h.stop().await;
}

async fn statements_outside_the_grant_are_refused_with_the_reason(backend: Backend) {
    let mut h = start(backend).await;
    let cases = [
        (json!({"execute": "DROP TABLE items"}), "not allowed"),
        (
            json!({"query": "SELECT 1 FROM items; DELETE FROM items"}),
            "exactly one statement",
        ),
        (
            json!({"query": "SELECT * FROM secrets"}),
            "table secrets is not granted",
        ),
        (
            json!({"execute": "DELETE FROM ro_items"}),
            "granted read-only",
        ),
        (
            json!({"query": "SELECT * FROM switchyard_state"}),
            "not granted",
        ),
        (
            json!({"query": "SELECT LOAD_FILE('/etc/passwd') FROM items"}),
            "function LOAD_FILE is not allowed",
        ),
        (json!({"execute": "SELECT id FROM items"}), "use query"),
        (
            json!({"query": "SELECT id FROM items WHERE id = ?", "params": []}),
            "1 placeholders but 0 parameters",
        ),
    ];
    let mut ids = Vec::new();
    for (step, _) in &cases {
        ids.push(h.publish("sql.run", json!({"steps": [step]})).await);
    }
    for ((step, expected), id) in cases.iter().zip(ids) {
        let row = h.wait_final(TABLE, id).await;
        let reason = row.last_error.unwrap_or_default();
        assert!(
            reason.starts_with("step 0: refused: ") && reason.contains(expected),
            "{step}: {reason}"
        );
    }
    assert_eq!(items(&h, "1 = 1").await, 0);
    h.stop().await;
}

async fn budgets_stop_a_greedy_handler(backend: Backend) {
    let mut h = start(backend).await;
    // max_sql_statements = 6: the seventh is refused.
    let steps: Vec<Value> = (0..7).map(|i| insert(50 + i, &format!("n{i}"))).collect();
    let id = h.publish("sql.run", json!({"steps": steps})).await;
    let reason = h.wait_final(TABLE, id).await.last_error.unwrap_or_default();
    assert!(
        reason.starts_with("step 6: budget: ") && reason.contains("limits.max_sql_statements"),
        "{reason}"
    );
    assert_eq!(
        items(&h, "1 = 1").await,
        0,
        "a dead invocation's inserts were kept"
    );
    // max_sql_rows = 4: a query returning more stops reading and says so.
    let steps: Vec<Value> = (0..5).map(|i| insert(60 + i, &format!("m{i}"))).collect();
    let seeded = h.publish("sql.run", json!({"steps": steps})).await;
    assert_eq!(h.wait_final(TABLE, seeded).await.status, "consumed");
    let id = h
        .publish(
            "sql.run",
            json!({"steps": [{"query": "SELECT * FROM items"}]}),
        )
        .await;
    let reason = h.wait_final(TABLE, id).await.last_error.unwrap_or_default();
    assert!(
        reason.starts_with("step 0: budget: ") && reason.contains("limits.max_sql_rows"),
        "{reason}"
    );
    h.stop().await;
}

/// A component that imports `sql` on a route without a grant does not start, and the error
/// says which grant to add — also when the same file serves a granted route first (the loaded
/// component is not shared across grants).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_importing_sql_without_a_grant_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "database_url = \"sqlite://{}/db.sqlite\"\n[services.shop]\n\
         [[routes]]\nevent_type = \"sql.granted\"\nservice = \"shop\"\ncomponent = \"{probe}\"\n\
         sql = {{ tables = {{ items = \"rw\" }} }}\n\
         [[routes]]\nevent_type = \"sql.run\"\nservice = \"shop\"\ncomponent = \"{probe}\"\n",
        dir.path().display(),
        probe = component("sql_probe").display()
    );
    let err = crate::support::start_refused(
        &text,
        dir.path(),
        "a component importing sql without a grant was started",
    )
    .await;
    assert!(
        err.contains("imports sql but its route does not grant it")
            && err.contains("sql = {")
            && err.contains("\"sql.run\""),
        "{err}"
    );
}
