//! Hot reload: a changed component serves the next event, in-flight ones finish on their
//! version, broken files never replace a working one, and each real change reloads once.

use crate::support::{Harness, Setup, WAIT, component, config_text, eventually, hash_of, until};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard::config::Config;
use switchyard::runtime::Tier;
use switchyard::transport::embedded::EmbeddedTransport;

const TABLE: &str = "probe_outbox_messages";

/// A host whose `reload.run` route serves `<tmp>/current.wasm`, a copy of probe build "a".
struct Reloading {
    h: Harness,
    dir: tempfile::TempDir,
}

impl Reloading {
    async fn start() -> Reloading {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(component("probe"), dir.path().join("current.wasm")).unwrap();
        let extra = format!(
            "[[routes]]\nevent_type = \"reload.run\"\nservice = \"probe\"\ncomponent = \"{}\"\n",
            dir.path().join("current.wasm").display()
        );
        let h = Harness::start_with(Setup::SQLITE_EMBEDDED, &extra).await;
        Reloading { h, dir }
    }

    fn current(&self) -> PathBuf {
        self.dir.path().join("current.wasm")
    }

    fn running(&self) -> &switchyard::Running {
        self.h.running()
    }

    fn serving(&self) -> String {
        let routes = self.running().routes();
        routes
            .iter()
            .find(|(t, _)| t == "reload.run")
            .unwrap()
            .1
            .hash
            .to_string()
    }

    /// Waits (bounded) until the route serves `hash`.
    async fn wait_serving(&self, hash: &str) {
        eventually(format!("version {hash} to be served"), WAIT, || async {
            until(self.serving(), |serving| serving == hash)
        })
        .await;
    }

    async fn wait_reload_error(&self) -> String {
        eventually("the broken file to be reported", WAIT, || async {
            self.running().reload_error(&self.current()).ok_or(())
        })
        .await
    }

    /// Waits until the reloader has checked one more changed file than `before` (a count of
    /// [`Counters::reload_checks`](switchyard::engine::Counters::reload_checks)): the change
    /// made since was processed, so whatever it would have swapped is swapped now.
    async fn wait_checked_after(&self, before: u64) {
        let counters = self.running().counters();
        eventually("the reloader to check the changed file", WAIT, || async {
            until(counters.reload_checks(), |n| *n > before)
        })
        .await;
    }
}

