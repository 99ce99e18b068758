//! Handlers written in Python (componentize-py) and JavaScript (ComponentizeJS), from
//! `examples/handlers/`, run by the host on the embedded default (SQLite + in-process queue):
//! each outcome of the contract (ack with a state write and an emit consumed downstream, retry
//! with a delay until dead or acked, dead with the handler's reason) and a log line in the
//! host's log. `scripts/build-handlers.sh` builds them (`scripts/test.sh` does).

use crate::support::{Harness, Setup, WAIT, config_text, eventually, hash_of};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the `switchyard` binary may take to compile both handlers' routes and log: a cold
/// compile of the Python handler took 86 s on a loaded 2-core machine.
const COLD_START: Duration = Duration::from_secs(600);

/// A handler language: its service (`<lang>`), event types (`<lang>.run`, `<lang>.followup`)
/// and component (`build/components/<lang>_handler.wasm`).
#[derive(Clone, Copy)]
struct Lang(&'static str);

const PYTHON: Lang = Lang("python");
const JS: Lang = Lang("js");

impl Lang {
    fn component(self) -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../build/components")
            .join(format!("{}_handler.wasm", self.0));
        assert!(
            path.is_file(),
            "{} is missing: run scripts/build-handlers.sh (it installs componentize-py and \
             ComponentizeJS with scripts/handler-tools.sh; scripts/test.sh runs both)",
            path.display()
        );
        path.canonicalize().unwrap()
    }

    fn table(self) -> String {
        format!("{}_outbox_messages", self.0)
    }

    fn run(self) -> String {
        format!("{}.run", self.0)
    }

    /// The service and its two routes, with what a route for this handler needs. The compiled
    /// components are cached across this module's tests and across runs, under
    /// `~/.cache/switchyard/polyglot-compiled` (wasmtime's cache, keyed by the component's
    /// bytes and the engine's settings): compiling each handler takes tens of seconds on a busy
    /// machine, so only the first test after a handler changed pays it.
    fn routes(self) -> String {
        let (lang, component) = (self.0, self.component());
        let cache = std::env::var_os("HOME")
            .map_or_else(std::env::temp_dir, PathBuf::from)
            .join(".cache/switchyard/polyglot-compiled");
        format!(
            r#"
[reload]
cache_dir = "{cache}"

[services.{lang}]

[[routes]]
event_type = "{lang}.run"
service = "{lang}"
component = "{component}"
emits = ["{lang}.followup"]

[[routes]]
event_type = "{lang}.followup"
service = "{lang}"
component = "{component}"
"#,
            component = component.display(),
            cache = cache.display(),
        )
    }

    async fn start(self) -> Harness {
        Harness::start_with(Setup::SQLITE_EMBEDDED, &self.routes()).await
    }
}

async fn ack_writes_state_and_its_emit_is_consumed_downstream(lang: Lang) {
    let mut h = lang.start().await;
    let first = h
        .publish(&lang.run(), json!({"key": "k1", "action": "ack", "n": 1}))
        .await;
    let row = h.wait_final(&lang.table(), first).await;
    assert_eq!(row.status, "consumed", "{row:?}");
    assert_eq!(
        row.handler_version.as_deref(),
        Some(hash_of(&lang.component()).as_str())
    );
    let second = h
        .publish(&lang.run(), json!({"key": "k1", "action": "ack", "n": 2}))
        .await;
    assert_eq!(h.wait_final(&lang.table(), second).await.status, "consumed");
    assert_eq!(
        h.state(lang.0, "count:k1").await.as_deref(),
        Some("2"),
        "the handler read its own earlier write and counted on"
    );
    let last: serde_json::Value =
        serde_json::from_str(&h.state(lang.0, "last:k1").await.unwrap()).unwrap();
    assert_eq!(last["n"], 2, "{last}");
    // Each ack emitted `<lang>.followup`; the same handler consumed it downstream.
    let followups: Vec<_> = h
        .rows(&lang.table())
        .await
        .into_iter()
        .filter(|r| r.biz_type == format!("{}.followup", lang.0))
        .collect();
    assert_eq!(followups.len(), 2, "{followups:?}");
    for f in &followups {
        let done = h
            .wait_row(&lang.table(), row_id(&h, lang, &f.payload).await, |r| {
                r.status == "consumed"
            })
            .await;
        assert_eq!(done.status, "consumed");
    }
    let marked = eventually("the follow-up's state write", WAIT, || async {
        h.state(lang.0, "followup:k1").await.ok_or(())
    })
    .await;
    let marked: serde_json::Value = serde_json::from_str(&marked).unwrap();
    assert!(
        marked["from"] == first || marked["from"] == second,
        "the follow-up names the event that emitted it: {marked}"
    );
    h.stop().await;
}

/// The id of the row of `lang`'s table whose payload is `payload`.
async fn row_id(h: &Harness, lang: Lang, payload: &str) -> i64 {
    for id in h.ids(&lang.table()).await {
        if h.row(&lang.table(), id).await.unwrap().payload == payload {
            return id;
        }
    }
    panic!("no row with payload {payload}")
}

