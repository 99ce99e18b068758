//! Plain-SQL access to a test database, independent of the host's store, on every backend:
//! a fresh database per test (a SQLite file, or `CREATE DATABASE sy_<unique>` on the real
//! MariaDB and PostgreSQL servers, since tests run in parallel), and the few statements tests
//! need, written per backend (placeholders, `RETURNING`, triggers differ).
//!
//! A server that cannot be reached is a test failure that says how to start it, never a skip.

use crate::support::{Backend, RowView};
use sqlx::{AssertSqlSafe, Connection, MySqlPool, PgPool, Row, SqlitePool};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::sync::RwLock;

/// The MariaDB server the tests use (root, no password), and its always-present database.
pub const MARIADB: &str = "mysql://root@127.0.0.1:3306";
/// The PostgreSQL server the tests use (trust auth).
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// Tests that use a server hold this for reading; a test that restarts a server holds it for
/// writing, so it never pulls the server from under another test of this binary.
pub static SERVERS: LazyLock<Arc<RwLock<()>>> = LazyLock::new(|| Arc::new(RwLock::new(())));

#[derive(Clone)]
pub enum TestDb {
    Sqlite(SqlitePool),
    /// The pool on the fresh database, and its name.
    MariaDb(MySqlPool, String),
    Postgres(PgPool, String),
}

/// A unique database name: tests of several binaries and engineers share the servers.
fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "sy_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn unreachable(server: &str, url: &str, e: &sqlx::Error) -> ! {
    panic!(
        "{server} is not reachable at {url} ({e}): start it with scripts/databases.sh \
         (scripts/test.sh does this before the tests)"
    )
}

/// A fresh, empty database on `backend`: its URL for the host and plain-SQL access to it.
pub async fn fresh(backend: Backend, dir: &Path) -> (String, TestDb) {
    match backend {
        Backend::Sqlite => {
            let path = dir.join("switchyard.db");
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(opts).await.unwrap();
            (format!("sqlite://{}", path.display()), TestDb::Sqlite(pool))
        }
        Backend::MariaDb => {
            let admin = format!("{MARIADB}/test");
            let mut conn = sqlx::MySqlConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| unreachable("MariaDB", &admin, &e));
            let name = unique_name();
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
            let url = format!("{MARIADB}/{name}");
            (
                url.clone(),
                TestDb::MariaDb(MySqlPool::connect(&url).await.unwrap(), name),
            )
        }
        Backend::Postgres => {
            let admin = format!("{POSTGRES}/test");
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| unreachable("PostgreSQL", &admin, &e));
            let name = unique_name();
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
            let url = format!("{POSTGRES}/{name}");
            (
                url.clone(),
                TestDb::Postgres(PgPool::connect(&url).await.unwrap(), name),
            )
        }
    }
}

/// `?` placeholders rewritten as `$1, $2 ...` for PostgreSQL.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A transaction a test holds open ([`TestDb::hold_open`]).
pub enum Held {
    MariaDb(sqlx::Transaction<'static, sqlx::MySql>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Held {
    pub async fn commit(self) {
        match self {
            Held::MariaDb(tx) => tx.commit().await.unwrap(),
            Held::Postgres(tx) => tx.commit().await.unwrap(),
        }
    }
}

impl TestDb {
    pub async fn row(&self, table: &str, id: i64) -> Option<RowView> {
        let sql = format!(
            "SELECT status, retry_count, last_error, handler_version, biz_type, payload \
             FROM {table} WHERE id = ?"
        );
        macro_rules! view {
            () => {
                |r| RowView {
                    status: r.get(0),
                    retry_count: r.get(1),
                    last_error: r.get(2),
                    handler_version: r.get(3),
                    biz_type: r.get(4),
                    payload: r.get(5),
                }
            };
        }
        match self {
            TestDb::Sqlite(pool) => sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap()
                .map(view!()),
            TestDb::MariaDb(pool, _) => sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap()
                .map(view!()),
            TestDb::Postgres(pool, _) => sqlx::query(AssertSqlSafe(numbered(&sql)))
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap()
                .map(view!()),
        }
    }

    /// One `i64` computed by `sql` (no parameters), e.g. a count.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            TestDb::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            TestDb::MariaDb(pool, _) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            TestDb::Postgres(pool, _) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// Whether row `id` of `table` was never handed to a transport (`publish_count = 0`): a
    /// row left for another owner, not skipped in a loop.
    pub async fn never_published(&self, table: &str, id: i64) -> bool {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE id = {id} AND publish_count = 0");
        self.scalar(&sql).await == 1
    }

