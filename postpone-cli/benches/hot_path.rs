//! Client-side costs of the hot path, without a database (issue 5, item 4).
//!
//! - `defer/spec`: `app.configure(task)` and `into_spec()` for a batch of 1,000 jobs: the
//!   args are serialised, checked against the task type (decoded again) and resolved
//!   into [`postpone::JobSpec`] rows: everything `batch_defer` does before its round trip.
//! - `defer/columns`: those rows turned into the seven column arrays of `defer_jobs` and
//!   encoded in PostgreSQL's binary format, as the driver sends them. The library's own
//!   column builder is crate-private, so this mirrors it (same fields, same types).
//! - `decode`: job args as they come back from a fetch (jsonb bytes) into a typed task,
//!   the way the worker does it (`serde_path_to_error` over a `serde_json::Value`).
//! - `notification`: `Notification::parse` of the payloads the schema's triggers send.
//!
//! Run with `cargo bench -p postpone-cli --bench hot_path`; CI runs it once per bench in
//! quick mode (`cargo bench -p postpone-cli -- --test`): these are measurements, never
//! pass/fail timings.

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use postpone::protocol::Notification;
use postpone::task::{JobContext, TaskError};
use postpone::{App, JobSpec, Task};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{ToSql, Type};

const BATCH: usize = 1000;

/// The bench's no-op task (as `postpone bench` defers it).
#[derive(Debug, Serialize, Deserialize)]
struct Noop {
    i: u64,
}

impl Task for Noop {
    fn name() -> std::borrow::Cow<'static, str> {
        "postpone.bench.noop".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// A task with a few realistic fields.
#[derive(Debug, Serialize, Deserialize)]
struct SendEmail {
    to: String,
    subject: String,
    user_id: i64,
    tags: Vec<String>,
    urgent: bool,
}

impl Task for SendEmail {
    fn name() -> std::borrow::Cow<'static, str> {
        "emails.send_email".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fn email(i: usize) -> SendEmail {
    SendEmail {
        to: format!("user{i}@example.com"),
        subject: "Your weekly digest".to_owned(),
        user_id: i as i64,
        tags: vec!["digest".to_owned(), "weekly".to_owned()],
        urgent: i % 7 == 0,
    }
}

/// An app that never connects: building it opens no connection.
fn app() -> App {
    App::builder()
        .task::<Noop>()
        .task::<SendEmail>()
        .database_url("postgres://bench@localhost/bench")
        .expect("a URL")
        .build()
        .expect("an app")
}

fn specs(app: &App) -> Vec<JobSpec> {
    (0..BATCH)
        .map(|i| app.configure(email(i)).into_spec().expect("a spec"))
        .collect()
}

/// `defer_jobs`'s columns, as the store builds them.
struct Columns {
    queue_names: Vec<String>,
    task_names: Vec<String>,
    priorities: Vec<i32>,
    locks: Vec<Option<String>>,
    queueing_locks: Vec<Option<String>>,
    args: Vec<String>,
    scheduled_ats: Vec<Option<chrono::DateTime<chrono::Utc>>>,
}

impl Columns {
    fn new(jobs: &[JobSpec]) -> Self {
        Self {
            queue_names: jobs.iter().map(|j| j.queue_name.clone()).collect(),
            task_names: jobs.iter().map(|j| j.task_name.clone()).collect(),
            priorities: jobs.iter().map(|j| j.priority).collect(),
            locks: jobs.iter().map(|j| j.lock.clone()).collect(),
            queueing_locks: jobs.iter().map(|j| j.queueing_lock.clone()).collect(),
            args: jobs.iter().map(|j| j.args.to_string()).collect(),
            scheduled_ats: jobs.iter().map(|j| j.scheduled_at).collect(),
        }
    }

    /// Encodes every column as the driver binds it.
    fn encode(&self, out: &mut BytesMut) {
        let columns: [(&(dyn ToSql + Sync), Type); 7] = [
            (&self.queue_names, Type::VARCHAR_ARRAY),
            (&self.task_names, Type::VARCHAR_ARRAY),
            (&self.priorities, Type::INT4_ARRAY),
            (&self.locks, Type::TEXT_ARRAY),
            (&self.queueing_locks, Type::TEXT_ARRAY),
            (&self.args, Type::TEXT_ARRAY),
            (&self.scheduled_ats, Type::TIMESTAMPTZ_ARRAY),
        ];
        for (value, ty) in columns {
            value.to_sql_checked(&ty, out).expect("encodes");
        }
    }
}

fn defer(c: &mut Criterion) {
    let app = app();
    let mut group = c.benchmark_group("defer");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("spec_1000_email", |b| {
        b.iter(|| black_box(specs(&app)));
    });
    group.bench_function("spec_1000_noop", |b| {
        b.iter(|| {
            let specs: Vec<JobSpec> = (0..BATCH)
                .map(|i| {
                    app.configure(Noop { i: i as u64 })
                        .into_spec()
                        .expect("a spec")
                })
                .collect();
            black_box(specs)
        });
    });
    let rows = specs(&app);
    group.bench_function("columns_1000_email", |b| {
        b.iter_batched_ref(
            || BytesMut::with_capacity(256 * 1024),
            |out| {
                let columns = Columns::new(black_box(&rows));
                columns.encode(out);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let email_json = serde_json::to_vec(&email(42)).expect("json");
    let noop_json = serde_json::to_vec(&Noop { i: 42 }).expect("json");
    group.bench_function("email_from_jsonb", |b| {
        b.iter(|| {
            let value: serde_json::Value =
                serde_json::from_slice(black_box(&email_json)).expect("json");
            let task: SendEmail = serde_path_to_error::deserialize(value).expect("a task");
            black_box(task)
        });
    });
    group.bench_function("noop_from_jsonb", |b| {
        b.iter(|| {
            let value: serde_json::Value =
                serde_json::from_slice(black_box(&noop_json)).expect("json");
            let task: Noop = serde_path_to_error::deserialize(value).expect("a task");
            black_box(task)
        });
    });
    let email_value: serde_json::Value = serde_json::from_slice(&email_json).expect("json");
    group.bench_function("email_from_value", |b| {
        b.iter_batched(
            || email_value.clone(),
            |value| {
                let task: SendEmail = serde_path_to_error::deserialize(value).expect("a task");
                black_box(task)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn notification(c: &mut Criterion) {
    let mut group = c.benchmark_group("notification");
    // json_build_object(...)::text, as the schema's triggers send it.
    let inserted = r#"{"type" : "job_inserted", "job_id" : 123456789}"#;
    let abort = r#"{"type" : "abort_job_requested", "job_id" : 42}"#;
    let unknown = r#"{"type" : "something_new", "job_id" : 1}"#;
    group.bench_function("job_inserted", |b| {
        b.iter(|| black_box(Notification::parse(black_box(inserted))));
    });
    group.bench_function("abort_job_requested", |b| {
        b.iter(|| black_box(Notification::parse(black_box(abort))));
    });
    group.bench_function("unknown", |b| {
        b.iter(|| black_box(Notification::parse(black_box(unknown))));
    });
    group.finish();
}

criterion_group!(benches, defer, decode, notification);
criterion_main!(benches);