async fn retry_waits_its_delay_and_ends_dead_at_max_attempts(lang: Lang) {
    // Backoff 10 ms, 20 ms (max_attempts = 3) and a ceiling of 1 s, so the handler's
    // 300 ms delay governs each wait: dead no sooner than 2 × 300 ms after the first attempt.
    let mut h = Harness::start_edited(Setup::SQLITE_EMBEDDED, &lang.routes(), |t| {
        t.replace("backoff_max_ms = 40", "backoff_max_ms = 1000")
    })
    .await;
    let started = Instant::now();
    let id = h
        .publish(
            &lang.run(),
            json!({"key": "r1", "action": "retry", "delay_ms": 300}),
        )
        .await;
    let row = h.wait_final(&lang.table(), id).await;
    let took = started.elapsed();
    assert_eq!(row.status, "dead", "{row:?}");
    assert_eq!(row.retry_count, 3, "max_attempts = 3 attempts, then dead");
    let err = row.last_error.unwrap();
    assert!(
        err.contains("retries exhausted") && err.contains("retry on request (attempt 3)"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(600),
        "two retries, each delayed 300 ms by the handler, took only {took:?}"
    );
    assert_eq!(h.state(lang.0, "count:r1").await, None);
    h.stop().await;
}

async fn retry_then_ack_on_a_later_attempt_keeps_that_attempts_writes(lang: Lang) {
    let mut h = lang.start().await;
    let id = h
        .publish(
            &lang.run(),
            json!({"key": "r2", "action": "retry", "until_attempt": 2, "delay_ms": 20}),
        )
        .await;
    let row = h.wait_final(&lang.table(), id).await;
    assert_eq!(row.status, "consumed", "{row:?}");
    assert_eq!(
        row.retry_count, 1,
        "one failed attempt before the ack: {row:?}"
    );
    assert_eq!(h.state(lang.0, "count:r2").await.as_deref(), Some("1"));
    h.stop().await;
}

async fn dead_carries_the_handlers_reason_and_keeps_no_writes(lang: Lang) {
    let mut h = lang.start().await;
    let dead = h
        .publish(
            &lang.run(),
            json!({"key": "d1", "action": "dead", "reason": "unsupported order kind \"barter\""}),
        )
        .await;
    let not_json = h.publish(&lang.run(), json!([1, 2, 3])).await;
    let row = h.wait_final(&lang.table(), dead).await;
    assert_eq!(row.status, "dead", "{row:?}");
    let err = row.last_error.unwrap();
    assert!(err.contains("unsupported order kind \"barter\""), "{err}");
    let row = h.wait_final(&lang.table(), not_json).await;
    assert_eq!(row.status, "dead", "{row:?}");
    assert!(
        row.last_error
            .unwrap()
            .contains("payload is not a JSON object"),
        "the handler decoded the payload and refused it"
    );
    assert_eq!(h.state(lang.0, "count:d1").await, None);
    h.stop().await;
}

/// Runs the `switchyard` binary over one event and returns the host's log once `needle` is in
/// it (the guest's log lines go to the host's stderr through `tracing`).
async fn host_log_with(lang: Lang, needle: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let url = format!("sqlite://{}", dir.path().join("log.db").display());
    std::fs::write(&config, config_text(&url, &lang.routes())).unwrap();
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["migrate", "-c", config]);
    let payload = r#"{"key": "l1", "action": "ack"}"#;
    run(&[
        "publish",
        "-c",
        config,
        "--type",
        &lang.run(),
        "--payload",
        payload,
    ]);
    let log = dir.path().join("host.log");
    let mut host = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c", config])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The host compiles the handler before it consumes anything: with a cold compiled-component
    // cache that alone takes minutes on a busy machine, so this waits longer than `WAIT`.
    let text = eventually(
        format!("{needle:?} in the host's log"),
        COLD_START,
        || async {
            let text = std::fs::read_to_string(&log).unwrap();
            if text.contains(needle) {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    host.kill().unwrap();
    host.wait().unwrap();
    text
}

async fn log_line_reaches_the_hosts_log_tagged_with_service(lang: Lang) {
    let needle = format!(
        "{} handler: {}.run #1 key=l1 action=ack attempt=1",
        lang.0, lang.0
    );
    let text = host_log_with(lang, &needle).await;
    let line = text.lines().find(|l| l.contains(&needle)).unwrap();
    assert!(
        line.contains("INFO") && line.contains(&format!("service={}", lang.0)),
        "{line}"
    );
}

macro_rules! per_language {
    ($($name:ident),* $(,)?) => {
        mod python {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::PYTHON).await } )*
        }
        mod js {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::JS).await } )*
        }
    };
}

per_language!(
    ack_writes_state_and_its_emit_is_consumed_downstream,
    retry_waits_its_delay_and_ends_dead_at_max_attempts,
    retry_then_ack_on_a_later_attempt_keeps_that_attempts_writes,
    dead_carries_the_handlers_reason_and_keeps_no_writes,
    log_line_reaches_the_hosts_log_tagged_with_service,
);
