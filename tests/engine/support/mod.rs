//! The test harness, one for every engine test: a fresh database (SQLite file, or a fresh
//! MariaDB/PostgreSQL database on the real servers), a config wiring the real `task` component
//! and the `probe` test component (or SmartFlow's own example config), the host started on the
//! chosen transport, and helpers that read rows back with plain SQL.
//!
//! - [`harness`]: [`Harness`], the test services' config and row reads.
//! - [`smartflow`]: the same harness started from `examples/smartflow.toml`, and its helpers.
//! - [`sink`]: a local HTTP sink standing in for Feishu's webhook.
//! - [`otlp`]: a local OTLP/HTTP collector receiving the host's spans.
//!
//! Tests wait on conditions, never on the clock: [`eventually`] polls a condition the test
//! cannot be notified of; a negative ("nothing happened") is asserted on a counter that would
//! have moved ([`switchyard::Running::counters`]).
//!
//! Every engine test is written once as `async fn name(setup: Setup)` and instantiated for
//! each backend × transport by [`engine_suite!`]; a test of the store alone is written once as
//! `async fn name(backend: Backend)` and instantiated per backend by [`backend_suite!`].

pub mod harness;
pub mod otlp;
pub mod sink;
pub mod smartflow;

/// Plain-SQL access to the test database, independent of the host's store.
pub use crate::testdb::TestDb;
pub use harness::{Harness, RowView, component, config_text, hash_of, start_refused};

use std::fmt::{Debug, Display};
use std::time::{Duration, Instant};

/// How long a test waits for the host to reach a state before failing.
pub const WAIT: Duration = Duration::from_secs(30);

/// Which database the host runs on in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A fresh database on the real MariaDB server (127.0.0.1:3306, root).
    MariaDb,
    /// A fresh database on the real PostgreSQL server (127.0.0.1:5432, postgres).
    Postgres,
}

/// Which transport carries envelopes in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Embedded,
    /// The real broker at `SWITCHYARD_KAFKA_BROKERS` (default 127.0.0.1:9092, started by
    /// `scripts/kafka.sh start`), topics under a fresh prefix per test.
    Kafka,
}

#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub backend: Backend,
    pub transport: TransportKind,
}

impl Setup {
    pub const SQLITE_EMBEDDED: Setup = Setup {
        backend: Backend::Sqlite,
        transport: TransportKind::Embedded,
    };
    pub const MARIADB_EMBEDDED: Setup = Setup {
        backend: Backend::MariaDb,
        transport: TransportKind::Embedded,
    };
    pub const POSTGRES_EMBEDDED: Setup = Setup {
        backend: Backend::Postgres,
        transport: TransportKind::Embedded,
    };
    pub const SQLITE_KAFKA: Setup = Setup {
        backend: Backend::Sqlite,
        transport: TransportKind::Kafka,
    };
    pub const MARIADB_KAFKA: Setup = Setup {
        backend: Backend::MariaDb,
        transport: TransportKind::Kafka,
    };
}

/// Instantiates each listed `async fn test(setup: Setup)` once per backend × transport, as
/// `<setup>::<test>`, so the whole suite runs everywhere without copies.
#[macro_export]
macro_rules! engine_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite_embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Setup::SQLITE_EMBEDDED).await } )*
        }
        mod mariadb_embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Setup::MARIADB_EMBEDDED).await } )*
        }
        mod postgres_embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Setup::POSTGRES_EMBEDDED).await } )*
        }
        mod sqlite_kafka {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Setup::SQLITE_KAFKA).await } )*
        }
        mod mariadb_kafka {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Setup::MARIADB_KAFKA).await } )*
        }
    };
}

/// Instantiates each listed `async fn test(backend: Backend)` once per database, as
/// `<backend>::<test>` (`sqlite`, `mariadb`, `postgres`), so a store-level test is written once.
/// `servers: test, ...` instantiates on MariaDB and PostgreSQL only (what SQLite cannot do,
/// e.g. adopt a MySQL-shaped table or share a table between hosts).
#[macro_export]
macro_rules! backend_suite {
    (servers: $($name:ident),* $(,)?) => {
        mod mariadb {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Backend::MariaDb).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Backend::Postgres).await } )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Backend::Sqlite).await } )*
        }
        $crate::backend_suite!(servers: $($name),*);
    };
}

/// Waits for a condition the test cannot be notified of, and returns its value.
///
/// `check` is called until it returns `Ok(value)` (first after 5 ms, then backing off to
/// 50 ms); `Err(observed)` means "not yet" and carries what it saw. After `timeout` the test
/// fails naming `what` was awaited and the last observation. [`until`] builds the `Result`
/// from an observation and the condition it must meet.
/// The host's logs in the test's captured output, when `RUST_LOG` asks for them (e.g.
/// `RUST_LOG=switchyard=debug cargo test ... -- --nocapture` to see why a test waited).
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub async fn eventually<T, O, F, Fut>(what: impl Display, timeout: Duration, mut check: F) -> T
where
    O: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, O>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        let observed = match check().await {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last observed: {observed:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// `Ok(observed)` when it meets `holds`, else `Err(observed)`: the usual body of an
/// [`eventually`] check.
pub fn until<O>(observed: O, holds: impl FnOnce(&O) -> bool) -> Result<O, O> {
    if holds(&observed) {
        Ok(observed)
    } else {
        Err(observed)
    }
}
