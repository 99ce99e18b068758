//! `switchyard test` and `switchyard check`, the real binary on real components: outcomes,
//! effects, logs, `--expect`, `--json`, policies from flags and from a config's route, a
//! component importing `sql` on a scratch database, and the errors bad input gets.

use crate::support::component;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `value` as JSON into `dir` and returns its path.
fn json_file(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn path_of(name: &str) -> String {
    component(name).to_str().unwrap().to_owned()
}

/// Runs `test` with `--json` and returns the exit code and the report.
fn test_json(args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["test", "--json"];
    all.extend_from_slice(args);
    let out = switchyard(&all);
    let (stdout, stderr) = text(&out);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code(), report)
}

#[test]
fn a_probe_run_reports_its_outcome_state_writes_emits_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let probe = path_of("probe");
    let event = json_file(
        dir.path(),
        "event.json",
        &json!({"event_type": "probe.run", "key": "k-1", "attempt": 3, "payload": {
            "set": {"greeting": "hello"}, "incr": ["counter"],
            "emit": [{"event_type": "probe.done", "key": "k-2", "payload": {"n": 1}}]}}),
    );
    let state = json_file(dir.path(), "state.json", &json!({"counter": "41"}));
    let (code, report) = test_json(&[
        &probe,
        "--event",
        &event,
        "--state",
        &state,
        "--allow-emit",
        "probe.done",
        "--expect",
        "ack",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["outcome"], "ack");
    assert_eq!(report["contract"], "0.1.0");
    // The seed was read through the state import: 41 + 1.
    assert_eq!(
        report["state_writes"],
        json!([{"key": "greeting", "value": "hello"}, {"key": "build", "value": "a"},
               {"key": "counter", "value": "42"}])
    );
    assert_eq!(
        report["emits"],
        json!([{"event_type": "probe.done", "event_version": "", "aggregate_id": "",
                "message_key": "k-2", "payload": {"n": 1}}])
    );
    // The event's attempt reached the guest (the probe logs it).
    assert_eq!(
        report["logs"],
        json!([{"level": "info", "stream": "log", "message": "probe  attempt 3"}])
    );
}

#[test]
fn retry_and_dead_are_reported_with_their_reasons_and_keep_no_effects() {
    let dir = tempfile::tempdir().unwrap();
    let probe = path_of("probe");
    let retry = json_file(
        dir.path(),
        "retry.json",
        &json!({"event_type": "probe.run", "payload": {"set": {"k": "v"}, "action": "retry",
                "reason": "downstream busy", "delay_ms": 30000}}),
    );
    let (code, report) = test_json(&[&probe, "--event", &retry]);
    assert_eq!(
        code,
        Some(0),
        "a retry is an outcome, not a failure: {report}"
    );
    assert_eq!(
        (&report["outcome"], &report["reason"], &report["delay_ms"]),
        (&json!("retry"), &json!("downstream busy"), &json!(30000))
    );
    assert_eq!(
        report["state_writes"],
        json!([]),
        "only an ack keeps writes"
    );

    let dead = json_file(
        dir.path(),
        "dead.json",
        &json!({"event_type": "probe.run", "payload": {"action": "dead", "reason": "bad payload"}}),
    );
    let out = switchyard(&["test", &probe, "--event", &dead]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("outcome   dead: bad payload"), "{stdout}");

    // A trap is the host's retry with the trap as its reason.
    let trap = json_file(
        dir.path(),
        "trap.json",
        &json!({"event_type": "probe.run", "payload": {"action": "trap"}}),
    );
    let (code, report) = test_json(&[&probe, "--event", &trap]);
    assert_eq!(code, Some(0));
    assert_eq!(report["outcome"], "retry");
    assert!(
        report["reason"].as_str().unwrap().starts_with("trap:"),
        "{report}"
    );
}

