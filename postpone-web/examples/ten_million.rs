//! Times every dashboard page on a table of 10,000,000 jobs (and 20,000,000 events).
//!
//! Run with: `cargo run --release -p postpone-web --example ten_million`
//!
//! It fills a private database, `postpone_web_10m` (on the server `postpone-testkit` finds
//! or starts), server-side with `INSERT ... SELECT generate_series`: five queues of unequal
//! size (one rare), 150,000 waiting jobs at the end, 150 running ones holding locks, the rest
//! finished (94 % succeeded, 4 % failed, 1.5 % cancelled, 0.5 % aborted), a `deferred` event
//! per job and an end event per finished job, spread over the last 3.5 days (the newest
//! within the last minutes, for the throughput chart), eight workers; then VACUUM ANALYZE.
//! Set `POSTPONE_WEB_10M_REUSE=1` to time an existing fill again. Then it requests each
//! page through the router (in process, no network) 7 times and prints the median and the
//! slowest, in milliseconds. The database is left in place (drop it by hand).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

const DB: &str = "postpone_web_10m";
const JOBS: i64 = 10_000_000;
const CHUNK: i64 = 1_000_000;
const RUNS: usize = 7;

/// One chunk of jobs, ids $1 to $2 of $3::bigint (triggers off: events are written below).
const FILL_JOBS: &str = "
INSERT INTO procrastinate_jobs (id, queue_name, task_name, priority, lock, args, status,
                                attempts, worker_id)
SELECT i,
       CASE WHEN i % 1000 = 999 THEN 'rare'
            WHEN i % 100 < 50 THEN 'default'
            WHEN i % 100 < 75 THEN 'emails'
            WHEN i % 100 < 90 THEN 'reports'
            ELSE 'images' END,
       'tasks.' || (ARRAY['send', 'render', 'resize', 'bill'])[1 + i % 4],
       (i % 3)::int,
       CASE WHEN i > $3::bigint - 150 THEN 'lock-' || i END,
       jsonb_build_object('user_id', i, 'email', 'user' || i || '@example.com'),
       (CASE WHEN i > $3::bigint - 150 THEN 'doing'
             WHEN i > $3::bigint - 150150 AND i % 1000 <> 999 THEN 'todo'
             WHEN i % 200 < 188 THEN 'succeeded'
             WHEN i % 200 < 196 THEN 'failed'
             WHEN i % 200 < 199 THEN 'cancelled'
             ELSE 'aborted' END)::procrastinate_job_status,
       CASE WHEN i > $3::bigint - 150150 THEN 0 ELSE 1 END,
       CASE WHEN i > $3::bigint - 150 THEN 1 + i % 8 END
  FROM generate_series($1::bigint, $2::bigint) AS i";

/// The events of the same chunk: `deferred` for every job, the end event of finished ones.
const FILL_EVENTS: &str = "
INSERT INTO procrastinate_events (job_id, type, at)
SELECT job.id, kind.type, now() - make_interval(secs => ($3::bigint - job.id) * 0.03) + kind.later
  FROM procrastinate_jobs AS job
 CROSS JOIN LATERAL (
     VALUES ('deferred'::procrastinate_job_event_type, interval '0'),
            (CASE job.status WHEN 'succeeded' THEN 'succeeded'::procrastinate_job_event_type
                             WHEN 'failed' THEN 'failed'
                             WHEN 'cancelled' THEN 'cancelled'
                             WHEN 'aborted' THEN 'aborted' END, interval '1 second')
 ) AS kind(type, later)
 WHERE job.id BETWEEN $1 AND $2 AND kind.type IS NOT NULL";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = postpone_testkit::server().await?;
    let url = server.url(DB);
    let reuse = std::env::var("POSTPONE_WEB_10M_REUSE").is_ok_and(|v| v == "1");
    if !reuse {
        server.drop_database(DB).await?;
        server.create_database(DB, None).await?;
    }
    let app = postpone::App::builder().database_url(&url)?.build()?;
    if !reuse {
        app.apply_schema(postpone::ApplyScope::All).await?;
        fill(&url).await?;
    }
    let router = postpone_web::router(&app, postpone_web::DashboardConfig::new());
    let some_failed = JOBS - 150_150 - 200 * 10 + 190; // i % 200 == 190: failed
    let pages = [
        "/".to_owned(),
        "/jobs".to_owned(),
        "/jobs?status=failed".to_owned(),
        "/jobs?queue=rare".to_owned(),
        "/jobs?task=tasks.bill&status=succeeded".to_owned(),
        "/jobs?q=user9999999%40".to_owned(),
        format!("/jobs?before={}", JOBS / 2),
        format!("/jobs?after={}", JOBS / 2),
        format!("/jobs?id={}", JOBS / 3),
        format!("/jobs/{some_failed}"),
        "/queues".to_owned(),
        "/workers".to_owned(),
        "/periodic".to_owned(),
        "/metrics".to_owned(),
    ];
    println!("| page | status | median ms | slowest ms |");
    println!("|---|---|---|---|");
    for page in &pages {
        let mut times = Vec::with_capacity(RUNS);
        let mut status = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let response = router
                .clone()
                .oneshot(Request::get(page.as_str()).body(Body::empty())?)
                .await?;
            status = response.status().as_u16();
            response.into_body().collect().await?;
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "| `{page}` | {status} | {:.1} | {:.1} |",
            ms(times[RUNS / 2]),
            ms(times[RUNS - 1])
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn fill(url: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let started = Instant::now();
    client
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO procrastinate_workers (last_heartbeat)
             SELECT now() - make_interval(secs => n) FROM generate_series(1, 8) AS n;",
        )
        .await?;
    let mut from = 1;
    while from <= JOBS {
        let to = (from + CHUNK - 1).min(JOBS);
        client.execute(FILL_JOBS, &[&from, &to, &JOBS]).await?;
        client.execute(FILL_EVENTS, &[&from, &to, &JOBS]).await?;
        eprintln!(
            "filled jobs {from}..{to} ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
        from = to + 1;
    }
    // One statement each: VACUUM cannot run in the implicit transaction of a batch.
    for statement in [
        "SELECT setval(pg_get_serial_sequence('procrastinate_jobs', 'id'), (SELECT max(id) FROM procrastinate_jobs))",
        "VACUUM ANALYZE procrastinate_jobs",
        "VACUUM ANALYZE procrastinate_events",
    ] {
        client.batch_execute(statement).await?;
    }
    eprintln!(
        "filled and analysed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
