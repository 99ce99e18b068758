//! Hot reload: watch component files and the config file, and swap in what changed.
//!
//! Files really change in many ways: written in place, replaced by an atomic rename, deleted and
//! recreated, touched without a change, surrounded by editor temp files. So we watch the
//! *directories* (a rename or recreate replaces the inode a file watch would follow), debounce
//! per path until it has been quiet for `reload.debounce_ms`, ignore temp-file names, and
//! compare content hashes: an unchanged file is never recompiled or swapped. A new version is
//! compiled off the event path (a blocking task), validated against the contract, and only then
//! swapped in; events already running finish on the version they started with. A file that does
//! not load never replaces a working version: the error is logged and kept for `status`.
//!
//! A new version is compiled twice: first by the baseline compiler (Winch, an order of
//! magnitude faster to compile), which serves it at once, then by the optimized compiler
//! (Cranelift) in the background, whose code replaces the baseline code on the routes the
//! version still serves (`RouteTable::upgrade`). A big component thus serves its first event
//! soon after the write, and runs at full speed once the optimized code is in.

use super::Shared;
use super::routes::RouteTable;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::runtime::{LoadError, Tier};
use crate::telemetry::{
    ComponentOptimized, ComponentReloadFailed, ComponentReloaded, ConfigReloadRefused,
    ConfigReloaded,
};
use notify::{RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The file watcher, set up before [`Switchyard::start`](super::Switchyard::start) returns so
/// no change made after start is missed.
pub(super) struct Watch {
    watcher: notify::RecommendedWatcher,
    events: mpsc::UnboundedReceiver<PathBuf>,
    watched: HashSet<PathBuf>,
}

impl Watch {
    /// Starts watching the component, config and `watch_dirs` directories.
    ///
    /// # Errors
    /// If the platform watcher cannot be created (e.g. out of inotify instances).
    pub(super) fn start(shared: &Shared) -> notify::Result<Watch> {
        let (tx, events) = mpsc::unbounded_channel::<PathBuf>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && changes_content(&event.kind)
            {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
        })?;
        let mut watch = Watch {
            watcher,
            events,
            watched: HashSet::new(),
        };
        watch_dirs(shared, &mut watch.watcher, &mut watch.watched);
        Ok(watch)
    }
}

/// Reloads what changes until `stop`.
pub(super) async fn run(shared: Arc<Shared>, watch: Watch, stop: CancellationToken) {
    let Watch {
        mut watcher,
        events: mut rx,
        mut watched,
    } = watch;
    let mut due: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let next = due.values().min().copied();
        tokio::select! {
            path = rx.recv() => match path {
                Some(path) if !is_temp_file(&path) => {
                    let debounce = Duration::from_millis(shared.config.get().reload.debounce_ms);
                    due.insert(normalize(&path), Instant::now() + debounce);
                }
                Some(_) => {}
                None => return,
            },
            _ = sleep_until(next) => {
                let now = Instant::now();
                let ready: Vec<PathBuf> = due.iter().filter(|(_, t)| **t <= now).map(|(p, _)| p.clone()).collect();
                for path in ready {
                    due.remove(&path);
                    if shared.config.get().source.as_deref().map(normalize).as_deref() == Some(path.as_path()) {
                        // Refusals are logged and counted inside.
                        let _ = reload_config(&shared).await;
                        watch_dirs(&shared, &mut watcher, &mut watched);
                    } else {
                        reload_component(&shared, &path).await;
                        shared.counters.reload_checked();
                    }
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Watches the directory of every component, the config file's directory and `watch_dirs`.
fn watch_dirs(shared: &Shared, watcher: &mut impl Watcher, watched: &mut HashSet<PathBuf>) {
    let config = shared.config.get();
    let mut dirs: Vec<PathBuf> = shared
        .routes
        .paths()
        .iter()
        .filter_map(|p| p.parent().map(normalize))
        .collect();
    dirs.extend(
        config
            .reload
            .watch_dirs
            .iter()
            .map(|d| normalize(&config.resolve(d))),
    );
    if let Some(source) = &config.source {
        dirs.extend(source.parent().map(normalize));
    }
    for dir in dirs {
        if watched.contains(&dir) {
            continue;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir);
            }
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory"),
        }
    }
}

/// Canonical directory + file name, so paths from the watcher and from config compare equal
/// even while the file itself is missing (deleted, mid-rename).
pub(super) fn normalize(path: &Path) -> PathBuf {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_owned();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    dir.canonicalize()
        .map(|d| d.join(name))
        .unwrap_or_else(|_| path.to_owned())
}

/// Whether an event can mean new content. Reads (our own, when reloading) are not changes,
/// or every reload would schedule the next one.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Editors write swap, backup and temp files beside the real one; none of them is a version.
fn is_temp_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return true;
    };
    name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || name == "4913" // vim's write-permission probe
        || [".swp", ".swx", ".tmp", ".part", ".crdownload"].iter().any(|s| name.ends_with(s))
}

