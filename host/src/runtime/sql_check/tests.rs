use super::*;

fn grants() -> BTreeMap<String, Access> {
    BTreeMap::from([
        ("tasks".to_owned(), Access::ReadWrite),
        ("users".to_owned(), Access::Read),
    ])
}

fn ok(backend: Backend, sql: &str) -> Checked {
    check(backend, &grants(), sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn refused(backend: Backend, sql: &str) -> String {
    match check(backend, &grants(), sql) {
        Ok(c) => panic!("{sql} passed as {c:?}"),
        Err(e) => e,
    }
}

const ALL: [Backend; 3] = [Backend::Sqlite, Backend::MySql, Backend::Postgres];

#[test]
fn granted_reads_and_writes_pass_with_their_parameters_counted() {
    for b in ALL {
        let c = ok(
            b,
            "SELECT id, priority FROM tasks WHERE user_id = ? AND priority = ?",
        );
        assert_eq!((c.params, c.writes), (2, false));
        let c = ok(
            b,
            "UPDATE tasks SET priority = 1 WHERE id IN (SELECT id FROM users WHERE vip = ?)",
        );
        assert_eq!((c.params, c.writes), (1, true));
        assert!(ok(b, "DELETE FROM tasks WHERE id = ?").writes);
        assert!(
            ok(
                b,
                "INSERT INTO tasks (id, user_id) SELECT id, id FROM users"
            )
            .writes
        );
        ok(
            b,
            "SELECT COUNT(*), MAX(priority) FROM tasks JOIN users ON users.id = tasks.user_id",
        );
        ok(
            b,
            "WITH recent AS (SELECT id FROM tasks) SELECT * FROM recent",
        );
    }
}

#[test]
fn each_backends_upsert_passes() {
    ok(
        Backend::MySql,
        "INSERT INTO tasks (id, priority) VALUES (?, ?) ON DUPLICATE KEY UPDATE priority = VALUES(priority)",
    );
    for b in [Backend::Sqlite, Backend::Postgres] {
        ok(
            b,
            "INSERT INTO tasks (id, priority) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET priority = excluded.priority",
        );
    }
}

#[test]
fn postgres_placeholders_are_numbered_in_order() {
    let c = ok(
        Backend::Postgres,
        "UPDATE tasks SET priority = ? WHERE id = ? AND user_id = ?",
    );
    assert!(
        c.sql.contains("priority = $1") && c.sql.contains("id = $2"),
        "{}",
        c.sql
    );
    assert!(c.sql.contains("user_id = $3"), "{}", c.sql);
    let c = ok(Backend::MySql, "UPDATE tasks SET priority = ? WHERE id = ?");
    assert!(
        c.sql.contains("priority = ?") && !c.sql.contains('$'),
        "{}",
        c.sql
    );
}

#[test]
fn tables_without_a_grant_or_written_read_only_are_refused() {
    for b in ALL {
        let e = refused(b, "SELECT * FROM payments");
        assert!(
            e.contains("table payments is not granted") && e.contains("sql = {"),
            "{e}"
        );
        let e = refused(b, "UPDATE users SET vip = 1");
        assert!(e.contains("users is granted read-only"), "{e}");
        let e = refused(b, "INSERT INTO users SELECT * FROM tasks");
        assert!(e.contains("users is granted read-only"), "{e}");
        let e = refused(b, "DELETE FROM tasks WHERE id IN (SELECT id FROM secrets)");
        assert!(e.contains("secrets is not granted"), "{e}");
    }
}

#[test]
fn ddl_session_and_multiple_statements_are_refused() {
    for b in ALL {
        for sql in [
            "DROP TABLE tasks",
            "CREATE TABLE x (id INT)",
            "ALTER TABLE tasks ADD COLUMN x INT",
            "TRUNCATE TABLE tasks",
        ] {
            let e = refused(b, sql);
            assert!(
                e.contains("not allowed: only SELECT, INSERT, UPDATE and DELETE"),
                "{sql}: {e}"
            );
        }
        let e = refused(b, "SELECT 1 FROM tasks; DELETE FROM tasks");
        assert!(e.contains("exactly one statement per call, got 2"), "{e}");
    }
    assert!(refused(Backend::MySql, "SET @a = 1").contains("not allowed"));
    assert!(refused(Backend::MySql, "CALL purge()").contains("not allowed"));
    assert!(refused(Backend::Postgres, "SET search_path = evil").contains("not allowed"));
}

#[test]
fn sqlites_or_rollback_is_refused_it_would_end_the_hosts_transaction() {
    for sql in [
        "INSERT OR ROLLBACK INTO tasks (id) VALUES (?)",
        "UPDATE OR ROLLBACK tasks SET priority = ? WHERE id = ?",
    ] {
        let e = refused(Backend::Sqlite, sql);
        assert!(e.contains("OR ROLLBACK is not allowed"), "{sql}: {e}");
    }
    ok(
        Backend::Sqlite,
        "INSERT OR IGNORE INTO tasks (id) VALUES (?)",
    );
}

#[test]
fn system_schemas_files_and_other_servers_are_out_of_reach() {
    let e = refused(Backend::MySql, "SELECT * FROM information_schema.tables");
    assert!(e.contains("schema-qualified"), "{e}");
    let e = refused(Backend::MySql, "SELECT * FROM mysql.user");
    assert!(e.contains("schema-qualified"), "{e}");
    let e = refused(Backend::Postgres, "SELECT * FROM pg_catalog.pg_authid");
    assert!(e.contains("schema-qualified"), "{e}");
    assert!(refused(Backend::Postgres, "SELECT * FROM pg_user").contains("not granted"));
    assert!(refused(Backend::Sqlite, "SELECT * FROM sqlite_master").contains("not granted"));
    let e = refused(Backend::MySql, "SELECT LOAD_FILE('/etc/passwd')");
    assert!(e.contains("function LOAD_FILE is not allowed"), "{e}");
    let e = refused(Backend::Postgres, "SELECT pg_read_file('/etc/passwd')");
    assert!(e.contains("function pg_read_file is not allowed"), "{e}");
    let e = refused(
        Backend::Postgres,
        "SELECT * FROM tasks WHERE id IN (SELECT x FROM dblink('host=evil', 'select 1') AS t(x int))",
    );
    assert!(e.contains("not allowed"), "{e}");
    let e = refused(Backend::MySql, "SELECT SLEEP(100) FROM tasks");
    assert!(e.contains("function SLEEP is not allowed"), "{e}");
    assert!(
        refused(Backend::MySql, "SELECT * FROM tasks INTO OUTFILE '/tmp/x'")
            .contains("does not parse")
    );
    let e = refused(Backend::Postgres, "SELECT * INTO stolen FROM tasks");
    assert!(e.contains("SELECT ... INTO is not allowed"), "{e}");
}

#[test]
fn only_question_mark_placeholders_are_accepted() {
    let e = refused(Backend::Postgres, "SELECT * FROM tasks WHERE id = $1");
    assert!(e.contains("placeholder $1 is not allowed"), "{e}");
    let e = refused(Backend::MySql, "SELECT * FROM tasks WHERE id = :id");
    assert!(e.contains("placeholder :id is not allowed"), "{e}");
}

#[test]
fn a_question_mark_inside_a_string_is_not_a_placeholder() {
    let c = ok(
        Backend::Postgres,
        "UPDATE tasks SET title = 'it''s done?' WHERE id = ?",
    );
    assert_eq!(c.params, 1);
    assert!(
        c.sql.contains("'it''s done?'") && c.sql.contains("id = $1"),
        "{}",
        c.sql
    );
}
