//! Deferring jobs against a real PostgreSQL: defaults, per-call options, the exact row and
//! events written, queueing locks, batches, the caller's transactions (with their NOTIFY),
//! and bad input refused before anything is written.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use postpone::task::{JobContext, TaskError};
use postpone::{App, Error, Task, TaskConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::Client;

use crate::harness::{Listener, TestDb, counts, empty_db, schema_db};

/// How long any single wait on the database may take.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    n: i64,
    label: String,
}

impl Task for Record {
    fn name() -> Cow<'static, str> {
        "tests.record".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// A task with every default set.
#[derive(Debug, Serialize, Deserialize)]
struct Mail {
    to: String,
}

impl Task for Mail {
    fn name() -> Cow<'static, str> {
        "tests.mail".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default()
            .with_queue("emails")
            .with_priority(5)
            .with_lock("mailer")
            .with_queueing_lock("mail-waiting")
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fn app(db: &TestDb) -> App {
    App::builder()
        .database_url(&db.url)
        .expect("database url")
        .task::<Record>()
        .task::<Mail>()
        .build()
        .expect("build app")
}

fn record(n: i64) -> Record {
    Record {
        n,
        label: format!("job {n}"),
    }
}

/// The job's whole row as JSON (every column of procrastinate_jobs, no more, no less).
async fn row(client: &Client, id: i64) -> serde_json::Value {
    client
        .query_one(
            "SELECT to_jsonb(j) - 'scheduled_at' FROM procrastinate_jobs j WHERE id = $1",
            &[&id],
        )
        .await
        .expect("select job row")
        .get(0)
}

async fn scheduled_at(client: &Client, id: i64) -> Option<DateTime<Utc>> {
    client
        .query_one(
            "SELECT scheduled_at FROM procrastinate_jobs WHERE id = $1",
            &[&id],
        )
        .await
        .expect("select scheduled_at")
        .get(0)
}

/// The job's events, `(type, at)`, in insertion order.
async fn events(client: &Client, id: i64) -> Vec<(String, DateTime<Utc>)> {
    client
        .query(
            "SELECT type::text, at FROM procrastinate_events WHERE job_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("select events")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn types(events: &[(String, DateTime<Utc>)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

/// The timeout a defer call stored for a job, in milliseconds.
async fn stored_timeout(client: &Client, id: i64) -> Option<i64> {
    client
        .query_opt(
            "SELECT timeout_ms FROM postpone_job_timeouts WHERE job_id = $1",
            &[&id],
        )
        .await
        .expect("timeout row")
        .map(|row| row.get(0))
}

async fn db_now(client: &Client) -> DateTime<Utc> {
    client
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .expect("now")
        .get(0)
}

/// The full expected row of a fresh job.
fn todo_row(
    id: i64,
    queue: &str,
    task: &str,
    priority: i32,
    lock: Option<&str>,
    queueing_lock: Option<&str>,
    args: serde_json::Value,
) -> serde_json::Value {
    json!({
        "id": id, "queue_name": queue, "task_name": task, "priority": priority,
        "lock": lock, "queueing_lock": queueing_lock, "args": args, "status": "todo",
        "attempts": 0, "abort_requested": false, "worker_id": null,
    })
}

#[tokio::test]
async fn defer_uses_the_task_defaults() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);

    let plain = app.defer(record(1)).await.expect("defer record");
    let mail = app
        .defer(Mail {
            to: "a@example.com".into(),
        })
        .await
        .expect("defer mail");

    let args = json!({"n": 1, "label": "job 1"});
    let expected = todo_row(plain, "default", "tests.record", 0, None, None, args);
    assert_eq!(row(&client, plain).await, expected);
    assert_eq!(scheduled_at(&client, plain).await, None);
    let args = json!({"to": "a@example.com"});
    let expected = todo_row(
        mail,
        "emails",
        "tests.mail",
        5,
        Some("mailer"),
        Some("mail-waiting"),
        args,
    );
    assert_eq!(row(&client, mail).await, expected);
    assert_eq!(types(&events(&client, plain).await), ["deferred"]);
    assert_eq!(types(&events(&client, mail).await), ["deferred"]);
    assert_eq!(counts(&client).await, (2, 2));
}

/// A typed job of a task this app does not register (`allow_unknown`, say a task another
/// service runs) still gets its type's own defaults.
#[tokio::test]
async fn an_unregistered_typed_task_keeps_its_own_defaults() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .build()
        .expect("app without tasks");
    let mail = Mail {
        to: "b@example.com".into(),
    };
    let refused = app.configure(mail).defer().await;
    assert!(
        matches!(refused, Err(Error::UnknownTask { ref name }) if name == "tests.mail"),
        "{refused:?}"
    );
    let id = app
        .configure(Mail {
            to: "b@example.com".into(),
        })
        .allow_unknown()
        .defer()
        .await
        .expect("unknown allowed");
    let args = json!({"to": "b@example.com"});
    let expected = todo_row(
        id,
        "emails",
        "tests.mail",
        5,
        Some("mailer"),
        Some("mail-waiting"),
        args,
    );
    assert_eq!(row(&client, id).await, expected);
}

#[tokio::test]
async fn configure_overrides_every_default() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    // Microsecond precision, as PostgreSQL stores it.
    let at = (Utc::now() + chrono::Duration::days(2))
        .with_nanosecond(123_456_000)
        .expect("valid nanos");