#[test]
fn expect_makes_the_outcome_an_assertion() {
    let dir = tempfile::tempdir().unwrap();
    let probe = path_of("probe");
    let dead = json_file(
        dir.path(),
        "dead.json",
        &json!({"event_type": "probe.run", "payload": {"action": "dead", "reason": "bad payload"}}),
    );
    let out = switchyard(&["test", &probe, "--event", &dead, "--expect", "ack"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("expected ack, got dead: bad payload"),
        "{stderr}"
    );
    assert!(
        stdout.contains("outcome   dead"),
        "the report is still printed"
    );
    let out = switchyard(&["test", &probe, "--event", &dead, "--expect", "dead"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
}

#[test]
fn an_emit_is_refused_unless_granted_like_on_a_route() {
    let dir = tempfile::tempdir().unwrap();
    let probe = path_of("probe");
    let event = json_file(
        dir.path(),
        "event.json",
        &json!({"event_type": "probe.run", "payload": {
            "emit": [{"event_type": "probe.done", "payload": {}}]}}),
    );
    // Without --allow-emit nothing is granted: the probe answers a refused emit with dead.
    let (code, report) = test_json(&[&probe, "--event", &event]);
    assert_eq!(code, Some(0));
    assert_eq!(report["outcome"], "dead");
    assert!(
        report["reason"].as_str().unwrap().contains("probe.done"),
        "{report}"
    );
    assert_eq!(report["emits"], json!([]));
}

/// SmartFlow's task component with its real payload, under the example config's route: its
/// `sql` statements run on a scratch SQLite database made from the example schema.
#[test]
fn the_task_component_runs_its_route_from_the_smartflow_config_on_a_scratch_database() {
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = root.join("examples/smartflow.toml");
    let schema = root.join("examples/smartflow/schema/sqlite.sql");
    let event = json_file(
        dir.path(),
        "event.json",
        &json!({"event_type": "task.upsert.requested", "payload": {
            "id": 7, "user_id": 3, "title": "file taxes", "priority": 2,
            "urgency_threshold_at": "2026-11-29T09:00:00Z", "conversation_id": "conv-3",
            "checked_at": "2026-11-29T10:00:00Z"}}),
    );
    let task = path_of("task");
    let (code, report) = test_json(&[
        &task,
        "--event",
        &event,
        "--config",
        config.to_str().unwrap(),
        "--sql-setup",
        schema.to_str().unwrap(),
        "--expect",
        "ack",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["service"], "task");
    assert_eq!(report["contract"], "0.2.0");
    // It became important and urgent at checked_at: SmartFlow's trigger, granted by the route.
    let emits = report["emits"].as_array().unwrap();
    assert_eq!(emits.len(), 1, "{report}");
    assert_eq!(emits[0]["event_type"], "active_schedule.triggered");
    assert_eq!(emits[0]["payload"]["trigger_type"], "important_urgent_task");
    let sql = report["sql"].as_array().unwrap();
    assert!(
        sql.iter().any(|s| s["statement"]
            .as_str()
            .unwrap()
            .starts_with("INSERT INTO tasks")
            && s["result"] == "changed 1"),
        "{report}"
    );

    // Without the schema the statement fails as it would on an empty database: a retry.
    let (code, report) = test_json(&[&task, "--event", &event, "-c", config.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(report["outcome"], "retry");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("no such table: tasks"),
        "{report}"
    );

    // Without a config nothing is granted: refused at load, as on a route, naming the flag.
    let out = switchyard(&["test", &task, "--event", &event]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("imports sql but its route does not grant it")
            && stderr.contains("--allow-sql"),
        "{stderr}"
    );
}

#[test]
fn a_missing_component_or_a_bad_event_file_exits_2_saying_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let probe = path_of("probe");
    let good = json_file(
        dir.path(),
        "good.json",
        &json!({"event_type": "probe.run", "payload": {}}),
    );
    let no_type = json_file(dir.path(), "no-type.json", &json!({"payload": {}}));
    let typo = json_file(
        dir.path(),
        "typo.json",
        &json!({"event_type": "probe.run", "payload": {}, "atempt": 2}),
    );
    let not_json = dir.path().join("not.json");
    std::fs::write(&not_json, "event_type: probe.run").unwrap();
    let bad_state = json_file(dir.path(), "state.json", &json!({"counter": 41}));
    let cases: [(&[&str], &str); 6] = [
        (
            &["test", "/nonexistent/h.wasm", "--event", &good],
            "cannot read component /nonexistent/h.wasm",
        ),
        (
            &["test", &probe, "--event", "/nonexistent/e.json"],
            "cannot read event file",
        ),
        (
            &["test", &probe, "--event", &no_type],
            "missing field `event_type`",
        ),
        (
            &["test", &probe, "--event", &typo],
            "unknown field `atempt`",
        ),
        (
            &["test", &probe, "--event", not_json.to_str().unwrap()],
            "write a JSON object such as",
        ),
        (
            &["test", &probe, "--event", &good, "--state", &bad_state],
            "the value of \"counter\" is 41, not a string",
        ),
    ];
    for (args, says) in cases {
        let out = switchyard(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn check_reports_contract_world_imports_and_the_grants_a_route_needs() {
    let (task, probe) = (path_of("task"), path_of("probe"));
    let out = switchyard(&["check", &task, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["contract"], "0.2.0");
    assert_eq!(report["world"], "switchyard:handler/service-handler@0.2.0");
    let imports = report["imports"].as_array().unwrap();
    assert!(
        imports.contains(&json!("switchyard:handler/sql@0.2.0")),
        "{report}"
    );
    let sql = report["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["route_key"] == "sql")
        .expect("task imports sql");
    assert_eq!(sql["required_to_load"], true);
    // Built lean: of WASI, only the clock it reads (no preview 1 adapter, whose std imports
    // would bring stdio, streams and the filesystem).
    assert_eq!(
        wasi_imports(&report),
        ["wasi:clocks/wall-clock"],
        "{report}"
    );

    // The notification component calls out over HTTP: the other world, and allowed_hosts.
    let out = switchyard(&["check", &path_of("notification")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("world     switchyard:handler/notifying-handler@"),
        "{stdout}"
    );
    assert!(
        stdout.contains("allowed_hosts (required to load"),
        "{stdout}"
    );

    // A 0.1.0 component has no sql and needs no load-time grant.
    let out = switchyard(&["check", &probe]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("contract  0.1.0"), "{stdout}");
    assert!(!stdout.contains("required to load"), "{stdout}");
}

/// The WASI interfaces a `check --json` report lists, without versions, sorted.
fn wasi_imports(report: &Value) -> Vec<String> {
    let mut wasi: Vec<String> = report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.as_str()?.strip_prefix("wasi:"))
        .map(|i| format!("wasi:{}", i.split('@').next().unwrap()))
        .collect();
    wasi.sort();
    wasi
}

/// A config in `dir` routing `sdk.run` to `component`, with `route_extra` (a TOML line) on the
/// route; its database is never opened. Returns its path.
fn sdk_route_config(dir: &Path, component: &str, route_extra: &str) -> String {
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://never-opened.db\"\n[reload]\ncache = false\n\
             [services.sdk]\n[[routes]]\nevent_type = \"sdk.run\"\nservice = \"sdk\"\n\
             component = {component:?}\n{route_extra}\n"
        ),
    )
    .unwrap();
    config.to_str().unwrap().to_owned()
}

/// A handler written with the SDK and built lean (`wasm32-unknown-unknown`, no WASI preview 1
/// adapter; scripts/build-components.sh) keeps what std's WASI gave it: a panic's message
/// reaches the log, the clock is the wall clock, and the route's env is visible.
#[test]
fn a_lean_sdk_handler_reports_its_panic_and_reads_the_clock_and_its_routes_env() {
    let dir = tempfile::tempdir().unwrap();
    let probe = path_of("sdk_probe");
    let out = switchyard(&["check", &probe, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        wasi_imports(&report),
        ["wasi:cli/environment", "wasi:clocks/wall-clock"],
        "a lean build imports only the WASI it calls: {report}"
    );

    let panic = json_file(
        dir.path(),
        "panic.json",
        &json!({"event_type": "sdk.run", "payload": {"action": "panic", "arg": "boom"}}),
    );
    let (code, report) = test_json(&[&probe, "--event", &panic]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["outcome"], "retry", "{report}");
    assert!(
        report["reason"].as_str().unwrap().starts_with("trap:"),
        "{report}"
    );
    let logs = report["logs"].as_array().unwrap();
    assert!(
        logs.iter().any(|l| l["level"] == "error"
            && l["message"]
                .as_str()
                .unwrap()
                .starts_with("handler panicked: ")
            && l["message"]
                .as_str()
                .unwrap()
                .contains("sdk-probe panicked on purpose: boom")),
        "the panic's message must reach the log: {report}"
    );

    let clock = json_file(
        dir.path(),
        "clock.json",
        &json!({"event_type": "sdk.run", "payload": {"action": "clock"}}),
    );
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = unix_now();
    let (code, report) = test_json(&[&probe, "--event", &clock, "--expect", "ack"]);
    let after = unix_now();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["state_writes"][0]["key"], "now", "{report}");
    let read: u64 = report["state_writes"][0]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&read),
        "the guest's clock read {read}, the host's was {before}..={after}"
    );

    let env = json_file(
        dir.path(),
        "env.json",
        &json!({"event_type": "sdk.run", "payload": {"action": "env", "arg": "GREETING"}}),
    );
    let config = sdk_route_config(dir.path(), &probe, "env = { GREETING = \"hello\" }");
    let env_value = |report: &Value| report["state_writes"][0]["value"].clone();
    let (code, report) = test_json(&[&probe, "--event", &env, "-c", &config]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        env_value(&report),
        "hello",
        "the route grants GREETING: {report}"
    );
    let (code, report) = test_json(&[&probe, "--event", &env]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(env_value(&report), "<unset>", "no route, no env: {report}");
}

/// The lean allocator (sdk/lean-alloc) serves the initial heap first, then grows memory like
/// std's: a handler may use more than the initial heap, and the route's memory cap still holds.
#[test]
fn a_lean_handlers_heap_grows_past_its_initial_part_up_to_the_routes_cap() {
    let dir = tempfile::tempdir().unwrap();
    let probe = path_of("sdk_probe");
    let alloc = |bytes: usize| {
        json_file(
            dir.path(),
            &format!("alloc-{bytes}.json"),
            &json!({"event_type": "sdk.run", "payload": {"action": "alloc", "arg": bytes.to_string()}}),
        )
    };
    // 16 MiB: sixteen times the initial heap the build gives it.
    let (code, report) = test_json(&[&probe, "--event", &alloc(16 << 20), "--expect", "ack"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        report["state_writes"],
        json!([{"key": "allocated", "value": (16 << 20).to_string()}])
    );

    let cap = format!("limits = {{ memory_bytes = {} }}", 8 << 20);
    let config = sdk_route_config(dir.path(), &probe, &cap);
    let (code, report) = test_json(&[&probe, "--event", &alloc(16 << 20), "-c", &config]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["outcome"], "retry", "{report}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .starts_with("memory limit exceeded"),
        "{report}"
    );
}

#[test]
fn check_refuses_what_is_not_a_handler_component_saying_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, "not wasm at all").unwrap();
    let core = dir.path().join("core.wasm");
    // The smallest core module: magic and version 1, no sections.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let not_a_handler = path_of("not-a-handler");
    let cases = [
        (garbage.to_str().unwrap(), "is not WebAssembly"),
        (
            core.to_str().unwrap(),
            "is a core WebAssembly module, not a WebAssembly component",
        ),
        (&not_a_handler, "exports no handler interface"),
        ("/nonexistent/x.wasm", "cannot read component"),
    ];
    for (file, says) in cases {
        for json in [false, true] {
            let mut args = vec!["check", file];
            if json {
                args.push("--json");
            }
            let out = switchyard(&args);
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
            assert!(stderr.contains(says), "{file}: {stderr}");
            assert!(stdout.is_empty(), "{file}: nothing on stdout: {stdout}");
        }
    }
    // not-a-handler names what it exports instead.
    let out = switchyard(&["check", &not_a_handler]);
    assert!(text(&out).1.contains("wasi:cli/run"));
}

/// With `--config`, the route's limits and grants apply, not the defaults: a looping handler
/// ends at the route's 200 ms deadline, and the route's `emits` grant admits its emit.
#[test]
fn a_config_routes_limits_and_grants_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://never-opened.db\"\n[reload]\ncache = false\n\
             [services.probe]\n[services.sink]\nmode = \"external\"\n\
             [[routes]]\nevent_type = \"probe.run\"\nservice = \"probe\"\ncomponent = {:?}\n\
             emits = [\"sink.note\"]\nlimits = {{ deadline_ms = 200 }}\n\
             [[routes]]\nevent_type = \"sink.note\"\nservice = \"sink\"\n",
            path_of("probe")
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let probe = path_of("probe");
    let looping = json_file(
        dir.path(),
        "loop.json",
        &json!({"event_type": "probe.run", "payload": {"action": "loop"}}),
    );
    let (code, report) = test_json(&[&probe, "--event", &looping, "-c", config]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["service"], "probe");
    assert_eq!(
        (&report["outcome"], &report["reason"]),
        (&json!("retry"), &json!("deadline exceeded after 200 ms"))
    );
    let emit = json_file(
        dir.path(),
        "emit.json",
        &json!({"event_type": "probe.run", "payload": {
            "emit": [{"event_type": "sink.note", "payload": {"a": 1}}]}}),
    );
    let (code, report) = test_json(&[&probe, "--event", &emit, "-c", config, "--expect", "ack"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["emits"][0]["event_type"], "sink.note");
    assert!(
        !dir.path().join("never-opened.db").exists(),
        "test opened the config's database"
    );

    // --route must be the event's own type.
    let out = switchyard(&[
        "test",
        &probe,
        "--event",
        &emit,
        "-c",
        config,
        "--route",
        "sink.note",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the event's type is \"probe.run\" but --route is \"sink.note\""),
        "{stderr}"
    );
}
