//! A batch's database access as the consumer serves it (the engine's `BatchState`, minus its
//! failure handling): the batch's earlier state writes first, then one consume transaction,
//! opened at the first state read or `sql` statement, in which the batch's outcomes are applied
//! and committed. The `handler` and `limits` scenarios use it, so the task component's `sql`
//! statements (a SELECT and an INSERT or UPDATE of `tasks` per event) run as in the host, and
//! the native baseline runs the very same statements through it.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchyard::handler_sql::{
    Backend, RowAllowance, SqlFailure, SqlOutput, SqlStatement, SqlValue,
};
use switchyard::runtime::{BatchAccess, Policy, StateWrite};
use switchyard::store::{Backoff, BatchOutcomes, ConsumeTx, Store, now};

/// What one batch's handlers reach of the database.
pub struct BatchTx {
    store: Arc<dyn Store>,
    overlay: Mutex<HashMap<String, Option<Vec<u8>>>>,
    tx: tokio::sync::Mutex<Option<Box<dyn ConsumeTx>>>,
}

impl BatchTx {
    pub fn new(store: Arc<dyn Store>) -> BatchTx {
        BatchTx {
            store,
            overlay: Mutex::new(HashMap::new()),
            tx: tokio::sync::Mutex::new(None),
        }
    }

    /// Makes an acknowledged invocation's writes visible to the batch's later handlers.
    pub fn remember(&self, writes: &[StateWrite]) {
        let mut overlay = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in writes {
            overlay.insert(k.clone(), v.clone());
        }
    }

    /// Applies the batch's outcomes in its transaction (or in one of their own when no handler
    /// touched the database) and commits.
    ///
    /// # Errors
    /// The store's.
    pub async fn commit(&self, table: &str, outcomes: &BatchOutcomes) -> anyhow::Result<()> {
        let backoff = Backoff {
            base: std::time::Duration::from_secs(1),
            max: std::time::Duration::from_secs(32),
        };
        match self.tx.lock().await.take() {
            Some(mut tx) => {
                tx.apply(table, outcomes, &backoff, now()).await?;
                tx.commit().await?;
            }
            None => {
                self.store.apply(table, outcomes, &backoff, now()).await?;
            }
        }
        Ok(())
    }

    /// Commits the batch's statements without outcomes (the `limits` scenario has no rows).
    ///
    /// # Errors
    /// The store's.
    pub async fn finish(&self) -> anyhow::Result<()> {
        if let Some(tx) = self.tx.lock().await.take() {
            tx.commit().await?;
        }
        Ok(())
    }

    async fn open(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Box<dyn ConsumeTx>>>, String> {
        let mut tx = self.tx.lock().await;
        if tx.is_none() {
            *tx = Some(
                self.store
                    .begin_consume()
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(tx)
    }
}

#[async_trait]
impl BatchAccess for BatchTx {
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self
            .overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(v.clone());
        }
        let mut tx = self.open().await?;
        let tx = tx.as_mut().ok_or("no transaction")?;
        tx.state_get_locked(service, key)
            .await
            .map_err(|e| e.to_string())
    }

    fn backend(&self) -> Option<Backend> {
        Some(self.store.backend())
    }

    async fn sql(
        &self,
        statement: SqlStatement<'_>,
        allowance: RowAllowance,
    ) -> Result<SqlOutput, SqlFailure> {
        let mut tx = self.open().await.map_err(SqlFailure::Broken)?;
        let tx = tx
            .as_mut()
            .ok_or_else(|| SqlFailure::Broken("no transaction".into()))?;
        tx.run_sql(statement, allowance).await
    }
}

/// The task component's two statements (plugins/task/src/store.rs `save`), checked against the
/// route's grant and rendered for the backend once, as the `sql` import does.
pub struct TaskStatements {
    select: Arc<switchyard::runtime::sql_check::Checked>,
    update: Arc<switchyard::runtime::sql_check::Checked>,
    insert: Arc<switchyard::runtime::sql_check::Checked>,
}

const ALLOW: RowAllowance = RowAllowance {
    rows: 1000,
    bytes: 1 << 20,
};

impl TaskStatements {
    /// # Errors
    /// The route has no `sql` grant on `tasks`.
    pub fn new(policy: &Policy, backend: Backend) -> anyhow::Result<TaskStatements> {
        let grant = policy
            .sql
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the task route has no sql grant"))?;
        let check = |s: &str| grant.check(backend, s).map_err(|e| anyhow::anyhow!(e));
        Ok(TaskStatements {
            select: check("SELECT user_id, priority, completed FROM tasks WHERE id = ?")?,
            update: check(
                "UPDATE tasks SET user_id = ?, title = ?, priority = ?, urgency_threshold_at = ?, \
                 completed = ?, conversation_id = ?, updated_at = ? WHERE id = ?",
            )?,
            insert: check(
                "INSERT INTO tasks (id, user_id, title, priority, urgency_threshold_at, completed, \
                 conversation_id, updated_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?,
        })
    }

    /// `save`: the task's row is read, then updated or inserted. `values` are the seven
    /// columns after `id` (user_id .. updated_at), as the component binds them.
    ///
    /// # Errors
    /// A failed statement.
    pub async fn save(
        &self,
        batch: &BatchTx,
        id: i64,
        values: Vec<SqlValue>,
    ) -> anyhow::Result<()> {
        let found = run(batch, &self.select, &[SqlValue::Int(id)]).await?;
        let exists = matches!(found, SqlOutput::Rows { ref rows, .. } if !rows.is_empty());
        if exists {
            let mut params = values;
            params.push(SqlValue::Int(id));
            run(batch, &self.update, &params).await?;
        } else {
            let mut params = vec![SqlValue::Int(id)];
            let now = values.last().cloned().unwrap_or(SqlValue::Null);
            params.extend(values);
            params.push(now);
            run(batch, &self.insert, &params).await?;
        }
        Ok(())
    }
}

async fn run(
    batch: &BatchTx,
    checked: &switchyard::runtime::sql_check::Checked,
    params: &[SqlValue],
) -> anyhow::Result<SqlOutput> {
    batch
        .sql(
            SqlStatement {
                sql: &checked.sql,
                params,
                writes: checked.writes,
                targets: &checked.targets,
                careful: false,
            },
            ALLOW,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}