    let before = db_now(&client).await;
    let id = app
        .configure(Mail {
            to: "b@example.com".into(),
        })
        .with_queue("other")
        .with_priority(-3)
        .with_lock("lock-2")
        .with_queueing_lock("qlock-2")
        .schedule_at(at)
        .defer()
        .await
        .expect("defer configured");
    let after = db_now(&client).await;

    let args = json!({"to": "b@example.com"});
    let expected = todo_row(
        id,
        "other",
        "tests.mail",
        -3,
        Some("lock-2"),
        Some("qlock-2"),
        args,
    );
    assert_eq!(row(&client, id).await, expected);
    assert_eq!(scheduled_at(&client, id).await, Some(at));
    let mut evs = events(&client, id).await;
    evs.sort();
    assert_eq!(types(&evs), ["deferred", "scheduled"]);
    assert!(
        before <= evs[0].1 && evs[0].1 <= after,
        "deferred at {:?}",
        evs[0].1
    );
    assert_eq!(evs[1].1, at, "the scheduled event is at scheduled_at");

    // schedule_in counts from now.
    let before = Utc::now();
    let id = app
        .configure(record(2))
        .schedule_in(Duration::from_secs(90 * 60))
        .defer()
        .await
        .expect("defer in 90 minutes");
    let after = Utc::now();
    let at = scheduled_at(&client, id).await.expect("scheduled_at set");
    let delay = chrono::Duration::minutes(90);
    assert!(
        before + delay - chrono::Duration::milliseconds(1) <= at
            && at <= after + delay + chrono::Duration::milliseconds(1),
        "scheduled_at {at} not 90 minutes after {before}..{after}"
    );
    let evs = events(&client, id).await;
    assert!(
        evs.iter().any(|(t, a)| t == "scheduled" && *a == at),
        "{evs:?}"
    );

    // Task kwargs override some arguments, and are checked against the type.
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("label".into(), json!("overridden"));
    let id = app
        .configure(record(3))
        .with_task_kwargs(kwargs)
        .defer()
        .await
        .expect("defer with kwargs");
    let args = json!({"n": 3, "label": "overridden"});
    let expected = todo_row(id, "default", "tests.record", 0, None, None, args);
    assert_eq!(row(&client, id).await, expected);

    let before = counts(&client).await;
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("n".into(), json!("three"));
    let err = app
        .configure(record(3))
        .with_task_kwargs(kwargs)
        .defer()
        .await
        .expect_err("a string for an integer field");
    assert!(
        matches!(err, Error::InvalidArgs { ref task, .. } if task == "tests.record"),
        "{err:?}"
    );
    assert_eq!(counts(&client).await, before);
}

