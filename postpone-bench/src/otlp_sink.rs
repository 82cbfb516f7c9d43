//! A stand-in OTLP/HTTP receiver for W3T: worker processes export their spans to it as
//! they would to a collector; it counts the bytes and answers 200, keeping nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The receiver, until dropped.
#[derive(Debug)]
pub(crate) struct OtlpSink {
    endpoint: String,
    bytes: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl OtlpSink {
    /// Listens on a free port of 127.0.0.1.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the OTLP sink")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = bytes.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, counted.clone()));
            }
        });
        Ok(Self {
            endpoint,
            bytes,
            accept,
        })
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for the workers.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Request bodies received so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads requests (a head, then `content-length` bytes) and answers each with 200.
async fn serve(stream: tokio::net::TcpStream, bytes: Arc<AtomicU64>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() && !first {
                break;
            }
            first = false;
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        bytes.fetch_add(length as u64, Ordering::Relaxed);
        let answered = write
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .await;
        if answered.is_err() {
            return;
        }
    }
}