/// Reloads one component file for every route it serves. Returns whether a new version
/// was swapped in.
pub(super) async fn reload_component(shared: &Arc<Shared>, path: &Path) -> bool {
    let entries: Vec<_> = shared
        .routes
        .entries()
        .into_iter()
        .filter(|(_, e)| normalize(&e.component.path) == path)
        .collect();
    let Some((_, sample)) = entries.first() else {
        return false;
    };
    let file = sample.component.path.clone();
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %file.display(), version = sample.component.short_hash(),
                "component file removed; the loaded version keeps serving until it comes back");
            return false;
        }
        Err(e) => {
            let reason = format!("cannot read component {}: {e}", file.display());
            shared.routes.set_reload_error(&file, Some(reason.clone()));
            ComponentReloadFailed {
                path: &file,
                reason: &reason,
            }
            .emit();
            return false;
        }
    };
    let hash = crate::runtime::content_hash(&bytes);
    let bytes = Arc::new(bytes);
    let mut swapped_any = false;
    // One compile per linking (a file can serve routes with and without outbound HTTP or sql).
    let mut by_grant: HashMap<crate::runtime::Grants, super::routes::RouteEntry> = HashMap::new();
    for (_, e) in entries {
        by_grant.entry(e.policy.grants()).or_insert(e);
    }
    for (granted, entry) in by_grant {
        if *entry.component.hash == *hash {
            shared.routes.set_reload_error(&file, None);
            continue; // touched, or already this version
        }
        let started = Instant::now();
        // Baseline first: the new version serves as soon as Winch has compiled it, and its
        // optimized code replaces it in the background. A component Winch cannot compile
        // (a wasm proposal it lacks) is compiled optimized at once instead, and so is a version
        // whose optimized code this process put in the compile cache (a switch back to it).
        let first = if shared.runtime.optimized_in_cache(&hash, granted) {
            Tier::Optimized
        } else {
            Tier::Baseline
        };
        let loaded = match compile(shared, first, &file, &bytes, &entry.policy).await {
            Err(LoadError::Compile { reason, .. }) if first == Tier::Baseline => {
                tracing::debug!(path = %file.display(), %reason,
                    "the baseline compiler refused the component; compiling optimized");
                compile(shared, Tier::Optimized, &file, &bytes, &entry.policy).await
            }
            other => other,
        };
        match loaded {
            Ok(component) => {
                let routes = shared.routes.swap(&component, granted);
                shared.routes.set_reload_error(&file, None);
                ComponentReloaded {
                    path: &file,
                    version: component.short_hash(),
                    routes: &routes,
                    compile_ms: started.elapsed().as_millis(),
                    tier: component.tier.as_str(),
                }
                .emit();
                if component.tier == Tier::Baseline {
                    tokio::spawn(optimize(
                        shared.clone(),
                        component,
                        bytes.clone(),
                        entry.policy.clone(),
                    ));
                }
                swapped_any = true;
            }
            Err(e) => {
                let reason = e.to_string();
                shared.routes.set_reload_error(&file, Some(reason.clone()));
                ComponentReloadFailed {
                    path: &file,
                    reason: &reason,
                }
                .emit();
            }
        }
    }
    swapped_any
}