#[tokio::test]
async fn a_waiting_queueing_lock_refuses_the_next_job_and_writes_nothing() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let first = app
        .configure(record(1))
        .with_queueing_lock("only-one")
        .defer()
        .await
        .expect("first job");
    let before = counts(&client).await;

    let err = app
        .configure(record(2))
        .with_queueing_lock("only-one")
        .defer()
        .await
        .expect_err("second job with the same queueing lock");
    assert!(
        matches!(err, Error::AlreadyEnqueued { ref queueing_lock } if queueing_lock == "only-one"),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"only-one\""), "{err}");
    assert_eq!(counts(&client).await, before, "nothing written");

    // The task default is a queueing lock too.
    app.defer(Mail { to: "x".into() })
        .await
        .expect("first mail");
    let err = app
        .defer(Mail { to: "y".into() })
        .await
        .expect_err("second mail");
    assert!(
        matches!(err, Error::AlreadyEnqueued { ref queueing_lock } if queueing_lock == "mail-waiting"),
        "{err:?}"
    );

    // Only waiting (todo) jobs hold the queueing lock: once the first starts, a new one is accepted.
    let worker: i64 = client
        .query_one("SELECT procrastinate_register_worker_v1()", &[])
        .await
        .expect("register worker")
        .get(0);
    let fetched: Option<i64> = client
        .query_one(
            "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['default']::varchar[], $1)",
            &[&worker],
        )
        .await
        .expect("fetch")
        .get(0);
    assert_eq!(fetched, Some(first));
    app.configure(record(3))
        .with_queueing_lock("only-one")
        .defer()
        .await
        .expect("the lock is free once the first job runs");
}

#[tokio::test]
async fn batch_defer_is_one_statement_in_input_order() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    // Count INSERT statements on procrastinate_jobs with a statement-level trigger.
    client
        .batch_execute(
            "CREATE TABLE insert_statements (n int);
             CREATE FUNCTION count_insert_statements() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO insert_statements VALUES (1); RETURN NULL; END $$;
             CREATE TRIGGER count_insert_statements AFTER INSERT ON procrastinate_jobs
               FOR EACH STATEMENT EXECUTE FUNCTION count_insert_statements();",
        )
        .await
        .expect("create counting trigger");

    let jobs = (0..6).map(|n| {
        app.configure(record(n))
            .with_priority(i32::try_from(10 - n).expect("small"))
            .with_queue(format!("q{}", n % 2))
    });
    let ids = app.batch_defer(jobs).await.expect("batch");
    assert_eq!(ids.len(), 6);
    let statements: i64 = client
        .query_one("SELECT count(*) FROM insert_statements", &[])
        .await
        .expect("count statements")
        .get(0);
    assert_eq!(statements, 1, "one INSERT for the whole batch");
    for (n, id) in (0_i64..).zip(&ids) {
        let args = json!({"n": n, "label": format!("job {n}")});
        let queue = format!("q{}", n % 2);
        let priority = i32::try_from(10 - n).expect("small");
        let expected = todo_row(*id, &queue, "tests.record", priority, None, None, args);
        assert_eq!(row(&client, *id).await, expected, "job {n} of the batch");
        assert_eq!(types(&events(&client, *id).await), ["deferred"]);
    }
    assert!(app.batch_defer(Vec::new()).await.expect("empty").is_empty());
}

#[tokio::test]
async fn batch_defer_is_all_or_nothing() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    app.configure(record(0))
        .with_queueing_lock("taken")
        .defer()
        .await
        .expect("holder");
    let before = counts(&client).await;
    assert_eq!(before, (1, 1));

    // A collision with a waiting job, in the middle of the batch.
    let batch = vec![
        app.configure(record(1)),
        app.configure(record(2)).with_queueing_lock("taken"),
        app.configure(record(3)),
    ];
    let err = app.batch_defer(batch).await.expect_err("collision");
    assert!(
        matches!(err, Error::AlreadyEnqueued { ref queueing_lock } if queueing_lock == "taken"),
        "{err:?}"
    );
    assert_eq!(
        counts(&client).await,
        before,
        "no job of the batch inserted"
    );

    // A collision inside the batch itself.
    let batch = vec![
        app.configure(record(1)).with_queueing_lock("twice"),
        app.configure(record(2)),
        app.configure(record(3)).with_queueing_lock("twice"),
    ];
    let err = app.batch_defer(batch).await.expect_err("collision");
    assert!(
        matches!(err, Error::AlreadyEnqueued { ref queueing_lock } if queueing_lock == "twice"),
        "{err:?}"
    );
    assert_eq!(counts(&client).await, before);

    // One invalid job refuses the batch before anything is sent.
    let batch = vec![
        app.configure(record(1)),
        app.configure(record(2)).with_queue("q".repeat(129)),
        app.configure(record(3)),
    ];
    let err = app.batch_defer(batch).await.expect_err("bad queue");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(counts(&client).await, before);
}

