//! Outbox-table indexes and SmartFlow's AutoMigrate: GORM looks an index up by its name on the
//! table and creates it when the name is missing, so on MySQL/MariaDB (index names per table)
//! every outbox table must carry GORM's names, `idx_outbox_status_next` (status,
//! next_retry_at, biz_type) and `idx_outbox_service_name` (service_name), and no index may be
//! there twice under two names. On PostgreSQL index names are per schema, so five tables cannot
//! share GORM's names: new tables get table-prefixed names, and a table that already has the
//! index under any name keeps it without a duplicate.

use crate::adopt::{SMARTFLOW_MYSQL, SMARTFLOW_POSTGRES};
use crate::fleet;
use crate::support::Backend;
use crate::testdb::{self, TestDb};
use std::collections::BTreeMap;

crate::backend_suite!(servers:
    a_smartflow_table_keeps_gorms_index_names_and_gets_no_duplicate,
    a_table_from_an_earlier_switchyard_migrate_ends_with_gorms_names_and_no_duplicate,
);

const TABLE: &str = "probe_outbox_messages";
const GORM_STATUS: (&str, &str) = ("idx_outbox_status_next", "status,next_retry_at,biz_type");
const GORM_SERVICE: (&str, &str) = ("idx_outbox_service_name", "service_name");
const CLAIM: &str = "status,next_retry_at,id";

/// The probe table's indexes: name -> columns in key order, comma separated.
async fn indexes(db: &TestDb) -> BTreeMap<String, String> {
    let sql = match db {
        TestDb::Postgres(..) => format!(
            "SELECT string_agg(name || '=' || cols, ';') FROM (SELECT c.relname AS name, \
             string_agg(a.attname, ',' ORDER BY k.ord) AS cols FROM pg_index x \
             JOIN pg_class c ON c.oid = x.indexrelid \
             JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
             WHERE x.indrelid = '{TABLE}'::regclass GROUP BY c.relname) i"
        ),
        _ => format!(
            "SELECT GROUP_CONCAT(CONCAT(name, '=', cols) SEPARATOR ';') FROM (SELECT \
             index_name AS name, GROUP_CONCAT(column_name ORDER BY seq_in_index) AS cols \
             FROM information_schema.statistics WHERE table_schema = DATABASE() \
             AND table_name = '{TABLE}' GROUP BY index_name) i"
        ),
    };
    db.text(&sql)
        .await
        .split(';')
        .filter_map(|i| i.split_once('='))
        .map(|(name, cols)| (name.to_owned(), cols.to_owned()))
        .collect()
}

/// Every index is there once: no two names on the same columns.
fn assert_no_duplicate(indexes: &BTreeMap<String, String>) {
    let mut seen = BTreeMap::new();
    for (name, cols) in indexes {
        if let Some(first) = seen.insert(cols, name) {
            panic!("({cols}) is indexed twice, as {first} and {name}: {indexes:?}");
        }
    }
}

/// The name of the index on exactly `cols`.
fn named<'a>(indexes: &'a BTreeMap<String, String>, cols: &str) -> &'a str {
    indexes
        .iter()
        .find(|(_, c)| *c == cols)
        .map(|(n, _)| n.as_str())
        .unwrap_or_else(|| panic!("no index on ({cols}): {indexes:?}"))
}

async fn a_smartflow_table_keeps_gorms_index_names_and_gets_no_duplicate(backend: Backend) {
    let _server = testdb::SERVERS.clone().read_owned().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    db.exec(match backend {
        Backend::Postgres => SMARTFLOW_POSTGRES,
        _ => SMARTFLOW_MYSQL,
    })
    .await;
    let config = fleet::write_config(dir.path(), &url, |t| t);
    let host = fleet::open(&config).await; // migrates
    let after = indexes(&db).await;
    assert_no_duplicate(&after);
    for (name, cols) in [GORM_STATUS, GORM_SERVICE] {
        assert_eq!(named(&after, cols), name, "GORM's index kept: {after:?}");
    }
    named(&after, CLAIM); // Switchyard's claim index is added beside them
    host.migrate().await.unwrap();
    assert_eq!(
        indexes(&db).await,
        after,
        "a second migrate changes nothing"
    );
    db.drop_database().await;
}

async fn a_table_from_an_earlier_switchyard_migrate_ends_with_gorms_names_and_no_duplicate(
    backend: Backend,
) {
    let _server = testdb::SERVERS.clone().read_owned().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = testdb::fresh(backend, dir.path()).await;
    let config = fleet::write_config(dir.path(), &url, |t| t);
    let host = fleet::open(&config).await;
    if backend == Backend::MariaDb {
        // The table as an earlier Switchyard left it: its templates 1-3 applied, with the
        // names template 1 gave SmartFlow's two indexes (and `idx_claim`).
        db.exec(&format!(
            "ALTER TABLE {TABLE} RENAME INDEX idx_outbox_status_next TO idx_status_next_retry_biz, \
             RENAME INDEX idx_outbox_service_name TO idx_service_name"
        ))
        .await;
        db.exec(&format!(
            "DELETE FROM switchyard_outbox_migrations WHERE table_name = '{TABLE}' AND version = 4"
        ))
        .await;
        let before = indexes(&db).await;
        assert_eq!(named(&before, GORM_STATUS.1), "idx_status_next_retry_biz");
        host.migrate().await.unwrap();
    }
    let after = indexes(&db).await;
    assert_no_duplicate(&after);
    let expected = match backend {
        Backend::Postgres => [
            (format!("idx_{TABLE}_status_next_retry_biz"), GORM_STATUS.1),
            (format!("idx_{TABLE}_service_name"), GORM_SERVICE.1),
            (format!("idx_{TABLE}_claim"), CLAIM),
        ],
        _ => [
            (GORM_STATUS.0.to_owned(), GORM_STATUS.1),
            (GORM_SERVICE.0.to_owned(), GORM_SERVICE.1),
            ("idx_claim".to_owned(), CLAIM),
        ],
    };
    for (name, cols) in &expected {
        assert_eq!(named(&after, cols), name.as_str(), "{after:?}");
    }
    host.migrate().await.unwrap();
    assert_eq!(
        indexes(&db).await,
        after,
        "a second migrate changes nothing"
    );
    db.drop_database().await;
}
