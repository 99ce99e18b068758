//! The `sql` import across hosts and failures (issue 13, point 3), on MariaDB and PostgreSQL:
//! hosts updating the same rows in opposite orders (deadlocks between replicas) lose and double
//! nothing; a host dying between its handlers' statements and the batch's commit leaves nothing
//! of them applied and its rows are handled again; a statement cut off by its deadline (blocked
//! on a row another transaction holds) fails only its own row's attempt, whether the host's timer
//! or the server's statement limit stops it first; a statement that breaks its transaction the
//! same transient-looking way every time fails its own row, not its service.

use crate::fleet;
use crate::support::{Backend, Harness, Setup, TransportKind, WAIT, component, eventually, until};
use crate::testdb::{self, TestDb};
use serde_json::json;
use switchyard::NewEvent;
use switchyard::store::now;

const HOSTS: usize = 3;
const EVENTS: usize = 300;

crate::backend_suite!(
    servers: replicas_updating_rows_in_opposite_orders_lose_nothing,
    a_host_dying_before_its_commit_applies_none_of_its_statements,
    a_statement_cut_off_by_its_deadline_fails_only_its_row,
    the_servers_statement_limit_is_told_apart_from_other_failures
);

/// The `shop` service with the sql-probe component, granted `counters` and `items`.
fn shop(deadline_ms: u64) -> String {
    format!(
        r#"
[services.shop]

[[routes]]
event_type = "sql.run"
service = "shop"
component = "{}"
limits = {{ deadline_ms = {deadline_ms} }}
sql = {{ tables = {{ counters = "rw", items = "rw" }} }}
"#,
        component("sql_probe").display()
    )
}

async fn create_tables(db: &TestDb) {
    db.exec("CREATE TABLE counters (name VARCHAR(16) PRIMARY KEY, n BIGINT NOT NULL)")
        .await;
    db.exec("INSERT INTO counters (name, n) VALUES ('a', 0), ('b', 0)")
        .await;
    db.exec("CREATE TABLE items (id BIGINT PRIMARY KEY, qty BIGINT NOT NULL)")
        .await;
}

fn bump(name: &str) -> serde_json::Value {
    json!({"execute": "UPDATE counters SET n = n + 1 WHERE name = ?", "params": [name]})
}

async fn replicas_updating_rows_in_opposite_orders_lose_nothing(backend: Backend) {
    run_hosts(backend, false).await;
}

async fn a_host_dying_before_its_commit_applies_none_of_its_statements(backend: Backend) {
    run_hosts(backend, true).await;
}