fn inserted(channel: &str, id: i64) -> (String, serde_json::Value) {
    (
        channel.to_owned(),
        json!({"type": "job_inserted", "job_id": id}),
    )
}

fn parsed(messages: Vec<(String, String)>) -> Vec<(String, serde_json::Value)> {
    let mut messages: Vec<_> = messages
        .into_iter()
        .map(|(c, p)| (c, serde_json::from_str(&p).expect("JSON payload")))
        .collect();
    messages.sort_by(|a, b| a.0.cmp(&b.0));
    messages
}

#[tokio::test]
async fn defer_in_a_tokio_postgres_transaction_commits_or_rolls_back_with_it() {
    let db = schema_db().await;
    let app = app(&db);
    let queue_channel = "procrastinate_queue_v1#emails";
    let mut listener = Listener::new(&db, &["procrastinate_any_queue_v1", queue_channel]).await;
    let other = db.client().await;
    let mut client = db.client().await;

    // Rolled back: no job, no notification.
    let mut tx = client.transaction().await.expect("begin");
    let id = app
        .configure(record(1))
        .with_queue("emails")
        .defer_in(&mut tx)
        .await
        .expect("defer in tx");
    let err = app.job_manager().get_job(id).await.expect_err("invisible");
    assert!(matches!(err, Error::JobNotFound { .. }), "{err:?}");
    tx.rollback().await.expect("rollback");
    assert_eq!(listener.drain_until_marker(&other).await, []);
    assert_eq!(counts(&other).await, (0, 0));

    // Committed: visible, and announced only at commit.
    let mut tx = client.transaction().await.expect("begin");
    let id = app
        .configure(record(2))
        .with_queue("emails")
        .with_timeout(Duration::from_secs(5))
        .defer_in(&mut tx)
        .await
        .expect("defer in tx");
    let ids = app
        .batch_defer_in(
            &mut tx,
            [app.configure(record(3)), app.configure(record(4))],
        )
        .await
        .expect("batch in tx");
    assert_eq!(
        listener.drain_until_marker(&other).await,
        [],
        "no notification before commit"
    );
    assert_eq!(
        counts(&other).await,
        (0, 0),
        "nothing visible before commit"
    );
    tx.commit().await.expect("commit");

    let job = app.job_manager().get_job(id).await.expect("visible");
    assert_eq!(job.queue_name, "emails");
    assert_eq!(job.args, json!({"n": 2, "label": "job 2"}));
    assert_eq!(counts(&other).await, (3, 3));
    assert_eq!(stored_timeout(&other, id).await, Some(5_000));
    assert_eq!(stored_timeout(&other, ids[0]).await, None);
    let mut expected = vec![
        inserted("procrastinate_any_queue_v1", id),
        inserted("procrastinate_any_queue_v1", ids[0]),
        inserted("procrastinate_any_queue_v1", ids[1]),
        inserted(queue_channel, id),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let got = parsed(listener.drain_until_marker(&other).await);
    assert_eq!(got, expected);
    drop(listener.client);
}

/// docs/deferring.md's deadpool example: the app's own pool, a write of the caller's and
/// a batch (25 jobs: the set-wise statement) in one transaction.
#[tokio::test]
async fn defer_in_a_deadpool_transaction_commits_or_rolls_back_with_it() {
    let db = schema_db().await;
    let app = app(&db);
    let other = db.client().await;
    other
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, confirmed bool NOT NULL DEFAULT false);
             INSERT INTO orders (id) SELECT generate_series(1, 25)",
        )
        .await
        .expect("orders table");
    let order_ids: Vec<i64> = (1..=25).collect();
    let confirmed = async || -> i64 {
        other
            .query_one("SELECT count(*) FROM orders WHERE confirmed", &[])
            .await
            .expect("count orders")
            .get(0)
    };
    let mut client = app
        .pg()
        .expect("the app runs on PostgreSQL")
        .get()
        .await
        .expect("pooled connection");

    for commit in [false, true] {
        let mut tx = client.transaction().await.expect("begin");
        tx.execute(
            "UPDATE orders SET confirmed = true WHERE id = ANY($1)",
            &[&order_ids],
        )
        .await
        .expect("update orders");
        // The last job carries a timeout: the batch takes the statement that stores it.
        let jobs = order_ids.iter().map(|&n| {
            let job = app.configure(record(n)).with_queue("emails");
            if n == 25 {
                job.with_timeout(Duration::from_secs(25))
            } else {
                job
            }
        });
        let ids = app
            .batch_defer_in(&mut tx, jobs)
            .await
            .expect("batch in tx");
        assert_eq!(ids.len(), 25);
        assert_eq!(
            counts(&other).await,
            (0, 0),
            "nothing visible before commit"
        );
        if commit {
            tx.commit().await.expect("commit");
            assert_eq!((counts(&other).await, confirmed().await), ((25, 25), 25));
            let job = app.job_manager().get_job(ids[24]).await.expect("visible");
            assert_eq!(job.args, json!({"n": 25, "label": "job 25"}));
            assert_eq!(stored_timeout(&other, ids[24]).await, Some(25_000));
            assert_eq!(stored_timeout(&other, ids[23]).await, None);
        } else {
            tx.rollback().await.expect("rollback");
            assert_eq!((counts(&other).await, confirmed().await), ((0, 0), 0));
        }
    }
}

