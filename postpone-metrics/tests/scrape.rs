//! A worker's metrics, scraped over HTTP during and after a drain on a real PostgreSQL, and
//! read with an exposition-format parser written by others (`prometheus-parse`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postpone::task::{JobContext, TaskError};
use postpone::{App, ApplyScope, JobStatus, Task, WorkerConfig};
use postpone_metrics::Metrics;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const JOBS: usize = 300;

/// Succeeds, or fails (no retry) when asked.
#[derive(Serialize, Deserialize)]
struct Work {
    fail: bool,
}

impl Task for Work {
    fn name() -> std::borrow::Cow<'static, str> {
        "metrics.work".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        if self.fail {
            return Err(TaskError::new("Nope", "asked to fail"));
        }
        Ok(())
    }
}

/// A fresh database, dropped when the guard goes.
async fn fresh_database() -> postpone_testkit::FreshDatabase {
    let server = postpone_testkit::server()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    server
        .fresh_database("postpone_metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `GET /metrics` over a plain TCP connection: status line, content type, body.
async fn scrape(address: std::net::SocketAddr) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the metrics server");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    (status, content_type, body.to_owned())
}

/// Samples by name and sorted labels, parsed by `prometheus-parse`.
fn parse(body: &str) -> HashMap<(String, Vec<(String, String)>), f64> {
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition format parses");
    let mut samples = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<(String, String)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|b| b.count).unwrap_or_default()
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        samples.insert((sample.metric, labels), value);
    }
    samples
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_counted_and_the_scrape_parses() {
    let db = fresh_database().await;
    let metrics = Arc::new(Metrics::new());
    let app = App::builder()
        .database_url(db.url())
        .expect("url")
        .task::<Work>()
        .subscribe(metrics.clone())
        .build()
        .expect("app");
    app.apply_schema(ApplyScope::All).await.expect("schema");
    let listener = postpone_metrics::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let server = tokio::spawn(postpone_metrics::serve(
        listener,
        metrics.clone(),
        stop.clone(),
    ));

    // Before any job: the metrics without labels, at zero (a labelled family shows once
    // it has a sample).
    let (status, content_type, body) = scrape(address).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let samples = parse(&body);
    for name in [
        "postpone_local_queue_jobs",
        "postpone_jobs_running",
        "postpone_listener_reconnects_total",
        "postpone_claim_duration_seconds_count",
    ] {
        assert_eq!(
            samples.get(&(name.to_owned(), Vec::new())),
            Some(&0.0),
            "{name}: {body}"
        );
    }

    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push(app.defer(Work { fail: i % 10 == 0 }).await.expect("defer"));
    }
    let handle = app
        .start_worker(WorkerConfig {
            concurrency: 8,
            install_signal_handlers: false,
            ..WorkerConfig::default()
        })
        .await
        .expect("worker");
    // Scraped while it drains: always parses, counts never go down.
    let manager = app.job_manager();
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = |outcome: &str| {
        (
            "postpone_jobs_finished_total".to_owned(),
            labels(&[
                ("queue", "default"),
                ("task", "metrics.work"),
                ("outcome", outcome),
            ]),
        )
    };
    let mut last = 0.0;
    loop {
        let (_, _, body) = scrape(address).await;
        let samples = parse(&body);
        let done = samples.get(&key("succeeded")).copied().unwrap_or_default()
            + samples.get(&key("failed")).copied().unwrap_or_default();
        assert!(done >= last, "finished went down: {last} then {done}");
        last = done;
        let last_id = *ids.last().expect("ids");
        let status = manager.get_job_status(last_id).await.expect("status");
        if done as usize == JOBS && status != JobStatus::Todo && status != JobStatus::Doing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drain did not end: {done} of {JOBS}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.stop();
    handle.join().await.expect("the worker stops");

    let (_, _, body) = scrape(address).await;
    let samples = parse(&body);
    let get = |name: &str, pairs: &[(&str, &str)]| {
        samples
            .get(&(name.to_owned(), labels(pairs)))
            .copied()
            .unwrap_or_else(|| panic!("no sample {name} {pairs:?} in\n{body}"))
    };
    let job = [("queue", "default"), ("task", "metrics.work")];
    assert_eq!(
        get(
            "postpone_jobs_finished_total",
            &[job[0], job[1], ("outcome", "succeeded")]
        ),
        270.0
    );
    assert_eq!(
        get(
            "postpone_jobs_finished_total",
            &[job[0], job[1], ("outcome", "failed")]
        ),
        30.0
    );
    assert_eq!(get("postpone_jobs_started_total", &job), 300.0);
    assert_eq!(get("postpone_jobs_claimed_total", &[job[0]]), 300.0);
    // Histogram counts: one observation per attempt, per claimed job, per batch.
    assert_eq!(
        get(
            "postpone_job_duration_seconds_count",
            &[job[0], job[1], ("outcome", "succeeded")]
        ),
        270.0
    );
    assert_eq!(
        get("postpone_job_local_wait_seconds_count", &[job[0]]),
        300.0
    );
    let batches = get("postpone_batch_size_count", &[("kind", "outcomes")]);
    let batched = get("postpone_batch_size_sum", &[("kind", "outcomes")]);
    assert!(
        batches >= 1.0 && batched == 300.0,
        "{batches} batches of {batched} jobs"
    );
    // Nothing left waiting or running once stopped.
    assert_eq!(get("postpone_local_queue_jobs", &[]), 0.0);
    assert_eq!(get("postpone_jobs_running", &[]), 0.0);
    assert!(get("postpone_claim_duration_seconds_count", &[]) >= 1.0);

    stop.cancel();
    server
        .await
        .expect("server task")
        .expect("the server stops cleanly");
}

#[tokio::test]
async fn a_bad_or_taken_address_is_one_clear_line() {
    for bad in ["nonsense", "127.0.0.1", ":9464", "127.0.0.1:99999"] {
        let error = postpone_metrics::bind(bad)
            .await
            .expect_err(bad)
            .to_string();
        assert!(
            error.contains(&format!("{bad:?} is not host:port")),
            "{bad}: {error}"
        );
        assert_eq!(error.lines().count(), 1);
    }
    let taken = postpone_metrics::bind("127.0.0.1:0").await.expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let error = postpone_metrics::bind(&address)
        .await
        .expect_err("taken")
        .to_string();
    assert!(
        error.starts_with(&format!("cannot serve metrics on {address}:"))
            && error.contains("--metrics-addr"),
        "{error}"
    );
}
