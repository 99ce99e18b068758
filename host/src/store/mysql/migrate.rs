//! Schema on MySQL/MariaDB: the host tables (`sqlx::migrate!`) and what the shared outbox-table
//! migration (`store/sql/migrate.rs`) needs to know of this server: the templates, and how to
//! read the catalog. Only ever adds: it must never alter or drop what a table already has
//! (template 4 renames the two indexes template 1 created to GORM's names, nothing else).

use crate::store::sql::migrate::ServerSchema;
use crate::store::{StoreError, StoreResult};
use sqlx::MySqlPool;

/// Templates applied to every service's outbox table, in order; `{table}` is replaced by the
/// validated table name. Append only: an applied version is never edited.
const OUTBOX_TEMPLATES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../../migrations/mysql/outbox/0001_smartflow_table.sql"),
    ),
    (
        2,
        include_str!("../../../../migrations/mysql/outbox/0002_switchyard_columns.sql"),
    ),
    (
        3,
        include_str!("../../../../migrations/mysql/outbox/0003_chain_depth.sql"),
    ),
    (
        4,
        include_str!("../../../../migrations/mysql/outbox/0004_gorm_index_names.sql"),
    ),
    (
        5,
        include_str!("../../../../migrations/mysql/outbox/0005_traceparent.sql"),
    ),
];

/// Counts the columns named `?2` of table `?1`.
const HAS_COLUMN: &str = "SELECT COUNT(*) FROM information_schema.columns \
     WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?";

/// `(index name, column name)` of the indexes of table `?1`, columns in key order.
const INDEX_COLUMNS: &str = "SELECT index_name, column_name FROM information_schema.statistics \
     WHERE table_schema = DATABASE() AND table_name = ? ORDER BY index_name, seq_in_index";

/// Records an applied outbox template (a second host may have just recorded it too).
const RECORD_MIGRATION: &str = "INSERT IGNORE INTO switchyard_outbox_migrations \
     (table_name, version, applied_at) VALUES (?, ?, ?)";

/// What the shared outbox-table migration needs to know of this server.
pub(super) const SCHEMA: ServerSchema = ServerSchema {
    templates: OUTBOX_TEMPLATES,
    has_column: HAS_COLUMN,
    index_columns: INDEX_COLUMNS,
    record_migration: RECORD_MIGRATION,
};

/// Creates or upgrades the host tables.
pub(super) async fn host_tables(pool: &MySqlPool) -> StoreResult<()> {
    sqlx::migrate!("../migrations/mysql")
        .run(pool)
        .await
        .map_err(|e| StoreError::Migrate {
            target: "host tables".into(),
            source: e.into(),
        })
}