/// An sqlx pool on the test database, whose URL may be a `key=value` conninfo.
#[cfg(feature = "sqlx")]
pub(crate) async fn sqlx_pool(db: &TestDb) -> sqlx::PgPool {
    use tokio_postgres::config::Host;
    let config: tokio_postgres::Config = db.url.parse().expect("test database conninfo");
    let mut options = sqlx::postgres::PgConnectOptions::new();
    if let Some(host) = config.get_hosts().first() {
        options = match host {
            Host::Tcp(name) => options.host(name),
            Host::Unix(path) => options.socket(path),
        };
    }
    if let Some(port) = config.get_ports().first() {
        options = options.port(*port);
    }
    if let Some(user) = config.get_user() {
        options = options.username(user);
    }
    if let Some(password) = config.get_password() {
        options = options.password(&String::from_utf8_lossy(password));
    }
    options = options.database(config.get_dbname().expect("dbname"));
    sqlx::PgPool::connect_with(options)
        .await
        .expect("sqlx pool")
}

#[cfg(feature = "sqlx")]
#[tokio::test]
async fn defer_in_an_sqlx_transaction_commits_or_rolls_back_with_it() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let pool = sqlx_pool(&db).await;

    let mut tx = pool.begin().await.expect("begin");
    let rolled_back = app
        .configure(record(1))
        .defer_in(&mut tx)
        .await
        .expect("defer in sqlx tx");
    tx.rollback().await.expect("rollback");
    let err = app
        .job_manager()
        .get_job(rolled_back)
        .await
        .expect_err("gone");
    assert!(matches!(err, Error::JobNotFound { .. }), "{err:?}");
    assert_eq!(counts(&client).await, (0, 0));

    let mut tx = pool.begin().await.expect("begin");
    let id = app
        .configure(record(2))
        .with_queueing_lock("sqlx-lock")
        .with_timeout(Duration::from_secs(9))
        .defer_in(&mut tx)
        .await
        .expect("defer in sqlx tx");
    assert_eq!(counts(&client).await, (0, 0), "invisible before commit");
    tx.commit().await.expect("commit");
    let args = json!({"n": 2, "label": "job 2"});
    let expected = todo_row(
        id,
        "default",
        "tests.record",
        0,
        None,
        Some("sqlx-lock"),
        args,
    );
    assert_eq!(row(&client, id).await, expected);
    assert_eq!(stored_timeout(&client, id).await, Some(9_000));

    // The queueing-lock collision is typed and names the lock on this path too.
    let mut tx = pool.begin().await.expect("begin");
    let err = app
        .configure(record(3))
        .with_queueing_lock("sqlx-lock")
        .defer_in(&mut tx)
        .await
        .expect_err("collision");
    assert!(
        matches!(err, Error::AlreadyEnqueued { ref queueing_lock } if queueing_lock == "sqlx-lock"),
        "{err:?}"
    );
    tx.rollback().await.expect("rollback");
    assert_eq!(counts(&client).await, (1, 1));
}

