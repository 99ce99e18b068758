//! Guest stdout/stderr: captured in memory up to a cap, then written to `tracing` by the
//! invocation. Output past the cap is dropped and counted, never an error: a chatty guest must
//! not trap because of its logging.

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
    bytes: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl CappedOutput {
    pub fn new(cap: usize) -> CappedOutput {
        CappedOutput {
            inner: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                cap,
                dropped: 0,
            })),
        }
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
        let room = c.cap.saturating_sub(c.bytes.len());
        let kept = room.min(buf.len());
        c.bytes.extend_from_slice(&buf[..kept]);
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
