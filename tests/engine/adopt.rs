//! Adopting an existing SmartFlow database: a table created with SmartFlow's own DDL and
//! filled by plain SQL (SmartFlow's columns only) is migrated in place (only additions, a
//! second migrate changes nothing) and its rows are relayed and consumed.

use crate::fleet;
use crate::support::Backend;
use crate::testdb::{self, TestDb};

/// SmartFlow's table as its MySQL migration (GORM's AutoMigrate) creates it: GORM's index
/// names, not ours.
pub(crate) const SMARTFLOW_MYSQL: &str = "CREATE TABLE probe_outbox_messages (
    id bigint NOT NULL AUTO_INCREMENT,
    biz_type varchar(64) NOT NULL,
    service_name varchar(64) NOT NULL DEFAULT '',
    topic varchar(128) NOT NULL,
    message_key varchar(128) NOT NULL DEFAULT '',
    payload longtext NOT NULL,
    status varchar(32) NOT NULL,
    retry_count int NOT NULL DEFAULT 0,
    max_retry int NOT NULL DEFAULT 20,
    next_retry_at datetime(3) NULL,
    last_error text NULL,
    published_at datetime(3) NULL,
    consumed_at datetime(3) NULL,
    created_at datetime(3) NULL,
    updated_at datetime(3) NULL,
    PRIMARY KEY (id),
    KEY idx_outbox_status_next (status, next_retry_at, biz_type),
    KEY idx_outbox_service_name (service_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// The same table in PostgreSQL types, as a team running SmartFlow on PostgreSQL would have it.
pub(crate) const SMARTFLOW_POSTGRES: &str = "CREATE TABLE probe_outbox_messages (
    id bigserial PRIMARY KEY,
    biz_type varchar(64) NOT NULL,
    service_name varchar(64) NOT NULL DEFAULT '',
    topic varchar(128) NOT NULL,
    message_key varchar(128) NOT NULL DEFAULT '',
    payload text NOT NULL,
    status varchar(32) NOT NULL,
    retry_count int NOT NULL DEFAULT 0,
    max_retry int NOT NULL DEFAULT 20,
    next_retry_at timestamp(3) NULL,
    last_error text NULL,
    published_at timestamp(3) NULL,
    consumed_at timestamp(3) NULL,
    created_at timestamp(3) NULL,
    updated_at timestamp(3) NULL
);
CREATE INDEX idx_outbox_status_next ON probe_outbox_messages (status, next_retry_at, biz_type);
CREATE INDEX idx_outbox_service_name ON probe_outbox_messages (service_name)";

// SmartFlow's tables live on MySQL (or PostgreSQL); there is no SQLite table to adopt.
crate::backend_suite!(servers: a_smartflow_table_is_adopted_in_place);

/// Columns (name, type, nullability, default) and indexes of the probe table, as text.
async fn schema(db: &TestDb) -> (String, String) {
    match db {
        TestDb::Postgres(..) => (
            db.text(
                "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable || ' ' \
                 || coalesce(column_default, ''), ', ' ORDER BY ordinal_position) \
                 FROM information_schema.columns WHERE table_name = 'probe_outbox_messages'",
            )
            .await,
            db.text(
                "SELECT string_agg(indexdef, '; ' ORDER BY indexname) FROM pg_indexes \
                 WHERE tablename = 'probe_outbox_messages'",
            )
            .await,
        ),
        _ => (
            db.text(
                "SELECT GROUP_CONCAT(CONCAT_WS(' ', column_name, column_type, is_nullable, \
                 IFNULL(column_default, '')) ORDER BY ordinal_position SEPARATOR ', ') \
                 FROM information_schema.columns WHERE table_schema = DATABASE() \
                 AND table_name = 'probe_outbox_messages'",
            )
            .await,
            db.text(
                "SELECT GROUP_CONCAT(CONCAT(index_name, ':', column_name) \
                 ORDER BY index_name, seq_in_index SEPARATOR ', ') \
                 FROM information_schema.statistics WHERE table_schema = DATABASE() \
                 AND table_name = 'probe_outbox_messages'",
            )
            .await,
        ),
    }
}

/// A row as SmartFlow's producer writes it: its columns only, defaults for the rest.
fn smartflow_insert(n: usize) -> String {
    format!(
        "INSERT INTO probe_outbox_messages (biz_type, service_name, topic, message_key, payload, \
         status, next_retry_at, created_at, updated_at) VALUES ('probe.run', 'probe', \
         'smartflow.probe.outbox', 'user-{n}', '{{\"event_id\":\"e{n}\",\"event_type\":\"probe.run\",\
         \"event_version\":\"v1\",\"payload\":{{\"set\":{{\"adopted/{n}\":\"yes\"}}}}}}', 'pending', \
         '2000-01-01 00:00:00', '2000-01-01 00:00:00', '2000-01-01 00:00:00')"
    )
}

async fn a_smartflow_table_is_adopted_in_place(backend: Backend) {
    let _server = testdb::SERVERS.clone().read_owned().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    db.exec(match backend {
        Backend::Postgres => SMARTFLOW_POSTGRES,
        _ => SMARTFLOW_MYSQL,
    })
    .await;
    for n in 0..20 {
        db.exec(&smartflow_insert(n)).await;
    }
    let (columns_before, indexes_before) = schema(&db).await;
    let config = fleet::write_config(dir.path(), &url, |t| t);

    let host = fleet::open(&config).await; // migrates
    let (columns, indexes) = schema(&db).await;
    assert!(
        columns.starts_with(&columns_before),
        "SmartFlow's columns are kept as they were:\nbefore {columns_before}\nafter  {columns}"
    );
    let added = &columns[columns_before.len()..];
    assert!(
        added.contains("handler_version")
            && added.contains("publish_count")
            && added.contains("traceparent"),
        "only Switchyard's columns are added: {added}"
    );
    let separator = if backend == Backend::Postgres {
        "; "
    } else {
        ", "
    };
    for index in indexes_before.split(separator) {
        assert!(indexes.contains(index), "index {index} kept: {indexes}");
    }
    let claim = match backend {
        Backend::Postgres => "(status, next_retry_at, id)",
        _ => "idx_claim:status, idx_claim:next_retry_at, idx_claim:id",
    };
    assert!(
        indexes.contains(claim),
        "the claim index is added: {indexes}"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM probe_outbox_messages")
            .await,
        20
    );

    host.migrate().await.unwrap();
    assert_eq!(
        schema(&db).await,
        (columns, indexes),
        "a second migrate changes nothing"
    );

    let running = host
        .start(std::sync::Arc::new(
            switchyard::transport::embedded::EmbeddedTransport::new(),
        ))
        .await
        .unwrap();
    // The existing producer keeps writing while the host runs.
    db.exec(&smartflow_insert(20)).await;
    fleet::wait_for(
        &db,
        "SELECT COUNT(*) FROM probe_outbox_messages WHERE status = 'consumed'",
        21,
    )
    .await;
    for n in [0, 7, 20] {
        assert_eq!(
            db.state("probe", &format!("adopted/{n}")).await.as_deref(),
            Some(&b"yes"[..])
        );
    }
    assert!(running.shutdown(std::time::Duration::from_secs(10)).await);
    db.drop_database().await;
}