    /// One text value computed by `sql` (no parameters), e.g. a schema summary.
    pub async fn text(&self, sql: &str) -> String {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            TestDb::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            TestDb::MariaDb(pool, _) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            TestDb::Postgres(pool, _) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// Runs statements (no parameters), e.g. DDL.
    pub async fn exec(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            TestDb::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            TestDb::MariaDb(pool, _) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            TestDb::Postgres(pool, _) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }

    pub async fn ids(&self, table: &str) -> Vec<i64> {
        let sql = AssertSqlSafe(format!("SELECT id FROM {table} ORDER BY id"));
        match self {
            TestDb::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
            TestDb::MariaDb(pool, _) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
            TestDb::Postgres(pool, _) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
        }
    }

    pub async fn state(&self, service: &str, key: &str) -> Option<Vec<u8>> {
        let sql = "SELECT value FROM switchyard_state WHERE service = ? AND state_key = ?";
        match self {
            TestDb::Sqlite(pool) => sqlx::query_scalar(sql)
                .bind(service)
                .bind(key)
                .fetch_optional(pool)
                .await
                .unwrap(),
            TestDb::MariaDb(pool, _) => sqlx::query_scalar(sql)
                .bind(service)
                .bind(key)
                .fetch_optional(pool)
                .await
                .unwrap(),
            TestDb::Postgres(pool, _) => sqlx::query_scalar(AssertSqlSafe(numbered(sql)))
                .bind(service)
                .bind(key)
                .fetch_optional(pool)
                .await
                .unwrap(),
        }
    }

    /// Inserts a due `pending` row with SmartFlow's columns only, as a foreign producer would.
    pub async fn insert_raw(
        &self,
        table: &str,
        biz_type: &str,
        payload: &str,
        max_retry: i32,
    ) -> i64 {
        let sql = format!(
            "INSERT INTO {table} (biz_type, service_name, topic, message_key, payload, status, \
             retry_count, max_retry, next_retry_at) \
             VALUES (?, '', 't', '', ?, 'pending', 0, ?, '2000-01-01 00:00:00')"
        );
        match self {
            TestDb::Sqlite(pool) => {
                sqlx::query_scalar(AssertSqlSafe(format!("{sql} RETURNING id")))
                    .bind(biz_type)
                    .bind(payload)
                    .bind(max_retry)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
            // MySQL has no RETURNING: the id is the statement's LAST_INSERT_ID().
            TestDb::MariaDb(pool, _) => sqlx::query(AssertSqlSafe(sql))
                .bind(biz_type)
                .bind(payload)
                .bind(max_retry)
                .execute(pool)
                .await
                .unwrap()
                .last_insert_id() as i64,
            TestDb::Postgres(pool, _) => {
                sqlx::query_scalar(AssertSqlSafe(format!("{} RETURNING id", numbered(&sql))))
                    .bind(biz_type)
                    .bind(payload)
                    .bind(max_retry)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
        }
    }

    /// Makes every insert into `table` fail (a trigger), so a transaction that inserts there
    /// rolls back; [`TestDb::allow_inserts`] undoes it.
    pub async fn refuse_inserts(&self, table: &str) {
        let sql = match self {
            TestDb::Sqlite(_) => format!(
                "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            ),
            TestDb::MariaDb(..) => format!(
                "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'"
            ),
            TestDb::Postgres(..) => format!(
                "CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$; \
                 CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW \
                 EXECUTE FUNCTION refuse_{table}()"
            ),
        };
        self.exec(&sql).await;
    }

    pub async fn allow_inserts(&self, table: &str) {
        let sql = match self {
            TestDb::Postgres(..) => {
                format!("DROP TRIGGER refuse_{table} ON {table}; DROP FUNCTION refuse_{table}()")
            }
            _ => format!("DROP TRIGGER refuse_{table}"),
        };
        self.exec(&sql).await;
    }

    /// Drops a server database created by [`fresh`] (a SQLite file goes with its directory).
    /// Runs `statements` in a transaction left open until [`Held::commit`] (servers only: a
    /// SQLite test cannot hold its one write lock beside a running host).
    pub async fn hold_open(&self, statements: &[&str]) -> Held {
        match self {
            TestDb::Sqlite(_) => panic!("hold_open is for the servers"),
            TestDb::MariaDb(pool, _) => {
                let mut tx = pool.begin().await.unwrap();
                for sql in statements {
                    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                Held::MariaDb(tx)
            }
            TestDb::Postgres(pool, _) => {
                let mut tx = pool.begin().await.unwrap();
                for sql in statements {
                    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                Held::Postgres(tx)
            }
        }
    }

    pub async fn drop_database(&self) {
        match self {
            TestDb::Sqlite(_) => {}
            TestDb::MariaDb(pool, name) => {
                pool.close().await;
                let mut conn = sqlx::MySqlConnection::connect(&format!("{MARIADB}/test"))
                    .await
                    .unwrap();
                sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            TestDb::Postgres(pool, name) => {
                pool.close().await;
                let mut conn = sqlx::PgConnection::connect(&format!("{POSTGRES}/test"))
                    .await
                    .unwrap();
                // FORCE: the stopped host's pool may still hold idle connections to it.
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
        }
    }
}