/// Replaces `target` atomically: write a temp file beside it, then rename over it.
fn rename_replace(source: &Path, target: &Path) {
    let tmp = target.with_file_name(".current.wasm.tmp");
    std::fs::copy(source, &tmp).unwrap();
    std::fs::rename(&tmp, target).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_a_steady_stream_lose_nothing_and_apply_each_event_once() {
    let mut r = Reloading::start().await;
    let (a, b) = (component("probe"), component("probe-b"));
    let (hash_a, hash_b) = (hash_of(&a), hash_of(&b));
    assert_ne!(hash_a, hash_b);
    let host = Arc::new(r.h.host.outbox());
    let producer = {
        let host = host.clone();
        let pool = match &r.h.db {
            crate::testdb::TestDb::Sqlite(pool) => pool.clone(),
            _ => unreachable!("this test runs on SQLite"),
        };
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..600 {
                let mut conn = pool.acquire().await.unwrap();
                let event = switchyard::NewEvent::new(
                    "reload.run",
                    json!({"record": true, "incr": [format!("n/{i}")]}),
                );
                let ticket = host.enqueue(&mut conn, event).await.unwrap();
                ids.push(ticket.outbox_id);
                ticket.wake();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ids
        })
    };
    for swap in 0..20 {
        let (file, hash) = if swap % 2 == 0 {
            (&b, &hash_b)
        } else {
            (&a, &hash_a)
        };
        rename_replace(file, &r.current());
        r.wait_serving(hash).await;
    }
    let ids = producer.await.unwrap();
    assert_eq!(
        r.running().component_reloads(),
        20,
        "each replacement reloads exactly once"
    );
    let (mut by_a, mut by_b) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        let row = r.h.wait_final(TABLE, *id).await;
        assert_eq!(row.status, "consumed", "event {id} was lost: {row:?}");
        let version = row.handler_version.unwrap();
        let ran = r.h.state("probe", &format!("ran/{id}")).await.unwrap();
        let expected = if version == hash_a {
            "a"
        } else if version == hash_b {
            "b"
        } else {
            panic!("unknown version {version}")
        };
        assert_eq!(
            ran, expected,
            "row {id}: recorded version and effects disagree"
        );
        if expected == "a" {
            by_a += 1
        } else {
            by_b += 1
        }
        assert_eq!(
            r.h.state("probe", &format!("n/{i}")).await.as_deref(),
            Some("1"),
            "applied once"
        );
    }
    println!("600 events: {by_a} by version a, {by_b} by version b");
    assert!(by_a > 0 && by_b > 0, "both versions served events");
    r.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_never_replace_the_working_version() {
    let mut r = Reloading::start().await;
    let good = hash_of(&component("probe"));
    let b = std::fs::read(component("probe-b")).unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("garbage", b"this is not wasm".to_vec(), "does not compile"),
        (
            "wrong world",
            std::fs::read(component("not-a-handler")).unwrap(),
            "does not implement switchyard:handler",
        ),
        ("truncated", b[..b.len() / 2].to_vec(), "does not compile"),
    ];
    for (what, bytes, expected) in cases {
        std::fs::write(r.current(), &bytes).unwrap();
        let error = r.wait_reload_error().await;
        assert!(
            error.contains(expected) && error.contains("current.wasm"),
            "{what}: {error}"
        );
        assert_eq!(r.serving(), good, "{what}: the old version keeps serving");
        let id = r.h.publish("reload.run", json!({"record": true})).await;
        let row = r.h.wait_final(TABLE, id).await;
        assert_eq!(
            (row.status.as_str(), row.handler_version.as_deref()),
            ("consumed", Some(good.as_str())),
            "{what}"
        );
        // Repair, so the next case starts from a clean state.
        std::fs::copy(component("probe"), r.current()).unwrap();
        eventually(
            format!("{what}: the repair to be noticed"),
            WAIT,
            || async {
                match r.running().reload_error(&r.current()) {
                    None => Ok(()),
                    Some(error) => Err(error),
                }
            },
        )
        .await;
    }
    assert_eq!(
        r.running().component_reloads(),
        0,
        "nothing broken was ever swapped in"
    );
    r.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_way_of_changing_a_file_reloads_exactly_once_and_a_touch_not_at_all() {
    let mut r = Reloading::start().await;
    let (a, b) = (component("probe"), component("probe-b"));
    let checks = || r.running().counters().reload_checks();
    // Each change is awaited until the reloader has checked the file (a counter), so a count of
    // swaps read after it includes whatever the change would have swapped.
    // Rename-replace.
    rename_replace(&b, &r.current());
    r.wait_serving(&hash_of(&b)).await;
    assert_eq!(r.running().component_reloads(), 1, "rename-replace");
    // In-place write (truncate + write of the same inode).
    std::fs::write(r.current(), std::fs::read(&a).unwrap()).unwrap();
    r.wait_serving(&hash_of(&a)).await;
    assert_eq!(r.running().component_reloads(), 2, "in-place write");
    // Delete, then recreate.
    let before = checks();
    std::fs::remove_file(r.current()).unwrap();
    r.wait_checked_after(before).await;
    assert_eq!(
        r.serving(),
        hash_of(&a),
        "a deleted file keeps its loaded version serving"
    );
    assert_eq!(
        r.running().component_reloads(),
        2,
        "a deletion swaps nothing"
    );
    std::fs::copy(&b, r.current()).unwrap();
    r.wait_serving(&hash_of(&b)).await;
    assert_eq!(r.running().component_reloads(), 3, "delete + recreate");
    // An editor's temp file beside it, then a touch without a change: the touch is checked
    // after the temp file's event was seen (the watcher's events arrive in order).
    let before = checks();
    std::fs::write(r.dir.path().join(".current.wasm.swp"), b"swap").unwrap();
    std::fs::write(r.current(), std::fs::read(&b).unwrap()).unwrap();
    r.wait_checked_after(before).await;
    assert_eq!(
        r.running().component_reloads(),
        3,
        "same content or temp files reload nothing"
    );
    r.h.stop().await;
}

/// The database of a host started by [`host_from_file`] in `dir`.
pub(crate) async fn host_db(dir: &Path) -> crate::testdb::TestDb {
    let url = format!("sqlite://{}", dir.join("db.sqlite").display());
    crate::testdb::TestDb::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap())
}

