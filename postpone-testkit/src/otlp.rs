//! A stand-in OTLP/HTTP collector for tests of trace export.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// The request target (`/v1/traces`).
    pub path: String,
    /// The request line and the headers, as sent.
    pub head: String,
    /// The body (an OTLP `ExportTraceServiceRequest` when the exporter is right).
    pub body: Vec<u8>,
}

/// Listens on a free port of 127.0.0.1 on threads of its own (for as long as the test
/// process lives), keeps every request, and answers each with the next of its statuses
/// (200 once they run out).
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    endpoint: String,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
}

impl OtlpReceiver {
    /// A receiver that answers 200 to everything.
    ///
    /// # Panics
    /// No port of 127.0.0.1 can be bound.
    #[must_use]
    pub fn start() -> Self {
        Self::answering(&[])
    }

    /// A receiver that answers its first requests with `statuses`, in order.
    ///
    /// # Panics
    /// No port of 127.0.0.1 can be bound.
    #[must_use]
    pub fn answering(statuses: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (kept, statuses) = (requests.clone(), Arc::new(Mutex::new(statuses.to_vec())));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (kept, statuses) = (kept.clone(), statuses.clone());
                std::thread::spawn(move || serve(stream, &kept, &statuses));
            }
        });
        Self { endpoint, requests }
    }

    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it (`http://127.0.0.1:PORT`).
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The requests so far.
    #[must_use]
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `count` requests have come, and returns them all.
    ///
    /// # Panics
    /// Fewer have come after 20 seconds.
    #[must_use]
    pub fn wait_for(&self, count: usize) -> Vec<ReceivedRequest> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.requests();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} OTLP requests came",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Reads requests from one connection (a head, then `content-length` bytes) until it
/// closes, answering each.
fn serve(
    mut stream: std::net::TcpStream,
    kept: &Mutex<Vec<ReceivedRequest>>,
    statuses: &Mutex<Vec<u16>>,
) {
    let Ok(read) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read);
    loop {
        let (mut head, mut length) = (String::new(), 0);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        kept.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ReceivedRequest { path, head, body });
        let status = {
            let mut statuses = statuses.lock().unwrap_or_else(PoisonError::into_inner);
            if statuses.is_empty() {
                200
            } else {
                statuses.remove(0)
            }
        };
        let answer = format!("HTTP/1.1 {status} Stand-in\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
