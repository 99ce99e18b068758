//! Checking a handler's SQL statement (the `sql` import) against its route's grant before it
//! reaches the database.
//!
//! The statement is parsed with the backend's own dialect and refused unless it is exactly one
//! SELECT, INSERT (with ON DUPLICATE KEY / ON CONFLICT), UPDATE or DELETE whose every table
//! reference is a bare name granted to the route: read for every table it reads, read-write
//! for the tables it writes. Deny by default: no DDL, no `SET`/`CALL`, no second statement, no
//! schema-qualified names (so no system schema), no table functions, no `SELECT ... INTO`, and
//! only the functions of an allow-list (so no `LOAD_FILE`, `pg_read_file`, `dblink`, ...).
//! What runs is the statement as parsed and checked, rendered again from its syntax tree; the
//! guest writes `?` placeholders, numbered `$1, $2, ...` for PostgreSQL.

use sqlparser::ast::{
    Expr, ObjectName, Query, SetExpr, SqliteOnConflict, Statement, TableFactor, Value, Visitor,
    visit_expressions, visit_relations,
};
use sqlparser::dialect::{Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

pub use crate::config::TableAccess as Access;
pub use crate::handler_sql::Backend;

/// A statement that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The statement to run, rendered for the backend.
    pub sql: String,
    /// How many parameters it binds.
    pub params: usize,
    /// Whether it writes (INSERT, UPDATE, DELETE).
    pub writes: bool,
    /// Each placeholder's (table, column), in binding order, where the statement names it
    /// plainly (`sql_targets`).
    pub targets: Vec<Option<(String, String)>>,
}

/// Functions a statement may call: plain scalar and aggregate functions that read nothing but
/// their arguments. Anything else (files, other servers, sleeps, the session) is refused.
const FUNCTIONS: &[&str] = &[
    "abs",
    "avg",
    "ceil",
    "ceiling",
    "char_length",
    "coalesce",
    "concat",
    "count",
    "date",
    "excluded",
    "floor",
    "greatest",
    "ifnull",
    "least",
    "length",
    "lower",
    "ltrim",
    "max",
    "min",
    "mod",
    "now",
    "nullif",
    "replace",
    "round",
    "rtrim",
    "substr",
    "substring",
    "sum",
    "trim",
    "upper",
    "values",
];

/// Checks `sql` against `grants` (table → access) for `backend`.
///
/// # Errors
/// What is wrong with the statement and how to fix it (a parse error, a statement kind, a
/// table without a grant or with a read-only one, a function outside the allow-list, ...).
pub fn check(
    backend: Backend,
    grants: &BTreeMap<String, Access>,
    sql: &str,
) -> Result<Checked, String> {
    let dialect: &dyn Dialect = match backend {
        Backend::Sqlite => &SQLiteDialect {},
        Backend::MySql => &MySqlDialect {},
        Backend::Postgres => &PostgreSqlDialect {},
    };
    // PostgreSQL's dialect reads `?` as an operator: the guest's placeholders are numbered
    // `$1, $2, ...` in the text first (only the `?` tokens, found by a tokenizer, so a `?`
    // inside a string literal stays as it is).
    let numbered;
    let sql = if backend == Backend::Postgres {
        numbered = number_question_marks(sql)?;
        numbered.as_str()
    } else {
        sql
    };
    let mut statements =
        Parser::parse_sql(dialect, sql).map_err(|e| format!("statement does not parse: {e}"))?;
    if statements.len() != 1 {
        return Err(format!(
            "exactly one statement per call, got {}: split them into separate calls",
            statements.len()
        ));
    }
    let statement = statements.remove(0);
    let writes = match &statement {
        Statement::Query(_) => false,
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => true,
        other => {
            let kind = other.to_string();
            let kind = kind.split_whitespace().next().unwrap_or("?").to_uppercase();
            return Err(format!(
                "{kind} statements are not allowed: only SELECT, INSERT, UPDATE and DELETE"
            ));
        }
    };
    // SQLite's `OR ROLLBACK` would end the whole consume transaction, not just the statement.
    let or = match &statement {
        Statement::Insert(insert) => insert.or,
        Statement::Update(update) => update.or,
        _ => None,
    };
    if or == Some(SqliteOnConflict::Rollback) {
        return Err(
            "OR ROLLBACK is not allowed: it would roll back the host's transaction; use OR \
             IGNORE, OR REPLACE or handle the constraint error"
                .into(),
        );
    }
    let mut seen = Seen::default();
    if let ControlFlow::Break(e) = sqlparser::ast::Visit::visit(&statement, &mut seen) {
        return Err(e);
    }
    for table in written_tables(&statement) {
        match grants.get(&table) {
            Some(Access::ReadWrite) => {}
            Some(Access::Read) => {
                return Err(format!(
                    "table {table} is granted read-only to this route: grant it \"rw\" to write it"
                ));
            }
            None => return Err(not_granted(&table)),
        }
    }
    for table in seen.tables.difference(&seen.ctes) {
        if !grants.contains_key(table) {
            return Err(not_granted(table));
        }
    }
    let params = count_placeholders(&statement, backend)?;
    let tables: Vec<&String> = seen.tables.difference(&seen.ctes).collect();
    let table = match tables.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let targets = super::sql_targets::placeholder_columns(&statement, table);
    Ok(Checked {
        sql: statement.to_string(),
        params,
        writes,
        targets,
    })
}