/// A host started from a config file on disk, so the file itself can be changed.
pub(crate) async fn host_from_file(
    dir: &Path,
    extra: &str,
) -> (switchyard::Switchyard, switchyard::Running, PathBuf) {
    let path = dir.join("switchyard.toml");
    let url = format!("sqlite://{}", dir.join("db.sqlite").display());
    std::fs::write(&path, config_text(&url, extra)).unwrap();
    let host = switchyard::Switchyard::open(Config::load(&path).unwrap())
        .await
        .unwrap();
    let running = host
        .start(Arc::new(EmbeddedTransport::new()))
        .await
        .unwrap();
    (host, running, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_applies_valid_routes_and_refuses_invalid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (host, running, path) = host_from_file(dir.path(), "").await;
    let original = std::fs::read_to_string(&path).unwrap();
    // A new route for an existing service, through a file change picked up by the watcher.
    let added = format!(
        "{original}\n[[routes]]\nevent_type = \"probe.extra\"\nservice = \"probe\"\ncomponent = \"{}\"\n",
        component("probe-b").display()
    );
    std::fs::write(&path, &added).unwrap();
    eventually("the new route probe.extra to be applied", WAIT, || async {
        let routes: Vec<String> = running.routes().into_iter().map(|(t, _)| t).collect();
        until(routes, |routes| routes.iter().any(|t| t == "probe.extra"))
    })
    .await;
    let id = host
        .publish(switchyard::NewEvent::new(
            "probe.extra",
            json!({"record": true}),
        ))
        .await
        .unwrap();
    let db = host_db(dir.path()).await;
    let row = eventually(format!("row {id} to be consumed"), WAIT, || async {
        match db.row(TABLE, id).await {
            Some(row) if row.status == "consumed" => Ok(row),
            row => Err(row),
        }
    })
    .await;
    assert_eq!(row.handler_version.unwrap(), hash_of(&component("probe-b")));
    // Invalid configs are refused with the reason, and the running routes stay.
    for (what, text, reason) in [
        (
            "bad toml",
            format!("{added}\n[[routes]\n"),
            "invalid config file",
        ),
        (
            "conflict",
            format!(
                "{added}\n[[routes]]\nevent_type = \"probe.extra\"\nservice = \"sink\"\ncomponent = \"{}\"\n",
                component("probe").display()
            ),
            "routed to two services",
        ),
        (
            "new service",
            format!("{added}\n[services.billing]\n"),
            "restart to apply",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = running.reload_config().await.unwrap_err();
        assert!(err.contains(reason), "{what}: {err}");
        assert!(
            running.routes().iter().any(|(t, _)| t == "probe.extra"),
            "{what}: running config kept"
        );
    }
    assert!(running.shutdown(Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_serves_on_baseline_code_then_on_its_optimized_code() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("current.wasm");
    std::fs::copy(component("probe"), &current).unwrap();
    let extra = format!(
        "[reload]\nwatch = false\n[[routes]]\nevent_type = \"reload.run\"\nservice = \"probe\"\n\
         component = \"{}\"\n",
        current.display()
    );
    let (host, running, _) = host_from_file(dir.path(), &extra).await;
    let serving = || {
        let routes = running.routes();
        let c = &routes.iter().find(|(t, _)| t == "reload.run").unwrap().1;
        (c.hash.to_string(), c.tier)
    };
    assert_eq!(serving().1, Tier::Optimized, "start-up compiles optimized");
    let b = component("probe-b");
    std::fs::copy(&b, &current).unwrap();
    assert!(running.reload_component(&current).await);
    // Swapped as soon as the baseline compiler is done: the optimized compile has only just
    // started (it takes longer than this read).
    assert_eq!(serving(), (hash_of(&b), Tier::Baseline));
    let id = host
        .publish(switchyard::NewEvent::new(
            "reload.run",
            json!({"record": true}),
        ))
        .await
        .unwrap();
    eventually(
        "the optimized code of version b to be swapped in",
        WAIT,
        || async { until(serving(), |s| *s == (hash_of(&b), Tier::Optimized)) },
    )
    .await;
    assert_eq!(
        running.component_reloads(),
        1,
        "the upgrade is not another version"
    );
    let db = host_db(dir.path()).await;
    let row = eventually("the event to be consumed", WAIT, || async {
        until(db.row(TABLE, id).await, |r| {
            r.as_ref().is_some_and(|r| r.status == "consumed")
        })
    })
    .await
    .unwrap();
    assert_eq!(row.handler_version.as_deref(), Some(hash_of(&b).as_str()));
    assert_eq!(
        db.state("probe", &format!("ran/{id}")).await.as_deref(),
        Some(&b"b"[..])
    );
    // Back to the version start-up compiled: its optimized code is in the compile cache, so it
    // serves optimized at once (a cache read), never baseline.
    let a = component("probe");
    std::fs::copy(&a, &current).unwrap();
    assert!(running.reload_component(&current).await);
    assert_eq!(serving(), (hash_of(&a), Tier::Optimized));
    assert!(running.shutdown(Duration::from_secs(10)).await);
}
