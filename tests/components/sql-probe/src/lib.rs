//! A test component (contract 0.2.0) that runs the `sql` statements its payload lists, in
//! order, then ends as the payload says — so one component proves every path of the `sql`
//! import: typed parameters and values, grants, budgets, errors, savepoints.
//!
//! ```json
//! {"steps": [{"execute": "INSERT INTO t (a, b) VALUES (?, ?)", "params": [1, "x"]},
//!            {"query": "SELECT a, b FROM t", "params": []},
//!            {"execute": "INSERT INTO t (a) VALUES (?)", "params": [1], "tolerate": "constraint"}],
//!  "action": "ack", "results": "res"}
//! ```
//!
//! Parameters: JSON null, booleans, integers, floats and strings map to the WIT values of the
//! same kind; `{"blob": [1, 2]}` is a blob. A step that fails ends the invocation `dead` with
//! the reason `step N: <kind>: <message>` (so a test reads the error kind from the row), unless
//! its `tolerate` names that kind. With `results`, every step's result is written as JSON into
//! state key `results/<results>` before the action. Actions: `ack` (default), `retry`, `dead`,
//! `trap`, `loop` (spins until the deadline).

// Built lean: the allocator that keeps a fresh instance from growing its memory.
extern crate switchyard_lean_alloc;

mod bindings {
    wit_bindgen::generate!({ world: "service-handler", path: "../../../wit" });
}

use bindings::exports::switchyard::handler::handler::Guest;
use bindings::switchyard::handler::sql::{self, Value};
use bindings::switchyard::handler::state;
use bindings::switchyard::handler::types::{Event, Outcome, RetryRequest};
use serde::Deserialize;
use serde_json::{Value as Json, json};

struct Component;
bindings::export!(Component with_types_in bindings);

#[derive(Deserialize, Default)]
#[serde(default)]
struct Script {
    steps: Vec<Step>,
    action: String,
    results: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Step {
    query: Option<String>,
    execute: Option<String>,
    params: Vec<Json>,
    /// An error kind (`constraint`, `refused`, `budget`, `database`) that does not end the run.
    tolerate: Option<String>,
}

fn param(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(o) => Value::Blob(
            o.get("blob")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_u64).map(|b| b as u8).collect())
                .unwrap_or_default(),
        ),
        Json::Array(_) => Value::Text(v.to_string()),
    }
}

fn value(v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Integer(i) => json!(i),
        Value::Real(f) => json!(f),
        Value::Text(s) => json!(s),
        Value::Blob(b) => json!({ "blob": b }),
    }
}

fn error(e: &sql::Error) -> (&'static str, &str) {
    match e {
        sql::Error::Refused(m) => ("refused", m),
        sql::Error::Budget(m) => ("budget", m),
        sql::Error::Constraint(m) => ("constraint", m),
        sql::Error::Database(m) => ("database", m),
    }
}

impl Guest for Component {
    fn handle(event: Event) -> Outcome {
        let script: Script = match serde_json::from_slice(&event.payload) {
            Ok(s) => s,
            Err(e) => return Outcome::Dead(format!("sql-probe payload is not a script: {e}")),
        };
        let mut results = Vec::new();
        for (n, step) in script.steps.iter().enumerate() {
            let params: Vec<Value> = step.params.iter().map(param).collect();
            let result = match (&step.query, &step.execute) {
                (Some(q), _) => sql::query(q, &params).map(|rows| {
                    json!({
                        "columns": rows.columns,
                        "rows": rows.rows.into_iter()
                            .map(|r| r.into_iter().map(value).collect::<Vec<_>>())
                            .collect::<Vec<_>>(),
                    })
                }),
                (None, Some(x)) => sql::execute(x, &params).map(|changed| json!(changed)),
                (None, None) => return Outcome::Dead(format!("step {n} has no statement")),
            };
            match result {
                Ok(r) => results.push(r),
                Err(e) => {
                    let (kind, message) = error(&e);
                    if step.tolerate.as_deref() != Some(kind) {
                        return Outcome::Dead(format!("step {n}: {kind}: {message}"));
                    }
                    results.push(json!({ "error": kind }));
                }
            }
        }
        if let Some(key) = &script.results
            && let Err(e) = state::set(
                &format!("results/{key}"),
                Json::Array(results).to_string().as_bytes(),
            )
        {
            return Outcome::Dead(format!("cannot record results: {e}"));
        }
        match script.action.as_str() {
            "" | "ack" => Outcome::Ack,
            "retry" => Outcome::Retry(RetryRequest {
                reason: "asked to retry".into(),
                delay_ms: None,
            }),
            "dead" => Outcome::Dead("asked to die".into()),
            "trap" => unreachable!("asked to trap"),
            "loop" => {
                let mut spins = 0u64;
                loop {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            }
            other => Outcome::Dead(format!("unknown action {other:?}")),
        }
    }
}
