//! The span processor: encodes each ended span into the open batch, hands full batches to
//! one sender thread, and that thread posts them over OTLP/HTTP.
//!
//! It does what the SDK's batch processor and the OTLP crate's exporter do together, at
//! less than half their cost per span (W3T, docs/observability.md): the span is encoded
//! where it ends ([`encode`]), so no `SpanData` crosses threads and no intermediate
//! message structs are built. Its settings are the standard ones ([`Config`]): a batch
//! goes when it holds `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans or when it is
//! `OTEL_BSP_SCHEDULE_DELAY` old; when the collector falls behind by more than
//! `OTEL_BSP_MAX_QUEUE_SIZE` spans, new batches are dropped and counted, never blocking a
//! job. The sender thread does all the reporting (one warning when spans start being
//! dropped or requests start failing, one when export works again, the totals at
//! shutdown), so that ending a span never logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::Config;
use super::encode::{self, ScopeBatch};

/// Spans ended and encoded, not sent yet, grouped by scope.
#[derive(Debug, Default)]
struct Batch {
    scopes: Vec<ScopeBatch>,
    spans: usize,
}

impl Batch {
    fn add(&mut self, span: &SpanData) {
        let scope = &span.instrumentation_scope;
        let index = match self.scopes.iter().position(|s| &s.scope == scope) {
            Some(index) => index,
            None => {
                self.scopes.push(ScopeBatch {
                    scope: scope.clone(),
                    spans: Vec::new(),
                });
                self.scopes.len() - 1
            }
        };
        encode::span(&mut self.scopes[index].spans, span);
        self.spans += 1;
    }
}

enum Message {
    Batch(Batch),
    /// Send the open batch too, then answer.
    Flush(SyncSender<()>),
    /// As `Flush`, then stop.
    Shutdown(SyncSender<()>),
}