async fn run_hosts(backend: Backend, kill_one: bool) {
    let _server = testdb::SERVERS.clone().read_owned().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    create_tables(&db).await;
    // Deadlocks must never use up a row's attempts; a dead host's rows come back quickly.
    let config = fleet::write_config(dir.path(), &url, |t| {
        t.replace("max_attempts = 3", "max_attempts = 1000")
            .replace(
                "poll_interval_ms = 250",
                "poll_interval_ms = 250\nvisibility_timeout_ms = 2000",
            )
            + &shop(5000)
    });
    let first = fleet::open(&config).await;
    let outbox = first.outbox();
    // Half the events update the two rows in one order, half in the other; each also inserts
    // its own item, so a statement applied twice (or lost) shows.
    let rows: Vec<_> = (0..EVENTS)
        .map(|i| {
            let (x, y) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
            let item =
                json!({"execute": "INSERT INTO items (id, qty) VALUES (?, 1)", "params": [i]});
            outbox
                .row(NewEvent::new(
                    "sql.run",
                    json!({"steps": [bump(x), item, bump(y)]}),
                ))
                .unwrap()
        })
        .collect();
    first.store().insert(&rows, now()).await.unwrap();
    let consumed = "SELECT COUNT(*) FROM shop_outbox_messages WHERE status = 'consumed'";
    if kill_one {
        kill_a_host_mid_batch(&db, &config).await;
    }
    let mut running = Vec::new();
    for _ in 0..HOSTS {
        running.push(fleet::start(&config).await);
    }
    eventually("every event consumed", WAIT * 2, || async {
        until(db.scalar(consumed).await, |n| *n == EVENTS as i64)
    })
    .await;
    for name in ["a", "b"] {
        let n = db
            .scalar(&format!("SELECT n FROM counters WHERE name = '{name}'"))
            .await;
        assert_eq!(
            n, EVENTS as i64,
            "updates of counter {name} lost or doubled"
        );
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM items").await, EVENTS as i64);
    for (host, r) in running {
        assert!(r.shutdown(std::time::Duration::from_secs(10)).await);
        drop(host);
    }
    drop(first);
    db.drop_database().await;
}

/// Starts a host while the test holds counter `b`, waits until one of its handlers is inside a
/// statement on `counters` (PostgreSQL: blocked on `b`; MariaDB's process list shows any
/// `UPDATE counters` in flight, most often the one blocked on `b`), and drops the host there
/// without shutdown: its batch's transaction is open and cannot commit while `b` is held
/// (every event updates `b`). Waiting on the held row rather than on a first share of
/// consumed events makes the moment certain: before, the other hosts sometimes consumed every
/// event between two polls and the kill came too late to prove anything.
async fn kill_a_host_mid_batch(db: &TestDb, config: &std::path::Path) {
    let held = db
        .hold_open(&["SELECT n FROM counters WHERE name = 'b' FOR UPDATE"])
        .await;
    let doomed = fleet::start(config).await;
    let waiting = match db {
        TestDb::MariaDb(..) => {
            // MariaDB's `innodb_trx` does not list the host's waiting transaction as waiting;
            // its process list shows the statement (this query's own text matches too).
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE db = DATABASE() AND info LIKE '%UPDATE counters%' AND id <> CONNECTION_ID()"
        }
        TestDb::Postgres(..) => {
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'"
        }
        TestDb::Sqlite(_) => unreachable!("servers only"),
    };
    eventually("a handler blocked on the held row", WAIT, || async {
        until(db.scalar(waiting).await, |n| *n >= 1)
    })
    .await;
    // Its consumer is aborted inside the handler's statement; the server rolls back its
    // transaction when the connection goes, and its claimed rows come back after the
    // visibility timeout to the hosts started next.
    drop(doomed);
    // Released first: MariaDB notices a closed connection only once its statement ends.
    held.commit().await;
    eventually("the dead host's statement gone", WAIT, || async {
        until(db.scalar(waiting).await, |n| *n == 0)
    })
    .await;
    for (what, sql) in [
        ("counter a", "SELECT n FROM counters WHERE name = 'a'"),
        ("items", "SELECT COUNT(*) FROM items"),
    ] {
        assert_eq!(
            db.scalar(sql).await,
            0,
            "{what}: the dead host's statements applied"
        );
    }
}

async fn a_statement_cut_off_by_its_deadline_fails_only_its_row(backend: Backend) {
    let setup = Setup {
        backend,
        transport: TransportKind::Embedded,
    };
    let mut h = Harness::start_with(setup, &shop(1000)).await;
    create_tables(&h.db).await;
    h.db.exec("INSERT INTO items (id, qty) VALUES (70, 1)")
        .await;
    // Another transaction holds item 70's row: an update of it waits past the deadline.
    let blocked_update = "UPDATE items SET qty = 9 WHERE id = 70";
    let holder = match &h.db {
        TestDb::MariaDb(pool, _) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(blocked_update).execute(&mut *tx).await.unwrap();
            Holder::MariaDb(tx)
        }
        TestDb::Postgres(pool, _) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(blocked_update).execute(&mut *tx).await.unwrap();
            Holder::Postgres(tx)
        }
        TestDb::Sqlite(_) => unreachable!("servers only"),
    };
    let blocked = h
        .publish(
            "sql.run",
            json!({"steps": [{"execute": "UPDATE items SET qty = qty + 1 WHERE id = ?", "params": [70]}]}),
        )
        .await;
    // In the same batch: the cut-off statement's transaction is rolled back with the batch's,
    // and the server gives the cut-off statement up at its deadline (a lock wait limit set with
    // the invocation's savepoint), so what that transaction held does not block this one.
    let free = h
        .publish(
            "sql.run",
            json!({"steps": [{"execute": "INSERT INTO items (id, qty) VALUES (?, 1)", "params": [71]}]}),
        )
        .await;
    let row = h.wait_final("shop_outbox_messages", blocked).await;
    assert_eq!(row.status, "dead", "{row:?}");
    assert_eq!(
        row.retry_count, 3,
        "each cut-off attempt counts once: {row:?}"
    );
    let reason = row.last_error.unwrap_or_default();
    assert!(
        reason.contains("deadline exceeded after 1000 ms"),
        "{reason}"
    );
    let row = h.wait_final("shop_outbox_messages", free).await;
    assert_eq!(row.status, "consumed", "{row:?}");
    drop(holder);
    assert_eq!(
        h.db.scalar("SELECT COUNT(*) FROM items WHERE id = 71")
            .await,
        1
    );
    assert_eq!(
        h.db.scalar("SELECT qty FROM items WHERE id = 70").await,
        1,
        "the cut-off update was applied"
    );
    h.stop().await;
}

