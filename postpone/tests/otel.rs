//! OpenTelemetry (`--features opentelemetry`): the spans of a defer, a claim, a job's run
//! and its completion reach an exporter (the SDK's in-memory one), and the job's span
//! links to the span that deferred it through `postpone_job_traces`, with the job's args
//! left exactly as the task wrote them (a Python task gets them as keyword arguments).
//!
//! A test binary of its own, with one test: the subscriber is set per phase on a
//! current-thread runtime (thread-local, so it sees every task the worker spawns), and
//! tracing's callsite interest is global, so a test running beside it on another thread
//! without a subscriber could leave a span disabled.

#[path = "it/harness.rs"]
mod harness;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use postpone::{App, JobStatus};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

use crate::harness::{Record, record, schema_db, work_until};

/// Spans exported in memory, through the tracing bridge.
fn tracing_to_memory() -> (
    InMemorySpanExporter,
    SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("postpone-test"));
    let subscriber = tracing_subscriber::registry().with(layer);
    let guard = tracing::subscriber::set_default(subscriber);
    (exporter, provider, guard)
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn spans_reach_the_exporter_and_a_run_links_to_the_span_that_deferred_it() {
    a_jobs_span_links_to_the_span_that_deferred_it().await;
    without_a_tracer_nothing_is_kept_and_a_malformed_context_is_ignored().await;
}

async fn a_jobs_span_links_to_the_span_that_deferred_it() {
    let (exporter, provider, _guard) = tracing_to_memory();
    let db = schema_db().await;
    let app = App::builder()
        .database_url(&db.url)
        .expect("url")
        .task::<Record>()
        .build()
        .expect("app");

    // A request of the user's service defers the job.
    let request = tracing::info_span!("http.request", route = "/signup");
    let id = app
        .defer(record("traced"))
        .instrument(request)
        .await
        .expect("defer");
    // Outside the user's spans: the defer span is a trace of its own.
    let untraced = app.defer(record("untraced")).await.expect("defer");

    work_until(
        &app,
        &[(id, JobStatus::Succeeded), (untraced, JobStatus::Succeeded)],
    )
    .await;
    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");

    // The defer span is the request's child, and names the job.
    let request = named(&spans, "http.request")[0];
    let defers = named(&spans, "postpone.defer");
    let defer = defers
        .iter()
        .find(|s| attribute(s, "job_id") == Some(id.to_string()))
        .unwrap_or_else(|| panic!("the defer span of the traced job: {defers:#?}"));
    assert_eq!(defer.parent_span_id, request.span_context.span_id());
    assert_eq!(attribute(defer, "task").as_deref(), Some("tests.record"));

    // Kept beside the job, never in its args.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT j.args, t.traceparent FROM procrastinate_jobs j
               JOIN postpone_job_traces t ON t.job_id = j.id WHERE j.id = $1",
            &[&id],
        )
        .await
        .expect("the job's trace context");
    let args: serde_json::Value = row.get(0);
    let traceparent: String = row.get(1);
    assert_eq!(args, serde_json::json!({"label": "traced"}));
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            defer.span_context.trace_id(),
            defer.span_context.span_id()
        )
    );

    // The run: its own span, with the job's fields and outcome, linked to the defer span.
    let runs = named(&spans, "postpone.job");
    let run = runs
        .iter()
        .find(|s| attribute(s, "job_id") == Some(id.to_string()))
        .expect("the run's span");
    assert_eq!(attribute(run, "task").as_deref(), Some("tests.record"));
    assert_eq!(attribute(run, "queue").as_deref(), Some("default"));
    assert_eq!(attribute(run, "attempt").as_deref(), Some("1"));
    assert_eq!(attribute(run, "outcome").as_deref(), Some("succeeded"));
    let linked: Vec<_> = run.links.iter().map(|l| l.span_context.clone()).collect();
    assert_eq!(linked.len(), 1, "{run:?}");
    assert_eq!(linked[0].trace_id(), defer.span_context.trace_id());
    assert_eq!(linked[0].span_id(), defer.span_context.span_id());
    assert_ne!(
        run.span_context.trace_id(),
        defer.span_context.trace_id(),
        "the run is a trace of its own, linked, not a child of the request"
    );
    // The other job's run links to its own defer span, a root.
    let other = runs
        .iter()
        .find(|s| attribute(s, "job_id") == Some(untraced.to_string()))
        .expect("the other run's span");
    let other_defer = defers
        .iter()
        .find(|s| attribute(s, "job_id") == Some(untraced.to_string()))
        .expect("the other defer span");
    assert_eq!(
        other_defer.parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
    assert_eq!(other.links.len(), 1);
    assert_eq!(
        other.links[0].span_context.span_id(),
        other_defer.span_context.span_id()
    );

    // Claims and completions are there too, with what they carried.
    let claimed: i64 = named(&spans, "postpone.claim")
        .iter()
        .filter_map(|s| attribute(s, "jobs"))
        .filter_map(|v| v.parse::<i64>().ok())
        .sum();
    assert_eq!(claimed, 2);
    let completed: i64 = named(&spans, "postpone.complete")
        .iter()
        .filter_map(|s| attribute(s, "jobs"))
        .filter_map(|v| v.parse::<i64>().ok())
        .sum();
    assert_eq!(completed, 2);
}

async fn without_a_tracer_nothing_is_kept_and_a_malformed_context_is_ignored() {
    let db = schema_db().await;
    let app = App::builder()
        .database_url(&db.url)
        .expect("url")
        .task::<Record>()
        .build()
        .expect("app");
    // No OpenTelemetry layer: no trace context, no row.
    let id = app.defer(record("odd")).await.expect("defer");
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_traces").await,
        0
    );
    let (exporter, provider, _guard) = tracing_to_memory();
    db.client()
        .await
        .execute(
            "INSERT INTO postpone_job_traces (job_id, traceparent) VALUES ($1, 'not-a-traceparent')",
            &[&id],
        )
        .await
        .expect("a malformed trace context");
    work_until(&app, &[(id, JobStatus::Succeeded)]).await;
    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let run = named(&spans, "postpone.job")
        .into_iter()
        .find(|s| attribute(s, "job_id") == Some(id.to_string()))
        .expect("the run's span");
    assert!(run.links.is_empty());
    assert_eq!(attribute(run, "outcome").as_deref(), Some("succeeded"));
}
