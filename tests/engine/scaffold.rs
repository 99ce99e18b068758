//! `switchyard new`: a project scaffolded in each language builds as generated, with its own
//! build script, and the component it builds runs in the host: the sample event is
//! acknowledged and counted in state, a payload that does not decode is dead.
//!
//! The Python and JavaScript builds need componentize-py and ComponentizeJS, which
//! `scripts/handler-tools.sh` installs under `~/.cache/switchyard/handler-tools/`. Outside CI
//! the test runs that script (idempotent); under `CI=true` a missing tool fails the test with
//! the command that installs it. Never skipped.

use crate::support::harness::Harness;
use crate::support::{Setup, WAIT, eventually};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn switchyard_new(name: &str, lang: &str, dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["new", name, "--lang", lang, "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// The tools' paths, as `scripts/handler-tools.sh` prints them (`NAME=path` lines).
fn handler_tools() -> Vec<(String, String)> {
    let script = repo().join("scripts/handler-tools.sh");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        let home = std::env::var("HOME").unwrap();
        let tools = Path::new(&home).join(".cache/switchyard/handler-tools");
        let py = tools.join("python/bin/componentize-py");
        let js = tools.join("node/node_modules/.bin/componentize-js");
        for tool in [&py, &js] {
            assert!(
                tool.is_file(),
                "{} is missing: install the handler tools with {}",
                tool.display(),
                script.display()
            );
        }
        return vec![
            ("COMPONENTIZE_PY".into(), py.display().to_string()),
            ("COMPONENTIZE_JS".into(), js.display().to_string()),
        ];
    }
    let out = Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs a command in the project and panics with its output if it fails.
fn run(project: &Path, program: &str, args: &[&str], env: &[(String, String)]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(project)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed:\n{}\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Scaffolds `lang` as `name`, builds it with its own `build.sh` and returns the component.
fn scaffold_and_build(name: &str, lang: &str, dir: &Path, env: &[(String, String)]) -> PathBuf {
    let project = dir.join(name);
    let out = switchyard_new(name, lang, &project);
    assert!(
        out.status.success(),
        "switchyard new: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "README.md",
        "event.json",
        "build.sh",
        "wit/deps/handler/handler.wit",
    ] {
        assert!(project.join(file).is_file(), "{lang}: {file} missing");
    }
    let contract = std::fs::read_to_string(repo().join("wit/handler.wit")).unwrap();
    let copied = std::fs::read_to_string(project.join("wit/deps/handler/handler.wit")).unwrap();
    assert_eq!(copied, contract, "the project's contract is the host's");
    run(&project, "./build.sh", &[], env);
    let wasm = project.join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{lang}: build.sh made no {}",
        wasm.display()
    );
    wasm
}

/// Runs the component on a route of its own (SQLite, embedded transport): the sample event is
/// acknowledged and counted, a payload that does not decode is dead.
async fn runs_in_the_host(name: &str, wasm: &Path, project: &Path) {
    let config = |url: &str| {
        format!(
            "database_url = \"{url}\"\n[services.{name}]\n[[routes]]\nevent_type = \
             \"{name}.requested\"\nservice = \"{name}\"\ncomponent = \"{}\"\n",
            wasm.display()
        )
    };
    let mut h = Harness::start_from(Setup::SQLITE_EMBEDDED, config).await;
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("event.json")).unwrap())
            .unwrap();
    let ty = event["event_type"].as_str().unwrap();
    let table = h.host.catalog().route(ty).unwrap().service.table.clone();
    let id = h.publish(ty, event["payload"].clone()).await;
    let row = h.wait_final(&table, id).await;
    assert_eq!(row.status, "consumed", "{name}: {:?}", row.last_error);
    let seen = eventually("the sample event counted in state", WAIT, || async {
        h.state(name, "seen:7").await.ok_or(())
    })
    .await;
    let seen: serde_json::Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(seen, serde_json::json!({"count": 1, "last_name": "Ada"}));
    let bad = h.publish(ty, serde_json::json!({"user_id": 0})).await;
    let row = h.wait_final(&table, bad).await;
    assert_eq!(row.status, "dead", "{name}: a bad payload is dead");
    let reason = row.last_error.unwrap_or_default();
    assert!(
        reason.contains(&format!("invalid {ty} payload")),
        "{reason}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_rust_handler_builds_passes_its_unit_tests_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    // Offline, with the guest components' warm target directory when there is one.
    let target = std::env::var("SWITCHYARD_GUEST_TARGET_DIR").map_or_else(
        |_| dir.path().join("target"),
        |d| Path::new(&d).join("scaffold"),
    );
    let env = [
        ("CARGO_TARGET_DIR".to_owned(), target.display().to_string()),
        ("CARGO_NET_OFFLINE".to_owned(), "true".to_owned()),
    ];
    let wasm = scaffold_and_build("greeter", "rust", dir.path(), &env);
    let project = dir.path().join("greeter");
    run(&project, "cargo", &["test", "--quiet"], &env);
    runs_in_the_host("greeter", &wasm, &project).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_python_handler_builds_and_runs() {
    let tools = handler_tools();
    let dir = tempfile::tempdir().unwrap();
    let wasm = scaffold_and_build("py-greeter", "python", dir.path(), &tools);
    runs_in_the_host("py-greeter", &wasm, &dir.path().join("py-greeter")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_javascript_handler_builds_and_runs() {
    let tools = handler_tools();
    let dir = tempfile::tempdir().unwrap();
    let wasm = scaffold_and_build("js-greeter", "js", dir.path(), &tools);
    runs_in_the_host("js-greeter", &wasm, &dir.path().join("js-greeter")).await;
}

#[test]
fn new_refuses_a_bad_name_and_a_directory_that_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let out = switchyard_new("Bad_Name", "rust", &dir.path().join("x"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a handler name"));
    assert!(
        !dir.path().join("x").exists(),
        "nothing written for a bad name"
    );
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let out = switchyard_new("greeter", "python", dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        left.len(),
        1,
        "nothing written into a directory that is not empty"
    );
}
