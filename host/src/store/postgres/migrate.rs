//! Schema on PostgreSQL: the host tables (`sqlx::migrate!`) and what the shared outbox-table
//! migration (`store/sql/migrate.rs`) needs to know of this server: the templates, and how to
//! read the catalog. Only ever adds: it must never rename, alter or drop what a table already
//! has.

use crate::store::sql::migrate::ServerSchema;
use crate::store::{StoreError, StoreResult};
use sqlx::PgPool;

/// Templates applied to every service's outbox table, in order; `{table}` is replaced by the
/// validated table name. Append only: an applied version is never edited.
const OUTBOX_TEMPLATES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../../migrations/postgres/outbox/0001_smartflow_table.sql"),
    ),
    (
        2,
        include_str!("../../../../migrations/postgres/outbox/0002_switchyard_columns.sql"),
    ),
    (
        3,
        include_str!("../../../../migrations/postgres/outbox/0003_chain_depth.sql"),
    ),
    (
        4,
        include_str!("../../../../migrations/postgres/outbox/0004_traceparent.sql"),
    ),
];

/// Counts the columns named `$2` of table `$1`.
const HAS_COLUMN: &str = "SELECT COUNT(*) FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2";

/// `(index name, column name)` of the indexes of table `$1`, columns in key order.
/// information_schema has no indexes in PostgreSQL: this reads pg_index.
const INDEX_COLUMNS: &str = "SELECT i.indexrelid::regclass::text, a.attname::text \
     FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
     WHERE i.indrelid = to_regclass($1) ORDER BY 1, k.ord";

/// Records an applied outbox template (a second host may have just recorded it too).
const RECORD_MIGRATION: &str = "INSERT INTO switchyard_outbox_migrations \
     (table_name, version, applied_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// What the shared outbox-table migration needs to know of this server.
pub(super) const SCHEMA: ServerSchema = ServerSchema {
    templates: OUTBOX_TEMPLATES,
    has_column: HAS_COLUMN,
    index_columns: INDEX_COLUMNS,
    record_migration: RECORD_MIGRATION,
};

/// Creates or upgrades the host tables.
pub(super) async fn host_tables(pool: &PgPool) -> StoreResult<()> {
    sqlx::migrate!("../migrations/postgres")
        .run(pool)
        .await
        .map_err(|e| StoreError::Migrate {
            target: "host tables".into(),
            source: e.into(),
        })
}
