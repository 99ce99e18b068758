//! Outbox-table templates: splitting a template into statements and recognising the additive
//! ones that must run only when what they add is missing, and the index renames that must run
//! only when the old name is there and the new one is not.
//!
//! Pure text handling, no I/O: each backend asks its own catalog (information_schema,
//! pg_index) whether a column or an index already exists. It never builds SQL from anything
//! but a template shipped with the host and a table name the catalog validated.

/// One statement of a template, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `ALTER TABLE t ADD COLUMN <column> ...`: run only if the column is missing.
    AddColumn { column: String, sql: String },
    /// `CREATE INDEX [IF NOT EXISTS] <name> ON t (a, b, c)`: run only if no index has exactly
    /// these columns, whatever its name, so adopting a table that has the index under
    /// SmartFlow's (GORM's) name adds no duplicate.
    AddIndex { columns: Vec<String>, sql: String },
    /// `ALTER TABLE t RENAME INDEX <from> TO <to>` (MySQL): run only if the table has an index
    /// named `from` and none named `to`.
    RenameIndex {
        from: String,
        to: String,
        sql: String,
    },
    /// Anything else (`CREATE TABLE IF NOT EXISTS ...`): run as is, it must be idempotent.
    Plain { sql: String },
}

/// Splits a template (with `{table}` already replaced) into classified statements. Comment
/// lines are dropped; statements end with `;`.
pub fn steps(template: &str) -> Vec<Step> {
    let text: String = template
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(classify)
        .collect()
}

fn classify(sql: &str) -> Step {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    if upper.len() > 5 && upper[0] == "ALTER" && upper[3] == "ADD" && upper[4] == "COLUMN" {
        return Step::AddColumn {
            column: words[5].to_owned(),
            sql: sql.to_owned(),
        };
    }
    if upper.len() == 8 && upper[0] == "ALTER" && upper[3] == "RENAME" && upper[4] == "INDEX" {
        return Step::RenameIndex {
            from: words[5].to_owned(),
            to: words[7].to_owned(),
            sql: sql.to_owned(),
        };
    }
    if upper.len() > 3
        && upper[0] == "CREATE"
        && upper[1] == "INDEX"
        && let (Some(open), Some(close)) = (sql.find('('), sql.rfind(')'))
    {
        let columns = sql[open + 1..close]
            .split(',')
            .map(|c| c.trim().to_owned())
            .collect();
        return Step::AddIndex {
            columns,
            sql: sql.to_owned(),
        };
    }
    Step::Plain {
        sql: sql.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additive_statements_are_recognised() {
        let s = steps(
            "-- comment; with a semicolon\nCREATE TABLE IF NOT EXISTS t (id int);\n\
             CREATE INDEX idx_claim ON t (status, next_retry_at, id);\n\
             ALTER TABLE t ADD COLUMN handler_version VARCHAR(64) NULL;\n",
        );
        assert_eq!(s.len(), 3);
        assert!(matches!(&s[0], Step::Plain { .. }));
        assert_eq!(
            s[1],
            Step::AddIndex {
                columns: vec!["status".into(), "next_retry_at".into(), "id".into()],
                sql: "CREATE INDEX idx_claim ON t (status, next_retry_at, id)".into(),
            }
        );
        assert!(matches!(&s[2], Step::AddColumn { column, .. } if column == "handler_version"));
    }

    #[test]
    fn guarded_index_steps_cover_if_not_exists_and_renames() {
        let s = steps(
            "CREATE INDEX IF NOT EXISTS idx_t_service_name ON t (service_name);\n\
             ALTER TABLE t RENAME INDEX idx_service_name TO idx_outbox_service_name;",
        );
        assert!(
            matches!(&s[0], Step::AddIndex { columns, .. } if columns == &["service_name"]),
            "{s:?}"
        );
        assert!(
            matches!(&s[1], Step::RenameIndex { from, to, .. }
                if from == "idx_service_name" && to == "idx_outbox_service_name"),
            "{s:?}"
        );
    }
}
