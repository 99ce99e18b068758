//! The `sql` import (contract 0.2.0): checks a handler's statement against its route's grant,
//! charges the invocation's budgets, and runs it through the engine's [`BatchAccess`] on the
//! batch's transaction. Every problem is an error value, never a trap, except the deadline: a
//! statement the server stopped at the invocation's statement limit ends the invocation as its
//! deadline would ([`StatementCutOff`]). A database failure other than a constraint marks the
//! invocation: it is retried whatever it returns, and its later statements are refused at once.

use super::bindings::v0_2::switchyard::handler::sql::{self, Rows, Value};
use super::invocation::{Invocation, StatementCutOff};
use crate::handler_sql::{RowAllowance, SqlFailure, SqlOutput, SqlStatement, SqlValue};

impl sql::Host for Invocation {
    async fn query(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, sql::Error>> {
        Ok(match self.run_sql(&statement, params, false).await? {
            Ok(SqlOutput::Rows { columns, rows, .. }) => Ok(Rows {
                columns,
                rows: rows
                    .into_iter()
                    .map(|row| row.into_iter().map(to_wit).collect())
                    .collect(),
            }),
            Ok(SqlOutput::Changed(_)) => Err(sql::Error::Refused(
                "query must run a SELECT: use execute for INSERT, UPDATE and DELETE".into(),
            )),
            Err(e) => Err(e),
        })
    }

    async fn execute(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, sql::Error>> {
        Ok(match self.run_sql(&statement, params, true).await? {
            Ok(SqlOutput::Changed(n)) => Ok(n),
            Ok(SqlOutput::Rows { .. }) => Err(sql::Error::Refused(
                "execute must run an INSERT, UPDATE or DELETE: use query for SELECT".into(),
            )),
            Err(e) => Err(e),
        })
    }
}

impl Invocation {
    /// Checks and runs one statement. `Err` (a trap) only when the server stopped it at the
    /// invocation's statement limit: the invocation has run out its deadline.
    async fn run_sql(
        &mut self,
        statement: &str,
        params: Vec<Value>,
        writes: bool,
    ) -> wasmtime::Result<Result<SqlOutput, sql::Error>> {
        let (checked, params) = match self.admit_sql(statement, params, writes) {
            Ok(admitted) => admitted,
            Err(refused) => return Ok(Err(refused)),
        };
        let (rows, bytes) = self.budget.sql_allowance(&self.policy.limits);
        let ran = self
            .batch
            .sql(
                SqlStatement {
                    sql: &checked.sql,
                    params: &params,
                    writes,
                    targets: &checked.targets,
                    // The engine's to decide (its batch's run): `BatchState` sets it.
                    careful: false,
                },
                RowAllowance { rows, bytes },
            )
            .await;
        Ok(match ran {
            Ok(output) => {
                if let SqlOutput::Rows { rows, bytes, .. } = &output {
                    self.budget.spend_sql_rows(rows.len() as u64, *bytes);
                }
                Ok(output)
            }
            Err(SqlFailure::Constraint(e)) => Err(sql::Error::Constraint(e)),
            Err(SqlFailure::Budget(e)) => Err(sql::Error::Budget(e)),
            Err(SqlFailure::Statement(e) | SqlFailure::Broken(e)) => {
                self.sql_failure = Some(e.clone());
                Err(sql::Error::Database(e))
            }
            Err(SqlFailure::CutOff(e)) => return Err(StatementCutOff(e).into()),
        })
    }

    /// The statement as the route's grant allows it, with its parameters, its budget charged;
    /// or why it does not reach the database.
    fn admit_sql(
        &mut self,
        statement: &str,
        params: Vec<Value>,
        writes: bool,
    ) -> Result<(std::sync::Arc<super::sql_check::Checked>, Vec<SqlValue>), sql::Error> {
        if let Some(reason) = &self.sql_failure {
            return Err(sql::Error::Database(format!(
                "an earlier statement of this invocation failed, so it will be retried: {reason}"
            )));
        }
        let Some(grant) = self.policy.sql.clone() else {
            return Err(sql::Error::Refused(
                "this route has no sql grant: add sql = { tables = { ... } } to it".into(),
            ));
        };
        let Some(backend) = self.batch.backend() else {
            return Err(sql::Error::Database("no database is attached here".into()));
        };
        let checked = grant
            .check(backend, statement)
            .map_err(sql::Error::Refused)?;
        if checked.writes != writes {
            let (call, other) = if writes {
                ("execute", "query for SELECT")
            } else {
                ("query", "execute for INSERT, UPDATE and DELETE")
            };
            return Err(sql::Error::Refused(format!(
                "{call} cannot run this statement: use {other}"
            )));
        }
        if checked.params != params.len() {
            return Err(sql::Error::Refused(format!(
                "the statement has {} placeholders but {} parameters were given",
                checked.params,
                params.len()
            )));
        }
        let params: Vec<SqlValue> = params.into_iter().map(from_wit).collect();
        let bytes = statement.len() + params.iter().map(SqlValue::size).sum::<usize>();
        self.budget
            .charge_sql_statement(&self.policy.limits, bytes)
            .map_err(sql::Error::Budget)?;
        Ok((checked, params))
    }
}

fn from_wit(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Bool(b),
        Value::Integer(i) => SqlValue::Int(i),
        Value::Real(f) => SqlValue::Float(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Bytes(b),
    }
}

fn to_wit(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Bool(b) => Value::Boolean(b),
        SqlValue::Int(i) => Value::Integer(i),
        SqlValue::Float(f) => Value::Real(f),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Bytes(b) => Value::Blob(b),
    }
}
