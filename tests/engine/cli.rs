//! The `switchyard` binary end to end: migrate, publish, run, status, and a SIGTERM that lets
//! in-flight work commit and exits 0.

use crate::support::config_text;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn switchyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_binary_publishes_runs_reports_and_stops_cleanly_on_sigterm() {
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
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..2] == ["task", "20"]),
        "{status}"
    );

    let mut host = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c", config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let status = String::from_utf8(switchyard(&["status", "-c", config]).stdout).unwrap();
        let task: Vec<&str> = status
            .lines()
            .find(|l| l.starts_with("task "))
            .unwrap()
            .split_whitespace()
            .collect();
        if task[3] == "20" {
            break;
        }
        assert!(
            started.elapsed() < crate::support::WAIT,
            "not all consumed: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exited = Instant::now();
    let code = loop {
        if let Some(code) = host.try_wait().unwrap() {
            break code;
        }
        assert!(
            exited.elapsed() < Duration::from_secs(15),
            "the host did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "SIGTERM must exit 0, got {code}");
}
