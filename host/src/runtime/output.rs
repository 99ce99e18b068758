//! Guest output: stdout/stderr captured in memory, and the byte budget they share with the
//! `log` import (`limits.max_log_bytes`: one budget for all three). Captured output is written
//! to `tracing` by the invocation. Output past the budget is dropped and counted, never an
//! error: a chatty guest must not trap because of its logging.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Clone, Default)]
pub struct CappedOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    /// Captured stdout/stderr.
    bytes: Vec<u8>,
    /// The shared budget: stdout, stderr and `log` messages together.
    cap: usize,
    /// Bytes of the budget spent (captured stdio + admitted `log` messages).
    used: usize,
    dropped: usize,
}

impl CappedOutput {
    pub fn new(cap: usize) -> CappedOutput {
        CappedOutput {
            inner: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                cap,
                used: 0,
                dropped: 0,
            })),
        }
    }

    /// Charges a `log` message of `len` bytes to the shared budget: `true` if it fits (the
    /// caller logs it), `false` if it is dropped (and counted).
    pub fn admit(&self, len: usize) -> bool {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.used.saturating_add(len) > c.cap {
            c.dropped += len;
            return false;
        }
        c.used += len;
        true
    }

    /// What was captured, and how many bytes were dropped past the cap.
    pub fn take(&self) -> (Vec<u8>, usize) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut c.bytes), c.dropped)
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = c.cap.saturating_sub(c.used);
        let kept = room.min(buf.len());
        c.bytes.extend_from_slice(&buf[..kept]);
        c.used += kept;
        c.dropped += buf.len() - kept;
        // Report everything as written so the guest's writer never sees an error.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
