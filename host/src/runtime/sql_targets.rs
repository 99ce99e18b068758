//! Which column each placeholder of a checked statement is bound to, where the statement says
//! so plainly: an INSERT's column list, `column = ?` in SET (and ON DUPLICATE KEY UPDATE / ON
//! CONFLICT DO UPDATE), and `column <op> ?`, `column BETWEEN ? AND ?`, `column IN (?, ...)`
//! comparisons, in a statement on one table. MySQL needs it to bind RFC 3339 text as a
//! `DATETIME` only where the column is one (it cannot say at bind time, and refuses `...Z` in a
//! datetime column); elsewhere the text stays text.

use sqlparser::ast::{
    Assignment, AssignmentTarget, BinaryOperator, Expr, InTarget, OnConflictAction, OnInsert,
    SetExpr, Statement, Value, visit_expressions,
};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// A placeholder's place in the text: (line, column).
type Place = (u64, u64);

/// Each placeholder's column, in text order (the order parameters bind in), `None` where the
/// statement does not name it plainly. `table` is the statement's one table, if it has one.
pub fn placeholder_columns(
    statement: &Statement,
    table: Option<&str>,
) -> Vec<Option<(String, String)>> {
    let mut places: BTreeMap<Place, Option<String>> = BTreeMap::new();
    let _ = visit_expressions(statement, |e| {
        if let Some(place) = placeholder(e) {
            places.insert(place, None);
        }
        ControlFlow::<()>::Continue(())
    });
    let Some(table) = table else {
        return places.into_values().map(|_| None).collect();
    };
    match statement {
        Statement::Insert(insert) => {
            if let Some(source) = &insert.source
                && let SetExpr::Values(values) = source.body.as_ref()
            {
                for row in &values.rows {
                    for (value, column) in row.content.iter().zip(&insert.columns) {
                        if let Some(last) = column.0.last() {
                            name(&mut places, value, &last.to_string());
                        }
                    }
                }
            }
            match &insert.on {
                Some(OnInsert::DuplicateKeyUpdate(list)) => assignments(&mut places, list),
                Some(OnInsert::OnConflict(c)) => {
                    if let OnConflictAction::DoUpdate(update) = &c.action {
                        assignments(&mut places, &update.assignments);
                    }
                }
                _ => {}
            }
        }
        Statement::Update(update) => assignments(&mut places, &update.assignments),
        _ => {}
    }
    let _ = visit_expressions(statement, |e| {
        match e {
            Expr::BinaryOp { left, op, right } if comparison(op) => {
                if let Some(column) = column_of(left) {
                    name(&mut places, right, &column);
                }
                if let Some(column) = column_of(right) {
                    name(&mut places, left, &column);
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                if let Some(column) = column_of(expr) {
                    name(&mut places, low, &column);
                    name(&mut places, high, &column);
                }
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                ..
            } => {
                if let Some(column) = column_of(expr) {
                    for item in list {
                        name(&mut places, item, &column);
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    places
        .into_values()
        .map(|column| column.map(|c| (table.to_owned(), c)))
        .collect()
}

/// Records that the placeholder `e` (if it is one) binds to `column`.
fn name(places: &mut BTreeMap<Place, Option<String>>, e: &Expr, column: &str) {
    if let Some(place) = placeholder(e) {
        let column = column.trim_matches(['`', '"']).to_lowercase();
        places.insert(place, Some(column));
    }
}

/// `column = ?` assignments (SET, ON DUPLICATE KEY UPDATE, ON CONFLICT DO UPDATE).
fn assignments(places: &mut BTreeMap<Place, Option<String>>, list: &[Assignment]) {
    for a in list {
        if let AssignmentTarget::ColumnName(column) = &a.target
            && let Some(last) = column.0.last()
        {
            name(places, &a.value, &last.to_string());
        }
    }
}

fn placeholder(e: &Expr) -> Option<Place> {
    match e {
        Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => {
            Some((v.span.start.line, v.span.start.column))
        }
        _ => None,
    }
}

fn column_of(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(ident) => Some(ident.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        _ => None,
    }
}

fn comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

#[cfg(test)]
mod tests {
    use super::placeholder_columns;
    use sqlparser::dialect::MySqlDialect;
    use sqlparser::parser::Parser;

    fn columns(sql: &str) -> Vec<Option<String>> {
        let statement = Parser::parse_sql(&MySqlDialect {}, sql).unwrap().remove(0);
        placeholder_columns(&statement, Some("t"))
            .into_iter()
            .map(|c| c.map(|(_, c)| c))
            .collect()
    }

    fn named(list: &[Option<&str>]) -> Vec<Option<String>> {
        list.iter().map(|c| c.map(str::to_owned)).collect()
    }

    #[test]
    fn placeholders_map_to_the_columns_the_statement_names_in_text_order() {
        assert_eq!(
            columns("INSERT INTO t (a, b, at) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE at = ?"),
            named(&[Some("a"), Some("b"), Some("at"), Some("at")])
        );
        assert_eq!(
            columns("UPDATE t SET n = n + ?, at = ? WHERE id = ? AND ? < t.due"),
            named(&[None, Some("at"), Some("id"), Some("due")])
        );
        assert_eq!(
            columns(
                "SELECT a FROM t WHERE at BETWEEN ? AND ? AND k IN (?, ?) AND GREATEST(a, ?) > 1"
            ),
            named(&[Some("at"), Some("at"), Some("k"), Some("k"), None])
        );
    }
}
