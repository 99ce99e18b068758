//! A local stand-in for Feishu's bot webhook, for `scripts/demo-smartflow.sh`: listens on the
//! address given (default `127.0.0.1:8099`), prints each request body it receives on one line,
//! and answers Feishu's success reply `{"code":0,"msg":"success"}`. Runs until killed.
//!
//! It owns nothing else and must never be used as a real server: no TLS, one request per
//! connection, bodies up to 1 MiB.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request accepted, bytes.
const MAX_REQUEST: usize = 1 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let listener = TcpListener::bind(&addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e} (is another sink or demo still running?)")
    })?;
    eprintln!("webhook sink listening on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = serve(stream).await {
                eprintln!("webhook sink: {e}");
            }
        });
    }
}

async fn serve(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed before the headers ended");
        buf.extend_from_slice(&chunk[..n]);
        anyhow::ensure!(buf.len() <= MAX_REQUEST, "request over {MAX_REQUEST} bytes");
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
    anyhow::ensure!(length <= MAX_REQUEST, "body over {MAX_REQUEST} bytes");
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed before the body ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    let request_line = String::from_utf8_lossy(&buf[..header_end])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    println!(
        "webhook received: {request_line} {}",
        String::from_utf8_lossy(&buf[header_end..header_end + length])
    );
    let answer = br#"{"code":0,"msg":"success"}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    Ok(())
}