fn not_granted(table: &str) -> String {
    format!(
        "table {table} is not granted to this route: add it to the route's \
         sql = {{ tables = {{ {table} = \"r\" }} }} (or \"rw\")"
    )
}

/// What a walk over the statement found: table references, CTE names.
#[derive(Default)]
struct Seen {
    tables: BTreeSet<String>,
    ctes: BTreeSet<String>,
}

impl Visitor for Seen {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if let Some(with) = &query.with {
            self.ctes.extend(
                with.cte_tables
                    .iter()
                    .map(|c| c.alias.name.value.to_lowercase()),
            );
        }
        if let SetExpr::Select(select) = query.body.as_ref()
            && select.into.is_some()
        {
            return ControlFlow::Break("SELECT ... INTO is not allowed: it creates a table".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<String> {
        match bare_name(relation) {
            Ok(name) => {
                self.tables.insert(name);
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        match factor {
            TableFactor::Table { args: None, .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!(
                "{other} is not allowed in FROM: only granted tables and subqueries"
            )),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        if let Expr::Function(f) = expr {
            let name = f.name.to_string().to_lowercase();
            if !FUNCTIONS.contains(&name.as_str()) {
                return ControlFlow::Break(format!(
                    "function {} is not allowed: use plain scalar and aggregate functions ({})",
                    f.name,
                    FUNCTIONS.join(", ")
                ));
            }
        }
        ControlFlow::Continue(())
    }
}

/// A table name as granted: one part, no schema, compared in lowercase.
fn bare_name(name: &ObjectName) -> Result<String, String> {
    if name.0.len() != 1 {
        return Err(format!(
            "table {name} is schema-qualified: use the bare name of a granted table"
        ));
    }
    Ok(name.to_string().trim_matches(['`', '"']).to_lowercase())
}

/// The tables a writing statement writes: INSERT's target, UPDATE's tables (with their joins:
/// a multi-table UPDATE may write any of them), DELETE's targets.
fn written_tables(statement: &Statement) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |name: &ObjectName| {
        if let Ok(n) = bare_name(name) {
            out.insert(n);
        }
        ControlFlow::<()>::Continue(())
    };
    match statement {
        Statement::Insert(insert) => {
            let _ = visit_relations(&insert.table, &mut add);
        }
        Statement::Update(update) => {
            let _ = visit_relations(&update.table, &mut add);
        }
        Statement::Delete(delete) if !delete.tables.is_empty() => {
            for t in &delete.tables {
                let _ = add(t);
            }
        }
        Statement::Delete(delete) => {
            let _ = visit_relations(&delete.from, &mut add);
        }
        _ => {}
    }
    out
}

/// Counts the statement's placeholders: `?` (the one style a guest writes), or on PostgreSQL
/// the `$n` that [`number_question_marks`] made of them. Any other style is refused, so a
/// statement binds exactly the parameters the guest passed, in the order it passed them.
fn count_placeholders(statement: &Statement, backend: Backend) -> Result<usize, String> {
    let mut count = 0;
    let flow = visit_expressions(statement, |expr| {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &v.value
        {
            count += 1;
            let expected = match backend {
                Backend::Postgres => p.starts_with('$'),
                Backend::Sqlite | Backend::MySql => p == "?",
            };
            if !expected {
                return ControlFlow::Break(format!(
                    "placeholder {p} is not allowed: write ? for each parameter"
                ));
            }
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(count),
    }
}

/// `sql` with each `?` placeholder token replaced by `$1, $2, ...` in order (PostgreSQL's
/// style); a placeholder of another style written by the guest is refused.
fn number_question_marks(sql: &str) -> Result<String, String> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| format!("statement does not parse: {e}"))?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let (mut out, mut copied, mut n) = (String::with_capacity(sql.len() + 8), 0, 0);
    for t in tokens {
        let Token::Placeholder(p) = &t.token else {
            continue;
        };
        if p != "?" {
            return Err(format!(
                "placeholder {p} is not allowed: write ? for each parameter"
            ));
        }
        // Locations are 1-based lines and characters.
        let start = line_starts[(t.span.start.line as usize).saturating_sub(1)];
        let offset = sql[start..]
            .char_indices()
            .nth((t.span.start.column as usize).saturating_sub(1))
            .map(|(i, _)| start + i)
            .ok_or_else(|| "statement does not parse: a placeholder out of place".to_owned())?;
        n += 1;
        out.push_str(&sql[copied..offset]);
        out.push_str(&format!("${n}"));
        copied = offset + 1;
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

#[cfg(test)]
mod tests;
