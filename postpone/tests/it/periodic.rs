//! Periodic tasks and blueprints: what the registry refuses at build time (each with a
//! message that says what to fix), how blueprints name their tasks, and a real worker
//! deferring ticks on PostgreSQL. Tick deduplication on both stores is a scenario of
//! `memory.rs`; Rust and Python workers sharing a schedule is in `interop_worker.rs`.

use std::sync::Arc;
use std::time::Duration;

use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, AppBuilder, Blueprint, MemoryStore, Periodic, Task, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::harness::{schema_db, wait_for};

#[derive(Serialize, Deserialize)]
struct Tick {
    timestamp: i64,
}

impl Task for Tick {
    fn name() -> std::borrow::Cow<'static, str> {
        "tick".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_alias("tick-alias")
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Report {
    timestamp: i64,
    kind: String,
}

impl Task for Report {
    fn name() -> std::borrow::Cow<'static, str> {
        "report".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fn builder() -> AppBuilder {
    App::builder().store(Arc::new(MemoryStore::new()))
}

fn build_error(builder: AppBuilder) -> String {
    builder
        .build()
        .map(|_| ())
        .expect_err("the registry is refused")
        .to_string()
}

#[test]
fn invalid_cron_names_the_field() {
    let e = build_error(
        builder()
            .task::<Tick>()
            .periodic(Periodic::new::<Tick>("0 25 * * *")),
    );
    assert!(e.contains("periodic task \"tick\""), "{e}");
    assert!(e.contains("field 2 (hour) \"25\""), "{e}");
    let e = build_error(
        builder()
            .task::<Tick>()
            .periodic(Periodic::new::<Tick>("* * * * * * *")),
    );
    assert!(e.contains("7 fields"), "{e}");
    let e = build_error(
        builder()
            .task::<Tick>()
            .periodic(Periodic::new::<Tick>("*/0 * * * *")),
    );
    assert!(e.contains("field 1 (minute)"), "{e}");
}

#[test]
fn unknown_time_zone_is_refused() {
    let e = build_error(
        builder()
            .task::<Tick>()
            .periodic(Periodic::new::<Tick>("* * * * *").with_timezone("Mars/Olympus")),
    );
    assert!(e.contains("unknown time zone \"Mars/Olympus\""), "{e}");
    assert!(e.contains("IANA"), "{e}");
}

#[test]
fn a_periodic_id_used_twice_for_one_task_is_refused() {
    let e = build_error(
        builder()
            .task::<Tick>()
            .periodic(Periodic::new::<Tick>("* * * * *").with_periodic_id("x"))
            .periodic(Periodic::new::<Tick>("*/5 * * * *").with_periodic_id("x")),
    );
    assert!(e.contains("registered twice"), "{e}");
    assert!(e.contains("periodic_id"), "{e}");
    // Through an alias it is the same task.
    let e = build_error(
        builder()
            .task::<Tick>()
            .periodic(Periodic::new::<Tick>("* * * * *"))
            .periodic(Periodic::by_name("tick-alias", "*/5 * * * *")),
    );
    assert!(e.contains("registered twice"), "{e}");
    // Two ids are fine.
    let app = builder()
        .task::<Tick>()
        .periodic(Periodic::new::<Tick>("* * * * *").with_periodic_id("x"))
        .periodic(Periodic::by_name("tick-alias", "*/5 * * * *").with_periodic_id("y"))
        .build()
        .expect("two schedules with their own ids");
    let names: Vec<_> = app
        .periodic_tasks()
        .iter()
        .map(Periodic::task_name)
        .collect();
    assert_eq!(
        names,
        ["tick", "tick"],
        "aliases resolve to the task's name"
    );
}

#[test]
fn periodic_registrations_must_make_valid_jobs() {
    let e = build_error(builder().periodic(Periodic::new::<Tick>("* * * * *")));
    assert!(e.contains("no task is registered under that name"), "{e}");
    // Report needs `kind`.
    let e = build_error(
        builder()
            .task::<Report>()
            .periodic(Periodic::new::<Report>("* * * * *")),
    );
    assert!(e.contains("missing field `kind`"), "{e}");
    let e = build_error(
        builder()
            .task::<Report>()
            .periodic(Periodic::new::<Report>("* * * * *").with_kwargs(vec![1, 2])),
    );
    assert!(e.contains("not a JSON object"), "{e}");
    let e = build_error(
        builder().task::<Report>().periodic(
            Periodic::new::<Report>("* * * * *")
                .with_kwargs(serde_json::json!({"kind": "x", "timestamp": 3})),
        ),
    );
    assert!(e.contains("`timestamp`"), "{e}");
    let e = build_error(
        builder()
            .task::<Tick>()
            .periodic(Periodic::new::<Tick>("* * * * *").with_queue("q".repeat(60))),
    );
    assert!(e.contains("queue"), "{e}");
}

#[test]
fn duplicate_task_names_are_refused() {
    let e = build_error(builder().task::<Tick>().task::<Tick>());
    assert!(e.contains("\"tick\" is registered twice"), "{e}");
}

fn library() -> Blueprint {
    Blueprint::new().task::<Tick>().task::<Report>().periodic(
        Periodic::new::<Report>("0 8 * * *").with_kwargs(serde_json::json!({"kind": "daily"})),
    )
}

#[test]
fn blueprints_namespace_their_tasks_aliases_and_schedules() {
    let app = builder()
        .task::<Tick>()
        .blueprint("lib", library())
        .blueprint("outer", Blueprint::new().blueprint("inner", library()))
        .build()
        .expect("namespaced tasks do not collide");
    let names = app.task_names();
    for name in [
        "tick",
        "lib:tick",
        "lib:report",
        "outer:inner:tick",
        "outer:inner:report",
        "builtin:procrastinate.builtin_tasks.remove_old_jobs",
    ] {
        assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
    }
    let periodic: Vec<_> = app
        .periodic_tasks()
        .iter()
        .map(Periodic::task_name)
        .collect();
    assert_eq!(periodic, ["lib:report", "outer:inner:report"]);
    // Aliases are namespaced too: a job deferred by `lib:tick-alias` runs `lib:tick`.
    let spec = app
        .configure_by_name("lib:tick-alias", serde_json::json!({"timestamp": 1}))
        .into_spec();
    assert!(spec.is_ok(), "{spec:?}");
    let unknown = app
        .configure_by_name("tick-alias2", serde_json::json!({"timestamp": 1}))
        .into_spec();
    assert!(unknown.is_err());
}

#[test]
fn blueprint_namespace_collisions_are_refused() {
    let e = build_error(
        builder()
            .blueprint("lib", library())
            .blueprint("lib", Blueprint::new()),
    );
    assert!(e.contains("namespace \"lib\" is added twice"), "{e}");
    let e = build_error(builder().blueprint("builtin", library()));
    assert!(e.contains("taken by the builtin tasks"), "{e}");
    let e = build_error(builder().blueprint("", library()));
    assert!(e.contains("namespace is empty"), "{e}");
    // A task whose own name looks namespaced still collides.
    #[derive(Serialize, Deserialize)]
    struct Clash;
    impl Task for Clash {
        fn name() -> std::borrow::Cow<'static, str> {
            "lib:tick".into()
        }
        async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
            Ok(())
        }
    }
    let e = build_error(builder().task::<Clash>().blueprint("lib", library()));
    assert!(e.contains("\"lib:tick\" is registered twice"), "{e}");
}