/// Compiles `bytes` with `tier`'s compiler on a blocking thread (a big component takes
/// seconds).
async fn compile(
    shared: &Arc<Shared>,
    tier: Tier,
    file: &Path,
    bytes: &Arc<Vec<u8>>,
    policy: &Arc<crate::runtime::Policy>,
) -> Result<Arc<crate::runtime::LoadedComponent>, LoadError> {
    let (s, f, b, p) = (
        shared.clone(),
        file.to_owned(),
        bytes.clone(),
        policy.clone(),
    );
    tokio::task::spawn_blocking(move || s.runtime.load_tier(tier, &f, &b, &p))
        .await
        .unwrap_or_else(|e| {
            Err(LoadError::Compile {
                path: file.to_owned(),
                reason: format!("compile task failed: {e}"),
            })
        })
}

/// Compiles a reloaded version optimized and swaps it in where its baseline code still
/// serves. A failure leaves the baseline code serving (it passed the same checks) and is
/// logged.
async fn optimize(
    shared: Arc<Shared>,
    baseline: Arc<crate::runtime::LoadedComponent>,
    bytes: Arc<Vec<u8>>,
    policy: Arc<crate::runtime::Policy>,
) {
    let started = Instant::now();
    let file = baseline.path.clone();
    match compile(&shared, Tier::Optimized, &file, &bytes, &policy).await {
        Ok(component) => {
            let routes = shared.routes.upgrade(&component, policy.grants());
            if !routes.is_empty() {
                ComponentOptimized {
                    path: &file,
                    version: component.short_hash(),
                    routes: &routes,
                    compile_ms: started.elapsed().as_millis(),
                }
                .emit();
            }
        }
        Err(e) => {
            let reason = format!("optimized compile failed, baseline code keeps serving: {e}");
            ComponentReloadFailed {
                path: &file,
                reason: &reason,
            }
            .emit();
        }
    }
}

/// Re-reads the config file and applies it, validated exactly as at start-up. Routes, limits,
/// grants, `[retry]`, `[relay]`, `[consumer]`, `hold_key_order` and `[reload]`'s debounce and
/// watch_dirs apply live (each loop reads the config cell per round or batch). Anything
/// invalid, or a change to a key that needs a restart ([`keys_needing_restart`]), refuses the
/// whole reload and keeps the running config.
///
/// # Errors
/// The reason the new config was refused.
pub(super) async fn reload_config(shared: &Arc<Shared>) -> Result<usize, String> {
    let Some(path) = shared.config.get().source.clone() else {
        return Err("this host was not started from a config file".into());
    };
    let result = apply_config(shared, &path).await;
    match &result {
        Ok(routes) => ConfigReloaded {
            path: &path,
            routes: *routes,
        }
        .emit(),
        Err(reason) => ConfigReloadRefused {
            path: &path,
            reason,
        }
        .emit(),
    }
    result
}

async fn apply_config(shared: &Arc<Shared>, path: &Path) -> Result<usize, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    shared.runtime.accepts(&config)?;
    let catalog = Catalog::from_config(&config).map_err(|e| e.to_string())?;
    let restart = keys_needing_restart(
        &shared.config.get(),
        &config,
        &shared.catalog.get(),
        &catalog,
    );
    if !restart.is_empty() {
        return Err(format!(
            "{} changed: restart to apply (the running host keeps its config)",
            restart.join(", ")
        ));
    }
    let s = shared.clone();
    let entries = tokio::task::spawn_blocking(move || {
        let current = s.routes.entries();
        RouteTable::build(&s.runtime, &config, &catalog, &current).map(|e| (e, catalog, config))
    })
    .await
    .map_err(|e| format!("reload task failed: {e}"))?
    .map_err(|e| e.to_string())?;
    let (entries, catalog, config) = entries;
    let count = entries.len();
    // Catalog first: a route is never served before its event type is routed.
    shared.catalog.set(catalog);
    shared.routes.replace_all(entries);
    shared
        .health
        .set_window(Duration::from_millis(config.limits.unhealthy_after_ms));
    shared.config.set(config);
    Ok(count)
}

