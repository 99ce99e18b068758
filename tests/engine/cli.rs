//! The `switchyard` binary end to end: migrate, publish, run, status, and a SIGTERM that lets
//! in-flight work commit and exits 0.

use crate::support::{WAIT, config_text, eventually};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Sends SIGTERM to a running host and returns how it exited.
async fn sigterm(mut host: std::process::Child) -> std::process::ExitStatus {
    let kill = Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exited = tokio::task::spawn_blocking(move || host.wait());
    tokio::time::timeout(Duration::from_secs(15), exited)
        .await
        .expect("the host did not exit within 15 s of SIGTERM")
        .unwrap()
        .unwrap()
}

fn switchyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .unwrap()
}

/// `status` and `publish` never run DDL: on a database `migrate` has not prepared they fail,
/// saying to run it, and leave the schema as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_publish_change_no_schema_and_say_to_migrate_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    std::fs::write(&config, config_text(&url, "")).unwrap();
    let config = config.to_str().unwrap();
    let publish = [
        "publish",
        "-c",
        config,
        "--type",
        "task.record.requested",
        "--payload",
        "{\"id\": 1}",
    ];
    for args in [&["status", "-c", config][..], &publish[..]] {
        let out = switchyard(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} succeeded on an unmigrated database"
        );
        assert!(
            err.contains("run `switchyard migrate -c") && err.contains("first"),
            "{args:?}: {err}"
        );
    }
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(tables, 0, "status or publish created tables");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_publishes_runs_reports_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    std::fs::write(&config, config_text(&url, "")).unwrap();
    let config = config.to_str().unwrap();

    let out = switchyard(&["migrate", "-c", config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The task component's `tasks` table, applied as a user applies SmartFlow's DDL.
    let db = crate::support::TestDb::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap());
    crate::support::smartflow::apply_schema(&db).await;
    for i in 0..20 {
        let payload = format!(r#"{{"id": {}, "user_id": 9, "priority": 2}}"#, i + 1);
        let out = switchyard(&[
            "publish",
            "-c",
            config,
            "--type",
            "task.record.requested",
            "--key",
            "u9",
            "--payload",
            &payload,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("in task_outbox_messages (service task)")
        );
    }
    let out = switchyard(&[
        "publish",
        "-c",
        config,
        "--type",
        "nobody.routes.this",
        "--payload",
        "{}",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nobody.routes.this\" is not routed"));
    let status = String::from_utf8(switchyard(&["status", "-c", config]).stdout).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..3] == ["task", "full", "20"]),
        "{status}"
    );

    let host = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c", config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("all 20 task rows to be consumed", WAIT, || async {
        let status = String::from_utf8(switchyard(&["status", "-c", config]).stdout).unwrap();
        let consumed = status
            .lines()
            .find(|l| l.starts_with("task "))
            .unwrap()
            .split_whitespace()
            .nth(4)
            .unwrap()
            .to_owned();
        if consumed == "20" {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await;
    let code = sigterm(host).await;
    assert!(code.success(), "SIGTERM must exit 0, got {code}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_forge_a_line_of_the_hosts_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let url = format!("sqlite://{}", dir.path().join("forge.db").display());
    let routes = format!(
        "[services.hostile]\n[[routes]]\nevent_type = \"hostile.run\"\nservice = \"hostile\"\n\
         component = \"{}\"\n",
        crate::support::component("hostile").display()
    );
    std::fs::write(&config, config_text(&url, &routes)).unwrap();
    let config = config.to_str().unwrap();
    let out = switchyard(&["migrate", "-c", config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = switchyard(&[
        "publish",
        "-c",
        config,
        "--type",
        "hostile.run",
        "--payload",
        r#"{"attack": "forge-log"}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = dir.path().join("host.log");
    let host = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c", config])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The component logs through `log` and through stdout; both reach the host's log.
    let text = eventually("both guest lines in the host's log", WAIT, || async {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.matches("payment failed").count() >= 2 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    let code = sigterm(host).await;
    assert!(code.success(), "SIGTERM must exit 0, got {code}");
    for line in text.lines().filter(|l| l.contains("payment failed")) {
        assert!(
            line.contains("hello\\n2026-12-02T00:00:00.000000Z ERROR"),
            "the guest's newline must be escaped, on the guest's own line: {line}"
        );
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-12-02T00:00:00.000000Z")),
        "a forged line starts a line of the host's log:\n{text}"
    );
}