/// Asserts `result` is an error matching `check`, and that nothing was written.
async fn refused(
    client: &Client,
    result: postpone::Result<i64>,
    check: impl Fn(&Error) -> bool,
    message: &str,
) {
    let err = result.expect_err("bad input refused");
    assert!(check(&err), "unexpected error: {err:?}");
    assert!(
        err.to_string().contains(message),
        "message {:?} lacks {message:?}",
        err.to_string()
    );
    assert_eq!(counts(client).await, (0, 0), "nothing written for {err}");
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let invalid = |e: &Error| matches!(e, Error::InvalidInput(_));

    let long_queue = app.configure(record(1)).with_queue("q".repeat(129));
    refused(&client, long_queue.defer().await, invalid, "129 characters").await;
    // The column takes 128 characters, but the job_inserted trigger NOTIFYs on
    // `procrastinate_queue_v1#<queue>`, and a channel name has at most 63 bytes: a todo job's
    // queue can have at most 40 bytes. Longer ones are refused before anything is written,
    // with a message saying why (Python fails later, in the trigger).
    let ok = app.configure(record(1)).with_queue("q".repeat(40));
    let id = ok.defer().await.expect("40 characters");
    client
        .execute("DELETE FROM procrastinate_jobs WHERE id = $1", &[&id])
        .await
        .expect("clean up");
    client
        .execute("DELETE FROM procrastinate_events", &[])
        .await
        .expect("clean up");
    let too_long = app.configure(record(1)).with_queue("q".repeat(41));
    refused(&client, too_long.defer().await, invalid, "at most 40 fit").await;

    let long_task = app
        .configure_by_name(&"t".repeat(129), json!({}))
        .allow_unknown();
    refused(&client, long_task.defer().await, invalid, "task name").await;

    let both = app
        .configure(record(1))
        .schedule_at(Utc::now())
        .schedule_in(Duration::from_secs(1));
    refused(
        &client,
        both.defer().await,
        invalid,
        "schedule_at and schedule_in",
    )
    .await;

    let not_object = app.configure_by_name("tests.record", json!([1, 2]));
    let args_err =
        |e: &Error| matches!(e, Error::InvalidArgs { task, .. } if task == "tests.record");
    refused(&client, not_object.defer().await, args_err, "an array").await;

    let missing = app.configure_by_name("tests.record", json!({"n": 1}));
    refused(&client, missing.defer().await, args_err, "`label`").await;

    let wrong_type = app.configure_by_name("tests.record", json!({"n": "one", "label": "x"}));
    refused(
        &client,
        wrong_type.defer().await,
        args_err,
        "field `n`: invalid type",
    )
    .await;

    let unknown = app.configure_by_name("tests.nobody", json!({"a": 1}));
    let unknown_err =
        |e: &Error| matches!(e, Error::UnknownTask { name } if name == "tests.nobody");
    refused(&client, unknown.defer().await, unknown_err, "tests.nobody").await;

    // Unless unknown tasks are allowed; then the args are stored as given.
    let id = app
        .configure_by_name("tests.nobody", json!({"a": 1}))
        .allow_unknown()
        .defer()
        .await
        .expect("unknown allowed");
    let expected = todo_row(
        id,
        "default",
        "tests.nobody",
        0,
        None,
        None,
        json!({"a": 1}),
    );
    assert_eq!(row(&client, id).await, expected);
}

#[tokio::test]
async fn a_database_without_the_schema_says_to_apply_it() {
    let db = empty_db().await;
    let client = db.client().await;
    let app = app(&db);
    let err = app.defer(record(1)).await.expect_err("no schema");
    assert!(matches!(err, Error::SchemaMissing), "{err:?}");
    assert!(err.to_string().contains("postpone schema apply"), "{err}");
    let err = app
        .job_manager()
        .list_jobs(&Default::default())
        .await
        .expect_err("no schema");
    assert!(matches!(err, Error::SchemaMissing), "{err:?}");
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .expect("count tables")
        .get(0);
    assert_eq!(tables, 0, "deferring creates nothing");
}

#[tokio::test]
async fn an_unreachable_server_is_named_in_the_error() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let app = App::builder()
        .database_url(&format!("postgres://postgres@127.0.0.1:{port}/nowhere"))
        .expect("url")
        .task::<Record>()
        .build()
        .expect("building touches no database");
    let err = tokio::time::timeout(DEADLINE, app.defer(record(1)))
        .await
        .expect("fails fast")
        .expect_err("nobody listens");
    match &err {
        Error::Connect { target, .. } => {
            assert!(target.contains("127.0.0.1"), "{target}");
            assert!(target.contains(&format!("port={port}")), "{target}");
        }
        other => panic!("expected Error::Connect, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("127.0.0.1") && message.contains(&port.to_string()),
        "{message}"
    );
}
