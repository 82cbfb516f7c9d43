//! Set-wise events (schema migration 0003): the batch defer, claim and finish write the
//! contract's event rows and job_inserted notifications themselves, exactly once per job,
//! whoever installed the trigger functions: ours, Procrastinate's (an adopted database),
//! or a mix (one function replaced by a later Procrastinate migration).

use chrono::{DateTime, Utc};
use postpone::store::FetchJobsParams;
use postpone::store::postgres::queries::SET_WISE_DEFER_MIN;
use postpone::store::{DeferJobParams, FinishJobParams};
use postpone::{App, JobStatus};
use serde_json::json;
use tokio_postgres::Client;

use crate::harness::{Listener, TestDb, counts, python_db, schema_db};

fn app(db: &TestDb) -> App {
    App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .build()
        .expect("test app builds")
}

fn job(queue: &str, scheduled_at: Option<DateTime<Utc>>) -> DeferJobParams {
    DeferJobParams {
        queue_name: queue.to_owned(),
        task_name: "tests.events".to_owned(),
        priority: 0,
        lock: None,
        queueing_lock: None,
        args: json!({}),
        scheduled_at,
        timeout: None,
        trace_context: None,
        flow: Vec::new(),
    }
}

/// The status-update trigger function as migration 0001 creates it, as Procrastinate's
/// behaves: it knows nothing of the set-wise paths. Taken from 0001's own SQL.
fn plain_status_update() -> String {
    let contract = postpone::schema::migrations()
        .iter()
        .find(|migration| migration.version == "0001")
        .expect("migration 0001")
        .sql;
    let head = "CREATE FUNCTION procrastinate_trigger_function_status_events_update_v1()";
    let start = contract.find(head).expect("0001 creates the function");
    let body_end = "\n$body$;";
    let length = contract[start..].find(body_end).expect("its body ends") + body_end.len();
    contract[start..start + length].replacen("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
}

/// What one run of [`scenario`] left behind.
#[derive(Debug, PartialEq)]
struct Seen {
    /// Per job: its event types in id order, with `at` for scheduled events.
    events: Vec<String>,
    /// Notifications, in the order they arrived.
    notifications: Vec<String>,
    /// Whether the defer's and the claim's triggers skipped their work (set-wise path).
    set_wise: (bool, bool),
}

/// Defers a batch (two queues, a job scheduled in the past and one in the future),
/// claims, and finishes every kind of outcome, including a job finished while still todo.
async fn scenario(db: &TestDb) -> Seen {
    let app = app(db);
    let store = app.store();
    let client = db.client().await;
    let mut listener = Listener::new(
        db,
        &["procrastinate_any_queue_v1", "procrastinate_queue_v1#a"],
    )
    .await;
    let at = |rfc3339| {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("test time parses")
            .with_timezone(&Utc)
    };
    let (past, future) = (at("2020-01-01T00:00:00Z"), at("2100-01-01T00:00:00Z"));
    let mut batch = vec![
        job("a", None),
        job("b", Some(past)),
        job("a", None),
        job("a", None),
        job("b", Some(future)),
        job("a", None),
    ];
    // Enough jobs for the set-wise defer (ids 7 and up: left out of what is compared).
    batch.resize_with(SET_WISE_DEFER_MIN, || job("z", Some(future)));
    let ids = store.defer_jobs(&batch).await.expect("defer");
    let expected: Vec<i64> = (1..).take(SET_WISE_DEFER_MIN).collect();
    assert_eq!(ids, expected, "ids in input order");
    let defer_skipped = skipped(&client, "status_insert").await;

    let worker = store.register_worker().await.expect("register");
    let claimed = store
        .fetch_jobs(&FetchJobsParams::new(None, worker, 4))
        .await
        .expect("claim");
    let claimed: Vec<i64> = claimed.iter().map(|job| job.id).collect();
    assert_eq!(claimed, [1, 2, 3, 4], "the future job waits");
    let claim_skipped = skipped(&client, "status_update").await;

    let finish = |id, status| FinishJobParams {
        error: None,
        result: None,
        id,
        status,
        delete_job: false,
    };
    let mut written = store
        .finish_jobs(&[
            finish(4, JobStatus::Aborted),
            finish(1, JobStatus::Succeeded),
            finish(6, JobStatus::Succeeded),
            finish(2, JobStatus::Failed),
        ])
        .await
        .expect("finish");
    written.sort_unstable();
    assert_eq!(
        written,
        [1, 2, 4, 6],
        "job 6 was todo: finished all the same"
    );

    let rows = client
        .query(
            "SELECT job_id, type::text, CASE WHEN type = 'scheduled' THEN at::text ELSE '' END
               FROM procrastinate_events ORDER BY job_id, id",
            &[],
        )
        .await
        .expect("events");
    let mut events: Vec<String> = rows
        .iter()
        .map(|row| {
            let (job, kind, at): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
            format!("{job} {kind} {at}").trim_end().to_owned()
        })
        .collect();
    let filler =
        |line: &String| line.split(' ').next().and_then(|id| id.parse::<i64>().ok()) > Some(6);
    let fillers: Vec<String> = events.iter().filter(|line| filler(line)).cloned().collect();
    assert_eq!(fillers.len(), 2 * (SET_WISE_DEFER_MIN - 6), "{fillers:?}");
    events.retain(|line| !filler(line));
    let mut notifications: Vec<String> = listener
        .drain_until_marker(&client)
        .await
        .into_iter()
        .map(|(channel, payload)| format!("{channel} {payload}"))
        .collect();
    let filler_notification = |line: &String| {
        line.rsplit(' ')
            .next()
            .and_then(|id| id.trim_end_matches('}').parse::<i64>().ok())
            > Some(6)
    };
    assert_eq!(
        notifications
            .iter()
            .filter(|line| filler_notification(line))
            .count(),
        SET_WISE_DEFER_MIN - 6
    );
    notifications.retain(|line| !filler_notification(line));
    Seen {
        events,
        notifications,
        set_wise: (defer_skipped, claim_skipped),
    }
}

/// Whether this database's trigger of this kind leaves its work to our set-wise function:
/// runs the path once more in a transaction that is rolled back, and reads the trigger's
/// record of a skip, which our function clears (`off`) after writing the events itself
/// and which is never set when the trigger does the work. The settings are
/// transaction-local, hence the transaction.
async fn skipped(client: &Client, kind: &str) -> bool {
    let setting = format!("postpone.skipped_{kind}");
    client.batch_execute("BEGIN").await.expect("begin");
    let probe = match kind {
        "status_insert" => {
            "SELECT postpone_defer_jobs_v1('{probe}', '{t}', '{0}', '{NULL}', '{NULL}', '{\"{}\"}', '{NULL}')"
        }
        _ => {
            "SELECT postpone_finish_jobs_v1('{1,2,3,4,5,6}', '{succeeded,succeeded,succeeded,succeeded,succeeded,succeeded}', '{f,f,f,f,f,f}')"
        }
    };
    client.batch_execute(probe).await.expect("probe");
    let value: Option<String> = client
        .query_one("SELECT current_setting($1, true)", &[&setting])
        .await
        .expect("setting")
        .get(0);
    client.batch_execute("ROLLBACK").await.expect("rollback");
    value.as_deref() == Some("off")
}

/// Every job's events, in order.
const EXPECTED_EVENTS: [&str; 16] = [
    "1 deferred",
    "1 started",
    "1 succeeded",
    "2 scheduled 2020-01-01 00:00:00+00",
    "2 deferred",
    "2 started",
    "2 failed",
    "3 deferred",
    "3 started",
    "4 deferred",
    "4 started",
    "4 aborted",
    "5 scheduled 2100-01-01 00:00:00+00",
    "5 deferred",
    // A todo job finished records 'cancelled', whatever the end status.
    "6 deferred",
    "6 cancelled",
];

fn check(seen: &Seen) {
    assert_eq!(seen.events, EXPECTED_EVENTS, "{seen:#?}");
    // Per job, the queue's channel then the any-queue channel (only queue a's channel is
    // listened to here).
    let mut expected = Vec::new();
    for (id, queue) in [(1, "a"), (2, "b"), (3, "a"), (4, "a"), (5, "b"), (6, "a")] {
        let payload = format!(r#"{{"type" : "job_inserted", "job_id" : {id}}}"#);
        if queue == "a" {
            expected.push(format!("procrastinate_queue_v1#a {payload}"));
        }
        expected.push(format!("procrastinate_any_queue_v1 {payload}"));
    }
    assert_eq!(seen.notifications, expected, "{seen:#?}");
}

#[tokio::test]
async fn our_database_takes_the_set_wise_path_and_writes_what_the_triggers_would() {
    let ours = schema_db().await;
    let seen = scenario(&ours).await;
    check(&seen);
    assert_eq!(
        seen.set_wise,
        (true, true),
        "the triggers skipped: {seen:#?}"
    );

    // The same scenario with the status trigger doing its own work gives the same events.
    let plain = schema_db().await;
    plain
        .client()
        .await
        .batch_execute(&plain_status_update())
        .await
        .expect("replace the trigger function");
    let plain_seen = scenario(&plain).await;
    assert_eq!(plain_seen.set_wise, (true, false));
    assert_eq!(plain_seen.events, seen.events);
    assert_eq!(plain_seen.notifications, seen.notifications);
}

#[tokio::test]
async fn an_adopted_python_database_gets_one_set_of_events_from_its_own_triggers() {
    let db = python_db().await;
    let mut client = db.client().await;
    postpone::schema::apply(&mut client, postpone::schema::ApplyScope::All)
        .await
        .expect("adopt and migrate");
    let seen = scenario(&db).await;
    check(&seen);
    assert_eq!(
        seen.set_wise,
        (false, false),
        "Procrastinate's triggers did the work"
    );
}

#[tokio::test]
async fn the_set_wise_settings_never_reach_the_callers_own_statements() {
    let db = schema_db().await;
    let mut client = db.client().await;
    let tx = client.transaction().await.expect("begin");
    let ours: i64 = tx
        .query_one(
            "SELECT id FROM postpone_defer_jobs_v1('{q}', '{t}', '{0}', '{NULL}', '{NULL}', '{\"{}\"}', '{NULL}') AS id",
            &[],
        )
        .await
        .expect("defer")
        .get(0);
    // A row inserted and updated by the caller's own SQL later in the same transaction
    // still gets its events from the triggers.
    let theirs: i64 = tx
        .query_one(
            "INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('q', 'sql') RETURNING id",
            &[],
        )
        .await
        .expect("insert")
        .get(0);
    tx.execute(
        "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = $1",
        &[&theirs],
    )
    .await
    .expect("update");
    let bulk: Option<String> = tx
        .query_one("SELECT current_setting('postpone.bulk_events', true)", &[])
        .await
        .expect("setting")
        .get(0);
    assert_ne!(bulk.as_deref(), Some("on"));
    tx.commit().await.expect("commit");
    let events: Vec<String> = client
        .query(
            "SELECT job_id || ' ' || type FROM procrastinate_events ORDER BY job_id, id",
            &[],
        )
        .await
        .expect("events")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        events,
        [
            format!("{ours} deferred"),
            format!("{theirs} deferred"),
            format!("{theirs} started")
        ]
    );
}

#[tokio::test]
async fn a_set_wise_batch_is_all_or_nothing_and_names_a_taken_queueing_lock() {
    let db = schema_db().await;
    let store = app(&db).store().clone();
    let taken = DeferJobParams {
        queueing_lock: Some("dup".to_owned()),
        ..job("a", None)
    };
    store
        .defer_jobs(std::slice::from_ref(&taken))
        .await
        .expect("first");
    let mut batch: Vec<DeferJobParams> = (0..SET_WISE_DEFER_MIN).map(|_| job("a", None)).collect();
    batch[10] = taken;
    let error = store.defer_jobs(&batch).await.expect_err("lock taken");
    assert!(
        matches!(error, postpone::Error::AlreadyEnqueued { ref queueing_lock } if queueing_lock == "dup"),
        "{error:?}"
    );
    let client = db.client().await;
    assert_eq!(
        counts(&client).await,
        (1, 1),
        "nothing of the batch is left"
    );
}

/// The claim (`postpone_fetch_jobs_v2`, through the store's `fetch_jobs`) writes its
/// `started` events set-wise: the status trigger skips them and our function clears the
/// record of the skip. A claim whose trigger wrote one event per job costs about a sixth
/// more server work per job (ADR 4), which W3 shows and no other test would.
#[tokio::test]
async fn the_claim_writes_its_started_events_set_wise() {
    let db = schema_db().await;
    let app = app(&db);
    let store = app.store();
    store
        .defer_jobs(&[job("a", None), job("a", None)])
        .await
        .expect("defer");
    let worker = store.register_worker().await.expect("register");
    let client = db.client().await;
    client.batch_execute("BEGIN").await.expect("begin");
    let claimed: i64 = client
        .query_one(
            "SELECT count(*) FROM postpone_fetch_jobs_v2(NULL, $1, 2, 2, NULL, NULL)",
            &[&worker],
        )
        .await
        .expect("claim")
        .get(0);
    let skip: Option<String> = client
        .query_one(
            "SELECT current_setting('postpone.skipped_status_update', true)",
            &[],
        )
        .await
        .expect("setting")
        .get(0);
    let started: i64 = client
        .query_one(
            "SELECT count(*) FROM procrastinate_events WHERE type = 'started'",
            &[],
        )
        .await
        .expect("events")
        .get(0);
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(claimed, 2);
    assert_eq!(skip.as_deref(), Some("off"), "the trigger wrote the events");
    assert_eq!(started, 2, "one started event per claimed job");
}
