//! Supervised loops: a relay or consumer task that panics, or returns while the host is still
//! running, is logged, counted and restarted with backoff (0.5 s doubling to 30 s). While a
//! loop is down, [`LoopStatus`] says which and why, and the admin endpoint's `/readyz` answers
//! 503. A loop never takes the process with it, and never silently stays dead.

use crate::telemetry::LoopRestarted;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Which supervised loops are down right now, and how often any was restarted.
#[derive(Debug, Default)]
pub struct LoopStatus {
    down: Mutex<BTreeMap<String, String>>,
    restarts: AtomicU64,
}

impl LoopStatus {
    /// `(loop, why)` of every loop that is down (between its failure and its restart).
    pub fn down(&self) -> Vec<(String, String)> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Restarts of any loop since start.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    fn set(&self, name: &str, why: Option<String>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match why {
            Some(why) => down.insert(name.to_owned(), why),
            None => down.remove(name),
        };
    }
}

/// Aborts the loop's task when the supervisor itself is dropped or aborted (a shutdown past
/// its grace period), so no loop outlives its supervisor.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the loop `start()` builds until `stop`, restarting it whenever it panics or returns
/// before `stop` was cancelled.
pub(super) async fn supervise<F, Fut>(
    name: String,
    status: std::sync::Arc<LoopStatus>,
    stop: CancellationToken,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut task = AbortOnDrop(tokio::spawn(start()));
        let ended = (&mut task.0).await;
        if stop.is_cancelled() {
            return;
        }
        let why = match ended {
            Ok(()) => "the loop returned while the host was running".to_owned(),
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                format!("panicked: {text}")
            }
            Err(e) => format!("task failed: {e}"),
        };
        status.set(&name, Some(why.clone()));
        status.restarts.fetch_add(1, Ordering::Relaxed);
        LoopRestarted {
            name: &name,
            reason: &why,
            backoff,
        }
        .emit();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        status.set(&name, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_panics_is_reported_down_and_restarted() {
        let status = Arc::new(LoopStatus::default());
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (r, s) = (runs.clone(), stop.clone());
        let supervisor = tokio::spawn(supervise(
            "relay task".into(),
            status.clone(),
            stop.clone(),
            move || {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("row 7 is not UTF-8");
                    }
                    s.cancelled().await;
                }
            },
        ));
        while status.down().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(status.down()[0].0, "relay task");
        assert!(status.down()[0].1.contains("panicked: row 7 is not UTF-8"));
        tokio::time::sleep(FIRST_BACKOFF * 2).await;
        assert!(status.down().is_empty(), "restarted after the backoff");
        assert_eq!((runs.load(Ordering::SeqCst), status.restarts()), (2, 1));
        stop.cancel();
        supervisor.await.unwrap();
    }
}
