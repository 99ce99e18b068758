//! The [`BatchAccess`] of `switchyard test`: state from a seed map in memory, and, for a
//! component importing `sql`, a scratch SQLite database in a temporary file (seeded by
//! `--sql-setup`, deleted afterwards) reached through the store's own consume transaction, so
//! statements run exactly as on the host's SQLite backend. Every statement is recorded for the
//! report.

use super::ToolError;
use crate::handler_sql::{Backend, RowAllowance, SqlFailure, SqlOutput, SqlStatement, SqlValue};
use crate::runtime::BatchAccess;
use crate::store::{ConsumeTx, Store};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One `sql` statement a handler ran, as the host ran it, and what came back.
#[derive(Debug, Clone, Serialize)]
pub struct SqlRecord {
    pub statement: String,
    pub params: Vec<String>,
    /// `3 rows`, `changed 1`, or the error the handler saw.
    pub result: String,
}

pub(super) struct MemoryBatch {
    state: BTreeMap<String, Vec<u8>>,
    sql: Option<ScratchDb>,
    records: Mutex<Vec<SqlRecord>>,
}

/// The scratch database: the store on it and the open transaction statements run in.
struct ScratchDb {
    tx: tokio::sync::Mutex<Box<dyn ConsumeTx>>,
    _store: Arc<dyn Store>,
    /// Dropped last: removes the file.
    _file: TempFile,
}

/// A temporary database file, removed (with SQLite's side files) when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal", ".host-lock"] {
            let mut name = self.0.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
}

impl MemoryBatch {
    pub(super) fn new(state: BTreeMap<String, Vec<u8>>) -> MemoryBatch {
        MemoryBatch {
            state,
            sql: None,
            records: Mutex::new(Vec::new()),
        }
    }

    /// Attaches a scratch SQLite database, first running `setup` (a script of statements, e.g.
    /// `examples/smartflow/schema/sqlite.sql`) on it.
    ///
    /// # Errors
    /// [`ToolError::BadInput`] when the setup script fails; [`ToolError::Setup`] when the
    /// temporary database cannot be created.
    pub(super) async fn with_sqlite(
        mut self,
        setup: Option<(&Path, String)>,
    ) -> Result<MemoryBatch, ToolError> {
        // A file rather than `:memory:`: the store's pool opens several connections, and each
        // would get its own empty in-memory database.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let file =
            std::env::temp_dir().join(format!("switchyard-test-{}-{nanos}.db", std::process::id()));
        let url = format!("sqlite://{}", file.display());
        let file = TempFile(file);
        let setup_err = |e: String| ToolError::Setup(format!("scratch database {url}: {e}"));
        let store = crate::store::open(&url)
            .await
            .map_err(|e| setup_err(e.to_string()))?;
        if let Some((path, script)) = setup {
            run_script(&url, &script)
                .await
                .map_err(|reason| ToolError::BadInput {
                    what: "sql setup",
                    path: path.to_owned(),
                    reason,
                })?;
        }
        let tx = store
            .begin_consume()
            .await
            .map_err(|e| setup_err(e.to_string()))?;
        self.sql = Some(ScratchDb {
            tx: tokio::sync::Mutex::new(tx),
            _store: store,
            _file: file,
        });
        Ok(self)
    }

    pub(super) fn sql_records(&self) -> Vec<SqlRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Runs a setup script on its own connection, committed before the handler's transaction.
async fn run_script(url: &str, script: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(script.to_owned()))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    conn.close().await.map_err(|e| e.to_string())
}

#[async_trait]
impl BatchAccess for MemoryBatch {
    async fn get(&self, _service: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        // One service per run: the seed is that service's state.
        Ok(self.state.get(key).cloned())
    }

    fn backend(&self) -> Option<Backend> {
        self.sql.as_ref().map(|_| Backend::Sqlite)
    }

    async fn sql(
        &self,
        statement: SqlStatement<'_>,
        allowance: RowAllowance,
    ) -> Result<SqlOutput, SqlFailure> {
        let Some(db) = &self.sql else {
            return Err(SqlFailure::Statement("no database is attached here".into()));
        };
        let ran = db.tx.lock().await.run_sql(statement, allowance).await;
        let result = match &ran {
            Ok(SqlOutput::Rows { rows, .. }) => format!("{} rows", rows.len()),
            Ok(SqlOutput::Changed(n)) => format!("changed {n}"),
            Err(SqlFailure::Constraint(e)) => format!("constraint: {e}"),
            Err(SqlFailure::Budget(e)) => format!("budget: {e}"),
            Err(SqlFailure::Statement(e) | SqlFailure::Broken(e)) => format!("database: {e}"),
            Err(SqlFailure::CutOff(e)) => format!("stopped at the deadline: {e}"),
        };
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(SqlRecord {
                statement: statement.sql.to_owned(),
                params: statement.params.iter().map(show).collect(),
                result,
            });
        ran
    }
}

fn show(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".into(),
        SqlValue::Bool(b) => b.to_string(),
        SqlValue::Int(i) => i.to_string(),
        SqlValue::Float(f) => f.to_string(),
        SqlValue::Text(s) => format!("{s:?}"),
        SqlValue::Bytes(b) => format!("x'{}'", hex(b)),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
