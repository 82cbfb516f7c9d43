//! The bulk paths (schema migration 0002): events and NOTIFYs written set-wise by our
//! functions, exactly once per job, whoever installed the trigger functions last.

use std::time::Duration;

use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, Task};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::harness::{TestDb, schema_db};

#[derive(Serialize, Deserialize)]
struct Noop;

impl Task for Noop {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.noop".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fn app(db: &TestDb) -> App {
    App::builder()
        .database_url(&db.url)
        .expect("url")
        .task::<Noop>()
        .build()
        .expect("app")
}

async fn bulk_enabled(client: &Client) -> bool {
    client
        .query_one("SELECT postpone_bulk_events_v1()", &[])
        .await
        .expect("bulk check")
        .get(0)
}

/// Event types of each job, by job id.
async fn events(client: &Client) -> Vec<(i64, Vec<String>)> {
    let rows = client
        .query(
            "SELECT job_id, array_agg(type::text ORDER BY id) FROM procrastinate_events GROUP BY job_id ORDER BY job_id",
            &[],
        )
        .await
        .expect("events");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Defers a plain and a scheduled job, runs them, and checks each job's events.
async fn one_set_of_events_per_job(db: &TestDb) {
    let app = app(db);
    let plain = app.defer(Noop).await.expect("defer");
    let scheduled = app
        .configure(Noop)
        .schedule_at(chrono::Utc::now() - chrono::Duration::seconds(1))
        .defer()
        .await
        .expect("defer");
    app.run_worker(WorkerConfig {
        fetch_job_polling_interval: Duration::from_millis(100),
        ..WorkerConfig::default().one_shot()
    })
    .await
    .expect("worker");
    let client = db.client().await;
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        events(&client).await,
        [
            (plain, strings(&["deferred", "started", "succeeded"])),
            (
                scheduled,
                strings(&["scheduled", "deferred", "started", "succeeded"])
            ),
        ]
    );
}

#[tokio::test]
async fn bulk_paths_write_exactly_the_trigger_events() {
    let db = schema_db().await;
    assert!(bulk_enabled(&db.client().await).await);
    one_set_of_events_per_job(&db).await;
}

#[tokio::test]
async fn trigger_functions_replaced_by_python_turn_the_bulk_paths_off() {
    let db = schema_db().await;
    let client = db.client().await;
    // What re-applying Procrastinate's own schema file does: its body has no marker.
    client
        .batch_execute(
            "CREATE OR REPLACE FUNCTION procrastinate_trigger_function_status_events_insert_v1()
             RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO procrastinate_events(job_id, type) VALUES (NEW.id, 'deferred');
                 RETURN NEW;
             END;
             $$",
        )
        .await
        .expect("replace the trigger function");
    assert!(!bulk_enabled(&client).await);
    one_set_of_events_per_job(&db).await;
}

#[tokio::test]
async fn the_bulk_setting_never_outlives_our_statement() {
    let db = schema_db().await;
    let app = app(&db);
    let mut client = db.client().await;
    let mut tx = client.transaction().await.expect("begin");
    let ours = app.configure(Noop).defer_in(&mut tx).await.expect("defer");
    // A row inserted by the caller's own SQL later in the same transaction still gets its
    // event from the trigger.
    let theirs: i64 = tx
        .query_one(
            "INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('default', 'sql') RETURNING id",
            &[],
        )
        .await
        .expect("insert")
        .get(0);
    let setting: Option<String> = tx
        .query_one("SELECT current_setting('postpone.bulk_events', true)", &[])
        .await
        .expect("setting")
        .get(0);
    assert_ne!(setting.as_deref(), Some("on"));
    tx.commit().await.expect("commit");
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        events(&client).await,
        [
            (ours, strings(&["deferred"])),
            (theirs, strings(&["deferred"]))
        ]
    );
}
