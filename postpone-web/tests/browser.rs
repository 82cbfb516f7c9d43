//! The dashboard in a real headless Chromium: each test gets a fresh database, the
//! dashboard served over HTTP on a free port of 127.0.0.1 (`postpone_web::serve_on`) and a
//! browser session of its own (`postpone_testkit::Browser`), and acts as a person would:
//! opens pages, fills the filter form, clicks, answers the confirmation, reads what shows.
//! Every wait has a deadline.
//!
//! Run with: `cargo test -p postpone-web --test browser` (Chromium is installed with apt on
//! first use when missing and we are root; no PostgreSQL or no Chromium fails, never skips).
//!
//! The pictures of `docs/dashboard.md` come from the ignored test here:
//! `cargo test -p postpone-web --test browser -- --ignored screenshots`.

mod common;

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use common::{Db, Served};
use postpone::store::DeferJobParams;
use postpone::task::{JobContext, TaskError};
use postpone::{JobStatus, Periodic, Task, WorkerConfig};
use postpone_testkit::{Browser, Session, WAIT_DEFAULT};
use postpone_web::DashboardConfig;
use serde_json::{Value, json};

/// How long a live region may take to show a change (it refreshes every 2 s).
const LIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a user put in a job's args: must show as text, and never run.
const SCRIPT: &str = "<script>window.__pwned = 1</script>";
const IMG: &str = "<img src=x onerror=window.__pwned=2>";

/// A dashboard under test: a browser on the dashboard served over HTTP on its database.
/// Dropped in this order: the browser, the server, the database.
struct Dashboard {
    session: Session,
    served: Served,
    db: Db,
}

impl Dashboard {
    /// Serves `db` with `config` and opens a browser session.
    async fn open(db: Db, config: DashboardConfig) -> anyhow::Result<Self> {
        let served = db.serve(config).await;
        let session = Browser::shared().await?.session().await?;
        Ok(Self {
            session,
            served,
            db,
        })
    }

    /// Opens `path` of the dashboard (`/jobs?status=failed`).
    async fn goto(&self, path: &str) -> anyhow::Result<()> {
        Ok(self.session.goto(&self.served.url(path)).await?)
    }

    /// Closes the browser, then stops the server.
    async fn close(self) -> anyhow::Result<()> {
        self.session.close().await?;
        self.served.stop().await?;
        Ok(())
    }
}

/// Runs `script` in the page; what it returns.
async fn js(session: &Session, script: &str) -> anyhow::Result<Value> {
    session
        .execute(script, Vec::new())
        .await
        .with_context(|| format!("running `{script}` in the page"))
}