/// The keys of `new` that differ from the running config and cannot apply without a restart:
/// what the host opened or bound at start (database, transport, admin listener, compile cache,
/// the watcher) and every service's wiring (a new service needs its table, relay and consumer;
/// a renamed table or topic would strand rows).
fn keys_needing_restart(
    old: &Config,
    new: &Config,
    old_catalog: &Catalog,
    new_catalog: &Catalog,
) -> Vec<String> {
    let mut keys = Vec::new();
    let mut differs = |changed: bool, key: &str| {
        if changed {
            keys.push(key.to_owned());
        }
    };
    differs(old.database_url != new.database_url, "database_url");
    differs(old.transport != new.transport, "[transport]");
    differs(old.naming != new.naming, "naming.prefix");
    differs(old.admin.listen != new.admin.listen, "admin.listen");
    differs(old.traces != new.traces, "[traces]");
    differs(old.reload.watch != new.reload.watch, "reload.watch");
    differs(old.reload.cache != new.reload.cache, "reload.cache");
    differs(
        old.reload.cache_dir != new.reload.cache_dir,
        "reload.cache_dir",
    );
    for name in old_catalog
        .services()
        .chain(new_catalog.services())
        .map(|s| s.name.as_str())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (old_catalog.service(name), new_catalog.service(name)) {
            (Some(_), None) => keys.push(format!("services.{name} (removed)")),
            (None, Some(_)) => keys.push(format!("services.{name} (added)")),
            (Some(a), Some(b)) => {
                for (field, x, y) in [
                    ("table", &a.table, &b.table),
                    ("topic", &a.topic, &b.topic),
                    ("group", &a.group, &b.group),
                ] {
                    if x != y {
                        keys.push(format!("services.{name}.{field}"));
                    }
                }
                // Which loops run is decided at start.
                if a.mode != b.mode {
                    keys.push(format!("services.{name}.mode"));
                }
                // The archive table is checked at start only.
                if old.retention_for(name).archive != new.retention_for(name).archive {
                    keys.push(format!("services.{name}.retention.archive"));
                }
            }
            (None, None) => {}
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_temp_files_are_not_components() {
        for name in [
            ".task.wasm.swp",
            "task.wasm~",
            "#task.wasm#",
            "4913",
            "task.wasm.tmp",
            ".#task.wasm",
        ] {
            assert!(is_temp_file(Path::new(name)), "{name}");
        }
        assert!(!is_temp_file(Path::new("/x/task.wasm")));
    }

    #[test]
    fn retention_applies_live_except_its_archive() {
        let parse = |extra: &str| {
            let text = format!("database_url = 'sqlite://x'\n[services.task]\n{extra}");
            let config = Config::parse(&text, Path::new("t.toml"), Default::default()).unwrap();
            let catalog = Catalog::from_config(&config).unwrap();
            (config, catalog)
        };
        let (old, old_catalog) = parse("");
        let (live, live_catalog) =
            parse("[retention]\nconsumed_max_age = '7d'\nbatch_size = 100\ninterval = '5m'\n");
        assert!(keys_needing_restart(&old, &live, &old_catalog, &live_catalog).is_empty());
        let (archive, archive_catalog) = parse("[services.task.retention]\narchive = true\n");
        assert_eq!(
            keys_needing_restart(&old, &archive, &old_catalog, &archive_catalog),
            ["services.task.retention.archive"]
        );
    }
}
