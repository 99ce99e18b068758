//! A route's `sql` grant as the runtime holds it: the granted tables, and the statements
//! already checked against them (a handler runs the same few statements for every event, and
//! parsing one costs more than running it on a warm connection).

use super::sql_check::{self, Access, Backend, Checked};
use crate::config::SqlGrant as GrantConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Distinct statements remembered per route; past it the memory starts over (a handler that
/// builds statements with values spliced in gains nothing from it, and cannot grow it).
const CHECKED_CAPACITY: usize = 256;

/// Statements already checked, by backend, then text (so a lookup borrows the text): the
/// checked statement or the refusal.
type CheckedStatements = HashMap<Backend, HashMap<String, Result<Arc<Checked>, String>>>;

#[derive(Debug, Default)]
pub struct SqlGrant {
    tables: BTreeMap<String, Access>,
    checked: Mutex<CheckedStatements>,
}

impl SqlGrant {
    pub fn from_config(config: &GrantConfig) -> SqlGrant {
        SqlGrant {
            tables: config.tables.clone(),
            checked: Mutex::default(),
        }
    }

    /// `sql` checked against the grant for `backend` ([`sql_check::check`]), remembered.
    ///
    /// # Errors
    /// Why the statement is refused.
    pub fn check(&self, backend: Backend, sql: &str) -> Result<Arc<Checked>, String> {
        if let Some(known) = self.lock().get(&backend).and_then(|m| m.get(sql)) {
            return known.clone();
        }
        let result = sql_check::check(backend, &self.tables, sql).map(Arc::new);
        let mut checked = self.lock();
        let statements = checked.entry(backend).or_default();
        if statements.len() >= CHECKED_CAPACITY {
            statements.clear();
        }
        statements.insert(sql.to_owned(), result.clone());
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CheckedStatements> {
        self.checked.lock().unwrap_or_else(|p| p.into_inner())
    }
}