/// The test's own transaction holding a row lock, rolled back when dropped.
#[allow(dead_code, reason = "held for its lock")]
enum Holder {
    MariaDb(sqlx::Transaction<'static, sqlx::MySql>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// The server's own cut-off (the statement limit the host sets to an invocation's deadline) is
/// told apart from other failures: it fails the invocation that ran the statement, as its
/// deadline does. Sorted as a transient error, it made the batch run again and again with the
/// same statement stopped each time, the row's attempt never counted (a CI failure of
/// `a_statement_cut_off_by_its_deadline_fails_only_its_row` whenever the server's limit fired
/// before the host's timer).
async fn the_servers_statement_limit_is_told_apart_from_other_failures(backend: Backend) {
    use switchyard::handler_sql::SqlFailure;
    use switchyard::store::sql::Dialect;
    use switchyard::store::sql::handler_sql::classify;
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = testdb::fresh(backend, dir.path()).await;
    db.exec("CREATE TABLE items (id BIGINT PRIMARY KEY, qty BIGINT NOT NULL)")
        .await;
    db.exec("INSERT INTO items (id, qty) VALUES (70, 1)").await;
    let update = "UPDATE items SET qty = qty + 1 WHERE id = 70";
    // What the host runs before a handler's statement, with a 50 ms deadline (MySQL's lock wait
    // limit is in whole seconds: 1 s).
    let (cut_off, other) = match &db {
        TestDb::Postgres(pool, _) => {
            let set = (sqlx::Postgres::STATEMENT_LIMIT.unwrap().set)(50);
            let mut holder = pool.begin().await.unwrap();
            sqlx::query(update).execute(&mut *holder).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(set))
                .execute(&mut *tx)
                .await
                .unwrap();
            let cut_off = sqlx::query(update).execute(&mut *tx).await.unwrap_err();
            drop(tx);
            let mut tx = pool.begin().await.unwrap();
            let other = sqlx::query("UPDATE items SET qty = 1 / 0 WHERE id = 70")
                .execute(&mut *tx)
                .await
                .unwrap_err();
            drop(holder);
            (cut_off, other)
        }
        TestDb::MariaDb(pool, _) => {
            let set = (sqlx::MySql::STATEMENT_LIMIT.unwrap().set)(50);
            let mut holder = pool.begin().await.unwrap();
            sqlx::query(update).execute(&mut *holder).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(set))
                .execute(&mut *tx)
                .await
                .unwrap();
            let cut_off = sqlx::query(update).execute(&mut *tx).await.unwrap_err();
            drop(tx);
            let other = sqlx::query("UPDATE items SET nope = 1 WHERE id = 70")
                .execute(pool)
                .await
                .unwrap_err();
            drop(holder);
            (cut_off, other)
        }
        TestDb::Sqlite(_) => unreachable!("servers only: SQLite has no statement limit"),
    };
    match classify(cut_off) {
        SqlFailure::CutOff(message) => assert!(!message.is_empty()),
        sorted => panic!("the statement limit's cut-off was sorted as {sorted:?}"),
    }
    match classify(other) {
        SqlFailure::Statement(_) => {}
        sorted => panic!("a failing statement was sorted as {sorted:?}"),
    }
    db.drop_database().await;
}

/// A statement that breaks its batch's transaction with a transient-looking error every time
/// (PostgreSQL's `temp_file_limit`, class 53 "insufficient resources", like a deadlock or a lost
/// connection to the host's error sorting) cannot hold its service: after a few reruns its own
/// attempt fails, the batch goes on, and the row ends dead with a reason saying why. Before,
/// the batch ran again forever and every later event of the service waited behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_always_breaks_its_transaction_fails_its_row_not_its_service() {
    let _server = testdb::SERVERS.clone().read_owned().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(Backend::Postgres, dir.path()).await;
    let TestDb::Postgres(_, name) = &db else {
        unreachable!("a PostgreSQL database")
    };
    db.exec("CREATE TABLE items (id BIGINT PRIMARY KEY, qty BIGINT NOT NULL)")
        .await;
    db.exec("INSERT INTO items SELECT g, g % 1000 FROM generate_series(1, 20000) g")
        .await;
    // For the host's sessions (opened after this): a sort of the table spills to a temporary
    // file larger than the limit, so it fails with 53400 every time.
    db.exec(&format!(
        "ALTER DATABASE {name} SET work_mem = '64kB'; \
         ALTER DATABASE {name} SET temp_file_limit = '64kB'"
    ))
    .await;
    let config = fleet::write_config(dir.path(), &url, |t| t + &shop(5000));
    let (host, running) = fleet::start(&config).await;
    let sort = json!({"query": "SELECT id FROM items ORDER BY qty, id", "params": []});
    let hostile = host
        .publish(NewEvent::new("sql.run", json!({"steps": [sort]})))
        .await
        .unwrap();
    let insert = json!({"execute": "INSERT INTO items (id, qty) VALUES (?, 1)", "params": [30000]});
    let fine = host
        .publish(NewEvent::new("sql.run", json!({"steps": [insert]})))
        .await
        .unwrap();
    let row = |id: i64| {
        let db = &db;
        async move {
            eventually(format!("row {id} final"), WAIT * 2, || async {
                until(db.row("shop_outbox_messages", id).await, |r| {
                    r.as_ref()
                        .is_some_and(|r| r.status == "consumed" || r.status == "dead")
                })
            })
            .await
            .unwrap()
        }
    };
    let fine_row = row(fine).await;
    assert_eq!(fine_row.status, "consumed", "{fine_row:?}");
    let hostile_row = row(hostile).await;
    assert_eq!(hostile_row.status, "dead", "{hostile_row:?}");
    let reason = hostile_row.last_error.unwrap_or_default();
    assert!(reason.contains("broke the batch's transaction"), "{reason}");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM items WHERE id = 30000")
            .await,
        1
    );
    assert!(running.shutdown(std::time::Duration::from_secs(10)).await);
    drop(host);
    db.drop_database().await;
}