/// What the processor and its sender thread share.
#[derive(Debug, Default)]
struct Shared {
    open: Mutex<Batch>,
    /// The resource's encoded attributes and its schema URL, set once by the provider.
    resource: Mutex<(Vec<u8>, String)>,
    /// Spans dropped because the queue was full or the processor shut down.
    dropped: AtomicU64,
    /// Spans a request carried that the collector did not take (an error or a refusal).
    failed: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a batch half-written at worst; keep going.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Posts batches of spans to an OTLP/HTTP collector (see the module documentation).
#[derive(Debug)]
pub(crate) struct OtlpProcessor {
    shared: Arc<Shared>,
    batch_size: usize,
    timeout: Duration,
    sender: SyncSender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl OtlpProcessor {
    /// Starts the sender thread.
    ///
    /// # Errors
    /// The thread cannot be started, or the HTTP client cannot be built.
    pub(crate) fn start(config: Config) -> Result<Self, String> {
        let queued = (config.queue_size / config.batch_size).max(1);
        let (sender, receiver) = mpsc::sync_channel(queued);
        let shared = Arc::new(Shared::default());
        let (batch_size, timeout) = (config.batch_size, config.timeout);
        let (built, client_built) = mpsc::sync_channel(1);
        let state = shared.clone();
        // reqwest's blocking client runs a runtime of its own, which must be neither made
        // nor dropped inside an async context: it lives and dies on the sender thread.
        let thread = std::thread::Builder::new()
            .name("postpone-otlp".to_owned())
            .spawn(move || {
                let client = match reqwest::blocking::Client::builder()
                    .timeout(config.timeout)
                    .build()
                {
                    Ok(client) => client,
                    Err(error) => {
                        let _ = built.send(Err(format!("cannot build the HTTP client: {error}")));
                        return;
                    }
                };
                let _ = built.send(Ok(()));
                let sending = Sender {
                    client,
                    config,
                    shared: state,
                    failing: false,
                    dropped_seen: 0,
                    dropping: false,
                    reported: 0,
                };
                sending.run(&receiver);
            })
            .map_err(|e| format!("cannot start the exporting thread: {e}"))?;
        client_built
            .recv()
            .map_err(|_| "the exporting thread stopped as it started".to_owned())??;
        Ok(Self {
            shared,
            batch_size,
            timeout,
            sender,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sends `message` and waits for its answer, `timeout` in all: a queue kept full by a
    /// collector that hangs does not hold a flush, or the command's exit, past it.
    fn ask(&self, message: fn(SyncSender<()>) -> Message, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        let (answer, answered) = mpsc::sync_channel(1);
        let mut message = message(answer);
        loop {
            match self.sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
                Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                    message = again;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(timeout)),
            }
        }
        answered
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for OtlpProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        // Recorded but not sampled (a `RecordOnly` sampler): not exported.
        if !span.span_context.is_sampled() {
            return;
        }
        let full = {
            let mut open = lock(&self.shared.open);
            open.add(&span);
            (open.spans >= self.batch_size).then(|| std::mem::take(&mut *open))
        };
        drop(span);
        if let Some(batch) = full {
            let spans = batch.spans as u64;
            if self.sender.try_send(Message::Batch(batch)).is_err() {
                self.shared.dropped.fetch_add(spans, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Message::Flush, self.timeout * 2)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let thread = lock(&self.thread)
            .take()
            .ok_or(OTelSdkError::AlreadyShutdown)?;
        self.ask(Message::Shutdown, timeout)?;
        thread
            .join()
            .map_err(|_| OTelSdkError::InternalFailure("the exporting thread panicked".into()))
    }

    fn set_resource(&mut self, resource: &Resource) {
        *lock(&self.shared.resource) = (
            encode::resource(resource),
            resource.schema_url().unwrap_or_default().to_owned(),
        );
    }
}

/// The sender thread's state.
struct Sender {
    client: reqwest::blocking::Client,
    config: Config,
    shared: Arc<Shared>,
    /// The last request failed: the next success says export works again.
    failing: bool,
    /// `Shared::dropped` when last looked at.
    dropped_seen: u64,
    /// The last look found new drops (a warning said so when they began).
    dropping: bool,
    /// Spans the warnings so far have counted (the totals at shutdown add only news).
    reported: u64,
}

/// An error and its causes, on one line: reqwest's own message names the URL, its
/// sources say why (`Connection refused`).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Sender {
    fn run(mut self, receiver: &Receiver<Message>) {
        loop {
            let message = receiver.recv_timeout(self.config.schedule_delay);
            self.report_drops();
            match message {
                Ok(Message::Batch(batch)) => self.post(batch),
                Ok(Message::Flush(answer)) => {
                    self.post_open();
                    let _ = answer.send(());
                }
                Ok(Message::Shutdown(answer)) => {
                    self.post_open();
                    self.report_totals();
                    let _ = answer.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => self.post_open(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Warns when spans start being dropped; a look that finds no new drop ends the
    /// episode, so the next one is reported too.
    fn report_drops(&mut self) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_seen && !self.dropping {
            self.reported += dropped - self.dropped_seen;
            tracing::warn!(
                endpoint = %self.config.endpoint,
                spans = dropped - self.dropped_seen,
                "the trace exporter is behind its collector: spans dropped (export goes on)"
            );
        }
        self.dropping = dropped > self.dropped_seen;
        self.dropped_seen = dropped;
    }

    /// At shutdown: what did not reach the collector in this process's life, when the
    /// warnings so far did not already count it all.
    fn report_totals(&self) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let failed = self.shared.failed.load(Ordering::Relaxed);
        if dropped + failed > self.reported {
            tracing::warn!(
                endpoint = %self.config.endpoint,
                dropped,
                failed,
                "spans not exported: dropped while the collector was behind, or in requests that failed"
            );
        }
    }

    /// Posts the open batch, when it holds a span.
    fn post_open(&mut self) {
        let batch = std::mem::take(&mut *lock(&self.shared.open));
        if batch.spans > 0 {
            self.post(batch);
        }
    }

    fn post(&mut self, batch: Batch) {
        let body = {
            let resource = lock(&self.shared.resource);
            encode::request(&resource.0, &resource.1, &batch.scopes)
        };
        let mut request = self
            .client
            .post(&self.config.endpoint)
            .header("content-type", "application/x-protobuf")
            .body(body);
        for (name, value) in &self.config.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let outcome = match request.send() {
            Ok(response) if response.status().is_success() => {
                // Read to the end, so the connection is kept for the next batch.
                let _ = response.bytes();
                Ok(())
            }
            Ok(response) => Err(format!("the collector answered {}", response.status())),
            Err(error) => Err(chain(&error)),
        };
        match outcome {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::warn!(
                    endpoint = %self.config.endpoint,
                    failed = self.shared.failed.load(Ordering::Relaxed),
                    "traces are exported again"
                );
            }
            Ok(()) => {}
            Err(error) => {
                self.shared
                    .failed
                    .fetch_add(batch.spans as u64, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    self.reported += batch.spans as u64;
                    tracing::warn!(
                        endpoint = %self.config.endpoint,
                        spans = batch.spans,
                        %error,
                        "could not export traces (their spans are dropped; trying again with the next batch)"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use postpone_testkit::OtlpReceiver;
    use prost::Message as _;

    use super::OtlpProcessor;
    use crate::otlp::Config;

    fn config(endpoint: &str, batch_size: usize, schedule_delay: Duration) -> Config {
        Config {
            endpoint: endpoint.to_owned(),
            headers: vec![("authorization".to_owned(), "Bearer secret token".to_owned())],
            timeout: Duration::from_secs(10),
            batch_size,
            schedule_delay,
            queue_size: 2_048,
            warnings: Vec::new(),
        }
    }

    fn provider(config: Config) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("otlp-test")
                    .build(),
            )
            .with_span_processor(OtlpProcessor::start(config).expect("the processor starts"))
            .build()
    }

    fn end_spans(provider: &SdkTracerProvider, names: &[&'static str]) {
        let tracer = provider.tracer("postpone");
        for name in names {
            tracer.in_span(*name, |_| ());
        }
    }

    /// Where `receiver` takes spans.
    fn traces(receiver: &OtlpReceiver) -> String {
        format!("{}/v1/traces", receiver.endpoint())
    }

    /// The export requests `receiver` has got once there are `count`, decoded.
    fn decoded(receiver: &OtlpReceiver, count: usize) -> Vec<ExportTraceServiceRequest> {
        receiver
            .wait_for(count)
            .iter()
            .map(|r| ExportTraceServiceRequest::decode(r.body.as_slice()).expect("protobuf"))
            .collect()
    }

    fn names(request: &ExportTraceServiceRequest) -> Vec<String> {
        request.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    #[test]
    fn full_batches_go_at_once_and_the_rest_on_flush_and_at_shutdown() {
        let receiver = OtlpReceiver::start();
        let provider = provider(config(&traces(&receiver), 3, Duration::from_secs(3_600)));
        end_spans(&provider, &["a", "b", "c", "d", "e", "f", "g"]);
        let got = decoded(&receiver, 2);
        assert_eq!(names(&got[0]), ["a", "b", "c"]);
        assert_eq!(names(&got[1]), ["d", "e", "f"]);
        // The resource is sent with each batch, and so are the configured headers.
        let resource = got[0].resource_spans[0]
            .resource
            .as_ref()
            .expect("a resource");
        assert!(
            resource
                .attributes
                .iter()
                .any(|kv| kv.key == "service.name"
                    && format!("{:?}", kv.value).contains("otlp-test"))
        );
        let head = receiver.requests()[0].head.clone();
        assert!(head.starts_with("POST /v1/traces "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/x-protobuf"),
            "{head}"
        );
        assert!(
            head.contains("authorization: Bearer secret token"),
            "{head}"
        );
        // "g" waits in the open batch until a flush.
        assert_eq!(receiver.requests().len(), 2);
        provider.force_flush().expect("flushed");
        assert_eq!(names(&decoded(&receiver, 3)[2]), ["g"]);
        end_spans(&provider, &["h"]);
        provider.shutdown().expect("shut down");
        assert_eq!(names(&decoded(&receiver, 4)[3]), ["h"]);
        // Nothing is sent after shutdown, and nothing blocks.
        end_spans(&provider, &["i", "j", "k"]);
        assert_eq!(receiver.requests().len(), 4);
    }

    #[test]
    fn a_partial_batch_goes_after_the_schedule_delay() {
        let receiver = OtlpReceiver::start();
        let provider = provider(config(&traces(&receiver), 512, Duration::from_millis(50)));
        end_spans(&provider, &["alone"]);
        assert_eq!(names(&decoded(&receiver, 1)[0]), ["alone"]);
        provider.shutdown().expect("shut down");
    }

    #[test]
    fn a_refused_batch_does_not_stop_the_next() {
        let receiver = OtlpReceiver::answering(&[503]);
        let provider = provider(config(&traces(&receiver), 1, Duration::from_secs(3_600)));
        end_spans(&provider, &["refused", "taken"]);
        let got = decoded(&receiver, 2);
        assert_eq!(names(&got[0]), ["refused"]);
        assert_eq!(names(&got[1]), ["taken"]);
        provider.shutdown().expect("shut down");
    }

    /// An application embedding the CLI may set up its tracing inside its own runtime.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn it_starts_and_stops_inside_an_async_context() {
        let receiver = OtlpReceiver::start();
        let provider = provider(config(&traces(&receiver), 512, Duration::from_secs(3_600)));
        end_spans(&provider, &["in a runtime"]);
        tokio::task::block_in_place(|| provider.shutdown()).expect("shut down");
        assert_eq!(names(&decoded(&receiver, 1)[0]), ["in a runtime"]);
    }

    #[test]
    fn a_collector_that_hangs_costs_dropped_spans_not_a_blocked_job() {
        // It takes the connection and never answers: each request waits its timeout.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!(
            "http://{}/v1/traces",
            listener.local_addr().expect("address")
        );
        let held = std::thread::spawn(move || listener.incoming().take(4).collect::<Vec<_>>());
        let mut config = config(&endpoint, 1, Duration::from_secs(3_600));
        config.timeout = Duration::from_secs(1);
        config.queue_size = 2;
        let processor = OtlpProcessor::start(config).expect("the processor starts");
        let shared = processor.shared.clone();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("postpone");
        for i in 0..100 {
            tracer.in_span("job", |cx| {
                use opentelemetry::trace::TraceContextExt as _;
                cx.span().set_attribute(KeyValue::new("i", i64::from(i)));
            });
        }
        // One request in flight and two queued at most; every other span was dropped and
        // counted, and ending it did not wait.
        let dropped = shared.dropped.load(std::sync::atomic::Ordering::Relaxed);
        assert!((97..=100).contains(&dropped), "{dropped} dropped");
        provider
            .shutdown_with_timeout(Duration::from_secs(30))
            .expect("shut down once the requests timed out");
        assert!(shared.failed.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        drop(held);
    }
}