/// A worker on PostgreSQL defers a per-second schedule's ticks, each once, and runs them
/// with their timestamp.
#[tokio::test]
async fn a_worker_defers_each_tick_once() {
    let db = schema_db().await;
    let app = App::builder()
        .task::<Tick>()
        .periodic(Periodic::new::<Tick>("* * * * * *"))
        .database_url(&db.url)
        .expect("url")
        .build()
        .expect("app");
    let config = WorkerConfig {
        fetch_job_polling_interval: Duration::from_millis(50),
        ..WorkerConfig::default().with_concurrency(2)
    };
    let worker = app.start_worker(config.clone()).await.expect("worker");
    let second = app.start_worker(config).await.expect("second worker");
    let client = db.client().await;
    wait_for("three ticks run", Duration::from_secs(20), || async {
        let row = client
            .query_one(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
                &[],
            )
            .await
            .expect("count");
        row.get::<_, i64>(0) >= 3
    })
    .await;
    worker.stop();
    second.stop();
    worker.join().await.expect("stops");
    second.join().await.expect("stops");
    let rows = client
        .query(
            "SELECT (args->>'timestamp')::bigint, count(*) FROM procrastinate_jobs GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .expect("ticks");
    let ticks: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        ticks.iter().all(|&(_, n)| n == 1),
        "one job per tick: {ticks:?}"
    );
    let seconds: Vec<i64> = ticks.iter().map(|&(t, _)| t).collect();
    let first = seconds[0];
    assert_eq!(
        seconds,
        (first..first + seconds.len() as i64).collect::<Vec<_>>(),
        "no tick missed"
    );
    let defers: i64 = client
        .query_one("SELECT count(*) FROM procrastinate_periodic_defers WHERE task_name = 'tick' AND periodic_id = ''", &[])
        .await
        .expect("defers")
        .get(0);
    assert!(defers >= 1, "ticks are recorded for deduplication");
}
