//! A webhook stand-in on an ephemeral 127.0.0.1 port, for the routes granted outbound HTTP.

use super::WAIT;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A webhook stand-in: answers `200 {"code":0}` and records each request body while up; while
/// down it accepts and closes the connection at once (the sender sees a failed request).
pub struct Sink {
    pub addr: String,
    up: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Value>>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let received = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let (u, r, c) = (up.clone(), received.clone(), changed.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let (r, c) = (r.clone(), c.clone());
                tokio::spawn(async move {
                    if let Some(body) = serve(stream).await {
                        r.lock().unwrap().push(body);
                        c.notify_waiters();
                    }
                });
            }
        });
        Sink {
            addr,
            up,
            received,
            changed,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (without polling) until at least `n` requests were received.
    pub async fn wait_received(&self, n: usize) -> Vec<Value> {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.changed.notified();
                if self.received().len() >= n {
                    return self.received();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("sink did not receive {n} request(s): {:?}", self.received()))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (headers, then `content-length` bytes) and answers Feishu-style.
async fn serve(mut stream: TcpStream) -> Option<Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[header_end..header_end + length]).unwrap_or(Value::Null);
    let answer = br#"{"code":0,"msg":"success"}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await.ok()?;
    stream.write_all(answer).await.ok()?;
    stream.shutdown().await.ok()?;
    Some(body)
}