/// Waits until `script` returns `true` in the page, up to `timeout`. A script failing
/// (the page is between two documents) counts as not yet.
async fn wait_until(
    session: &Session,
    what: &str,
    script: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = session.execute(script, Vec::new()).await;
        if matches!(seen, Ok(Value::Bool(true))) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let page = session
                .current_url()
                .await
                .map_or_else(|_| "the page".to_owned(), |url| url.to_string());
            let seen = seen.map_or_else(
                |e| format!("failed: {}", e.to_string().lines().next().unwrap_or("")),
                |value| format!("gave {value}"),
            );
            bail!("{what}: not within {timeout:?} on {page} (`{script}` last {seen})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page at a URL whose query has `key=value` has loaded.
async fn wait_for_query(session: &Session, key: &str, value: &str) -> anyhow::Result<()> {
    wait_until(
        session,
        &format!("the page with {key}={value}"),
        &format!(
            "return document.readyState === 'complete' && new URLSearchParams(location.search).get('{key}') === '{value}'"
        ),
        WAIT_DEFAULT,
    )
    .await
}

/// The ids of the job rows on the page, top to bottom.
async fn job_rows(session: &Session) -> anyhow::Result<Vec<i64>> {
    let rows = js(
        session,
        "return Array.from(document.querySelectorAll('tr[data-job]'), row => Number(row.dataset.job))",
    )
    .await?;
    Ok(serde_json::from_value(rows)?)
}

/// The HTTP status of the document shown (the navigation's response).
async fn response_status(session: &Session) -> anyhow::Result<u64> {
    let status = js(
        session,
        "return performance.getEntriesByType('navigation')[0].responseStatus",
    )
    .await?;
    status
        .as_u64()
        .with_context(|| format!("no response status: {status}"))
}

/// Waits for the JS `confirm()` dialog, accepts it, and returns its question.
async fn accept_confirm(session: &Session) -> anyhow::Result<String> {
    let deadline = Instant::now() + WAIT_DEFAULT;
    loop {
        match session.get_alert_text().await {
            Ok(question) => {
                session.accept_alert().await?;
                return Ok(question);
            }
            Err(e) if Instant::now() > deadline => {
                bail!("no confirmation dialog within {WAIT_DEFAULT:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Clicks the action button `action` (`retry`), accepts its confirmation, and waits for
/// the page saying what happened (its `flash`) to show `expected`.
async fn act(session: &Session, action: &str, expected: &str) -> anyhow::Result<String> {
    session
        .click(&format!("[data-testid=action-{action}]"))
        .await?;
    let question = accept_confirm(session).await?;
    session
        .wait_for_text("[data-testid=flash]", expected)
        .await?;
    Ok(question)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_the_counts_of_each_queue() -> anyhow::Result<()> {
    let db = Db::new().await;
    for _ in 0..2 {
        db.failed_job_in("mail").await;
    }
    for i in 0..3 {
        db.defer("default", json!({ "i": i })).await;
    }
    let dashboard = Dashboard::open(db, DashboardConfig::new()).await?;
    let session = &dashboard.session;
    dashboard.goto("/").await?;
    for (testid, expected) in [
        ("count-default-todo", "3"),
        ("count-default-failed", "0"),
        ("count-mail-failed", "2"),
        ("count-mail-todo", "0"),
        ("count-mail-succeeded", "0"),
    ] {
        let shown = session.text(&format!("[data-testid={testid}]")).await?;
        ensure!(
            shown == expected,
            "{testid} shows {shown:?}, not {expected}"
        );
    }
    dashboard.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_form_narrows_the_list() -> anyhow::Result<()> {
    let db = Db::new().await;
    let failed_default = db.failed_job_in("default").await;
    let failed_mail = [
        db.failed_job_in("mail").await,
        db.failed_job_in("mail").await,
    ];
    let mut todo = Vec::new();
    for queue in ["default", "default", "mail"] {
        todo.push(db.defer(queue, json!({})).await);
    }
    let dashboard = Dashboard::open(db, DashboardConfig::new()).await?;
    let session = &dashboard.session;
    dashboard.goto("/jobs").await?;
    session.wait_for("[data-testid=jobs]").await?;
    ensure!(job_rows(session).await?.len() == 6, "all six jobs listed");

    session
        .wait_for("[data-testid=filter-status]")
        .await?
        .select_by_value("failed")
        .await?;
    session.click("[data-testid=filter-submit]").await?;
    wait_for_query(session, "status", "failed").await?;
    let rows = job_rows(session).await?;
    ensure!(
        rows == [failed_mail[1], failed_mail[0], failed_default],
        "status=failed lists {rows:?} (todo: {todo:?})"
    );

    // The form keeps the status; a queue narrows further.
    session
        .wait_for("[data-testid=filter-queue]")
        .await?
        .send_keys("mail")
        .await?;
    session.click("[data-testid=filter-submit]").await?;
    wait_for_query(session, "queue", "mail").await?;
    let rows = job_rows(session).await?;
    ensure!(
        rows == [failed_mail[1], failed_mail[0]],
        "queue=mail&status=failed lists {rows:?}"
    );
    let status = js(
        session,
        "return document.querySelector('[data-testid=filter-status]').value",
    )
    .await?;
    ensure!(status == "failed", "the status field shows {status}");
    dashboard.close().await
}

/// A task that always fails.
#[derive(serde::Serialize, serde::Deserialize)]
struct Explode {
    what: String,
}

impl Task for Explode {
    fn name() -> Cow<'static, str> {
        "tests.explode".into()
    }

    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Err(TaskError::new(
            "Boom",
            format!("the <b>{}</b> is full", self.what),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_jobs_page_shows_its_events_and_error() -> anyhow::Result<()> {
    let db = Db::with_app(|app| app.task::<Explode>()).await;
    let id = db
        .app
        .defer(Explode {
            what: "disk".to_owned(),
        })
        .await?;
    let worker = db
        .app
        .start_worker(WorkerConfig {
            install_signal_handlers: false,
            ..WorkerConfig::default()
        })
        .await?;
    db.wait_for_status(id, JobStatus::Failed, Duration::from_secs(30))
        .await;
    worker.stop();
    worker.join().await?;

    let dashboard = Dashboard::open(db, DashboardConfig::new()).await?;
    let session = &dashboard.session;
    dashboard.goto(&format!("/jobs/{id}")).await?;
    let status = session.text("[data-testid=job-status]").await?;
    ensure!(status == "failed", "the job shows as {status}");
    let events = js(
        session,
        "return Array.from(document.querySelectorAll('#events tr[data-event]'), row => row.dataset.event)",
    )
    .await?;
    ensure!(
        events == json!(["deferred", "started", "failed"]),
        "events {events}"
    );
    let errors = session.text("[data-testid=job-errors]").await?;
    ensure!(
        errors.contains("Boom") && errors.contains("the <b>disk</b> is full"),
        "the recorded error, as text: {errors:?}"
    );
    ensure!(
        js(
            session,
            "return document.querySelector('#errors b') === null"
        )
        .await?
            == true,
        "the error's markup is not rendered"
    );
    dashboard.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_asks_for_confirmation_and_moves_the_job_to_todo() -> anyhow::Result<()> {
    let db = Db::new().await;
    let id = db.failed_job().await;
    let dashboard = Dashboard::open(db, DashboardConfig::new()).await?;
    let session = &dashboard.session;
    dashboard.goto(&format!("/jobs/{id}")).await?;
    let question = act(
        session,
        "retry",
        &format!("job {id} retried: it is todo again"),
    )
    .await?;
    ensure!(question == format!("Retry job {id}?"), "asked {question:?}");
    ensure!(response_status(session).await? == 200);
    let status = dashboard.db.status(id).await;
    ensure!(
        status == JobStatus::Todo,
        "job {id} is {status} in the database"
    );

    // Back on its page: todo, and no retry button any more.
    session.click(&format!("main a[href='jobs/{id}']")).await?;
    session
        .wait_for_text("[data-testid=job-status]", "todo")
        .await?;
    ensure!(
        js(
            session,
            "return document.querySelector('[data-testid=action-retry]') === null"
        )
        .await?
            == true,
        "a todo job has no retry button"
    );
    dashboard.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_in_args_shows_as_text_and_runs_nothing() -> anyhow::Result<()> {
    let db = Db::new().await;
    let id = db.defer("default", json!({ "a": SCRIPT, "b": IMG })).await;
    let dashboard = Dashboard::open(db, DashboardConfig::new()).await?;
    let session = &dashboard.session;
    let nothing_ran = "return window.__pwned === undefined \
        && document.querySelectorAll('main script, main img').length === 0";
    for (path, region) in [
        (format!("/jobs/{id}"), "[data-testid=job-args]"),
        ("/jobs".to_owned(), "[data-testid=jobs]"),
    ] {
        dashboard.goto(&path).await?;
        let text = session.text(region).await?;
        ensure!(
            text.contains(SCRIPT) && text.contains(IMG),
            "{path} shows the args as text: {text:?}"
        );
        ensure!(
            js(session, nothing_ran).await? == true,
            "{path} ran nothing"
        );
    }

    // The live refresh puts the rows in again (innerHTML): still text.
    let newer = dashboard
        .db
        .defer("default", json!({ "a": SCRIPT, "b": IMG }))
        .await;
    wait_until(
        session,
        &format!("the list refreshed with job {newer}"),
        &format!("return document.querySelector('tr[data-job=\"{newer}\"]') !== null"),
        LIVE_TIMEOUT,
    )
    .await?;
    let text = session.text(&format!("tr[data-job='{newer}']")).await?;
    ensure!(text.contains(SCRIPT) && text.contains(IMG), "{text:?}");
    ensure!(
        js(session, nothing_ran).await? == true,
        "the refreshed list ran nothing"
    );
    dashboard.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_with_a_forged_or_missing_csrf_token_is_refused() -> anyhow::Result<()> {
    let db = Db::new().await;
    let id = db.failed_job().await;
    let dashboard = Dashboard::open(db, DashboardConfig::new()).await?;
    let session = &dashboard.session;
    for (how, script) in [
        (
            "forged",
            "document.querySelectorAll('[data-testid=csrf]').forEach(field => field.value = 'forged')",
        ),
        (
            "removed",
            "document.querySelectorAll('[data-testid=csrf]').forEach(field => field.remove())",
        ),
    ] {
        dashboard.goto(&format!("/jobs/{id}")).await?;
        session.wait_for("[data-testid=action-retry]").await?;
        js(session, script).await?;
        act(session, "retry", "missing or wrong CSRF token").await?;
        let status = response_status(session).await?;
        ensure!(status == 403, "a {how} token: {status}");
        let title = session.text("h1").await?;
        ensure!(title == "Forbidden", "a {how} token: {title:?}");
        let status = dashboard.db.status(id).await;
        ensure!(
            status == JobStatus::Failed,
            "a {how} token: job {id} is {status}"
        );
    }
    dashboard.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_updates_itself_without_a_reload() -> anyhow::Result<()> {
    let db = Db::new().await;
    for _ in 0..3 {
        db.defer("default", json!({})).await;
    }
    // Enough queues for the page to scroll.
    for i in 0..40 {
        db.defer(&format!("queue-{i:02}"), json!({})).await;
    }
    let dashboard = Dashboard::open(db, DashboardConfig::new()).await?;
    let session = &dashboard.session;
    dashboard.goto("/").await?;
    let count = "[data-testid=count-default-todo]";
    ensure!(session.text(count).await? == "3");
    let scrolled = js(
        session,
        "window.scrollTo(0, 400); window.__marker = 1; return window.scrollY",
    )
    .await?;
    ensure!(
        scrolled == 400,
        "the page scrolls to 400 (scrollY {scrolled})"
    );

    for _ in 0..2 {
        dashboard.db.defer("default", json!({})).await;
    }
    wait_until(
        session,
        "the overview's todo count of default shows 5",
        &format!("return document.querySelector('{count}').textContent === '5'"),
        LIVE_TIMEOUT,
    )
    .await?;
    let after = js(session, "return [window.__marker, window.scrollY]").await?;
    ensure!(
        after == json!([1, 400]),
        "no reload, same scroll: [marker, scrollY] = {after}"
    );
    dashboard.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_renders_no_action() -> anyhow::Result<()> {
    let db = Db::new().await;
    let failed = db.failed_job().await;
    let todo = db.defer("default", json!({})).await;
    let dashboard = Dashboard::open(db, DashboardConfig::new().with_read_only(true)).await?;
    let session = &dashboard.session;
    for (path, content) in [
        (format!("/jobs/{failed}"), "[data-testid=job-status]"),
        (format!("/jobs/{todo}"), "[data-testid=job-status]"),
        ("/jobs".to_owned(), "[data-testid=jobs]"),
        ("/queues".to_owned(), "[data-testid=queues]"),
        ("/".to_owned(), "[data-testid=queues]"),
    ] {
        dashboard.goto(&path).await?;
        session.wait_for(content).await?;
        session.wait_for("[data-testid=read-only]").await?;
        let actions = js(
            session,
            "return Array.from(document.querySelectorAll(\
                'main button:not([data-testid=filter-submit]), [data-testid=csrf], input[name=ids]'), \
                element => element.outerHTML)",
        )
        .await?;
        ensure!(actions == json!([]), "{path} renders actions: {actions}");
    }
    dashboard.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_typed_once_and_its_cookie_carries_pages_and_actions() -> anyhow::Result<()> {
    let db = Db::new().await;
    let id = db.failed_job().await;
    let dashboard = Dashboard::open(db, DashboardConfig::new().with_token("s3cret")).await?;
    let session = &dashboard.session;
    dashboard.goto(&format!("/jobs/{id}")).await?;
    ensure!(response_status(session).await? == 401);
    let field = session.wait_for("#token").await?;
    field.send_keys("wrong").await?;
    session.click("button[type=submit]").await?;
    session
        .wait_for_text("[data-testid=flash]", "wrong token")
        .await?;

    let field = session.wait_for("#token").await?;
    field.clear().await?;
    field.send_keys("s3cret").await?;
    session.click("button[type=submit]").await?;
    // The login leads to the overview; the cookie opens the other pages.
    session.wait_for("[data-testid=queues]").await?;
    dashboard.goto(&format!("/jobs/{id}")).await?;
    act(
        session,
        "retry",
        &format!("job {id} retried: it is todo again"),
    )
    .await?;
    let status = dashboard.db.status(id).await;
    ensure!(status == JobStatus::Todo, "job {id} is {status}");
    let cookie = js(session, "return document.cookie").await?;
    ensure!(cookie == "", "the session cookie is HttpOnly: {cookie}");
    dashboard.close().await
}

/// The periodic task of the screenshots.
#[derive(serde::Serialize, serde::Deserialize)]
struct DailyReport {
    timestamp: i64,
}

impl Task for DailyReport {
    fn name() -> Cow<'static, str> {
        "reports.build_daily".into()
    }

    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// A job of `task` in `queue`, holding `lock` when given.
async fn defer_job(db: &Db, queue: &str, task: &str, args: Value, lock: Option<&str>) -> i64 {
    let job = DeferJobParams {
        queue_name: queue.to_owned(),
        lock: lock.map(str::to_owned),
        ..DeferJobParams::resolve(task.to_owned(), args, Default::default()).expect("job")
    };
    db.app.store().defer_jobs(&[job]).await.expect("defer")[0]
}

/// A few queues with jobs of every status, two workers running jobs (one holding a lock),
/// a paused queue, failed jobs with their errors, a periodic tick; returns the id of the
/// failed job to show.
async fn fill_for_screenshots(db: &Db) -> i64 {
    let store = db.app.store();
    let workers = [
        store.register_worker().await.expect("register"),
        store.register_worker().await.expect("register"),
    ];
    // Jobs that end are claimed as soon as deferred (a claim takes the oldest todo job).
    let plan = [
        (
            "emails",
            "emails.send_welcome",
            json!({"to": "ada@example.com"}),
            14,
        ),
        (
            "images",
            "images.make_thumbnail",
            json!({"image_id": 8812, "size": 256}),
            9,
        ),
        (
            "billing",
            "billing.charge_card",
            json!({"invoice": "INV-2041", "amount_cents": 4900}),
            4,
        ),
    ];
    for (queue, task, args, n) in plan {
        for _ in 0..n {
            let id = defer_job(db, queue, task, args.clone(), None).await;
            let claimed = db.claim_as(queue, workers[0]).await;
            assert_eq!(claimed, id);
            db.finish(id, JobStatus::Succeeded, workers[0], None).await;
        }
    }
    let failures = [
        (
            "billing",
            "billing.charge_card",
            json!({"invoice": "INV-2042", "amount_cents": 12900}),
            (
                "CardDeclined",
                "the card was declined: insufficient_funds (charge ch_3PqK2e)",
            ),
        ),
        (
            "emails",
            "emails.send_welcome",
            json!({"to": "bob@example.net"}),
            (
                "SmtpError",
                "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
            ),
        ),
    ];
    let mut shown = 0;
    for (queue, task, args, error) in failures {
        let id = defer_job(db, queue, task, args, None).await;
        let claimed = db.claim_as(queue, workers[1]).await;
        assert_eq!(claimed, id);
        db.finish(id, JobStatus::Failed, workers[1], Some(error))
            .await;
        shown = id;
    }
    let id = defer_job(
        db,
        "images",
        "images.make_thumbnail",
        json!({"image_id": 8815, "size": 1024}),
        None,
    )
    .await;
    let claimed = db.claim_as("images", workers[1]).await;
    db.finish(claimed, JobStatus::Aborted, workers[1], None)
        .await;
    assert_eq!(claimed, id);
    // Running now.
    let running = defer_job(
        db,
        "images",
        "images.make_thumbnail",
        json!({"image_id": 8820, "size": 256}),
        Some("image:8820"),
    )
    .await;
    assert_eq!(db.claim_as("images", workers[0]).await, running);
    let running = defer_job(
        db,
        "emails",
        "emails.send_welcome",
        json!({"to": "eve@example.org"}),
        None,
    )
    .await;
    assert_eq!(db.claim_as("emails", workers[1]).await, running);
    // Waiting.
    for (queue, task, args, n) in [
        (
            "emails",
            "emails.send_welcome",
            json!({"to": "grace@example.com"}),
            3,
        ),
        (
            "images",
            "images.make_thumbnail",
            json!({"image_id": 8831, "size": 512}),
            4,
        ),
        (
            "billing",
            "billing.charge_card",
            json!({"invoice": "INV-2050", "amount_cents": 1500}),
            2,
        ),
    ] {
        for _ in 0..n {
            defer_job(db, queue, task, args.clone(), None).await;
        }
    }
    let manager = db.app.job_manager();
    let cancelled = defer_job(
        db,
        "emails",
        "emails.send_welcome",
        json!({"to": "mallory@example.com"}),
        None,
    )
    .await;
    manager
        .cancel_job_by_id(cancelled, false, false)
        .await
        .expect("cancel");
    manager.pause_queue("billing").await.expect("pause");
    db.app
        .defer_periodic_jobs(chrono::Utc::now())
        .await
        .expect("a periodic tick");
    shown
}

/// Writes the pictures of `docs/dashboard.md` to `docs/screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots/: run with `-- --ignored screenshots`"]
async fn screenshots_for_the_docs() -> anyhow::Result<()> {
    let db = Db::with_app(|app| {
        app.task::<DailyReport>()
            .periodic(Periodic::new::<DailyReport>("0 6 * * *"))
            .periodic_max_delay(Duration::from_secs(2 * 86_400))
    })
    .await;
    let failed = fill_for_screenshots(&db).await;
    let dashboard = Dashboard::open(db, DashboardConfig::new()).await?;
    let session = &dashboard.session;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    for (name, path, ready) in [
        ("overview", "/".to_owned(), "[data-testid=throughput-chart]"),
        ("jobs", "/jobs".to_owned(), "[data-testid=jobs]"),
        (
            "job-failed",
            format!("/jobs/{failed}"),
            "[data-testid=job-errors]",
        ),
        ("queues", "/queues".to_owned(), "[data-testid=queues]"),
        ("workers", "/workers".to_owned(), "[data-testid=workers]"),
        (
            "periodic",
            "/periodic".to_owned(),
            "[data-testid=schedules]",
        ),
    ] {
        dashboard.goto(&path).await?;
        session.wait_for(ready).await?;
        if name == "overview" {
            // The throughput sampler reads recent events once started: wait for the chart.
            wait_until(
                session,
                "the throughput read",
                "return !document.body.innerText.includes('reading recent events')",
                LIVE_TIMEOUT,
            )
            .await?;
        }
        session.screenshot(dir.join(format!("{name}.png"))).await?;
    }
    dashboard.close().await
}
