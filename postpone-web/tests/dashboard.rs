//! The dashboard against real PostgreSQL: each test gets a fresh database (from
//! `postpone-testkit`'s server, the schema applied) and drives the router in process
//! (`tower::ServiceExt::oneshot`), or over real HTTP for `serve_on`.
//!
//! Run with: `cargo test -p postpone-web` (a server is found or started; without one the
//! tests fail, they never skip).

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::Db;
use http_body_util::BodyExt;
use postpone::JobStatus;
use postpone::store::{AttemptResult, FinishJobParams};
use postpone_web::DashboardConfig;
use tower::ServiceExt;

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(router: &Router, path: &str) -> (StatusCode, String) {
    send(
        router,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await
}

async fn post(router: &Router, path: &str, form: &str) -> (StatusCode, String) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .expect("request");
    send(router, request).await
}

/// The value of the first `attr="..."` after `marker` in `html`.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].replace("&amp;", "&"))
}

/// The CSRF token of a page's forms.
async fn csrf(router: &Router) -> String {
    let (_, html) = get(router, "/jobs").await;
    attr_after(&html, "data-testid=\"csrf\"", "value").expect("a CSRF field on /jobs")
}

/// The text of the element with this `data-testid`.
fn testid(html: &str, id: &str) -> Option<String> {
    let marker = format!("data-testid=\"{id}\"");
    let rest = &html[html.find(&marker)?..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')?;
    Some(rest[start..start + end].to_owned())
}

/// The ids of the job rows of a list page.
fn job_rows(html: &str) -> Vec<i64> {
    html.match_indices("data-job=\"")
        .filter_map(|(at, m)| {
            let rest = &html[at + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

#[tokio::test]
async fn the_overview_counts_jobs_per_queue_and_status() {
    let db = Db::new().await;
    for _ in 0..3 {
        db.defer("a", serde_json::json!({})).await;
    }
    db.defer("b", serde_json::json!({})).await;
    db.claim("a").await;
    let router = db.router(DashboardConfig::new());
    let (status, html) = get(&router, "/").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(testid(&html, "count-a-todo").as_deref(), Some("2"));
    assert_eq!(testid(&html, "count-a-doing").as_deref(), Some("1"));
    assert_eq!(testid(&html, "count-b-todo").as_deref(), Some("1"));
    assert_eq!(testid(&html, "count-b-succeeded").as_deref(), Some("0"));
    assert!(
        html.contains("data-testid=\"workers\""),
        "the claiming worker is listed"
    );
    assert!(html.contains("data-testid=\"throughput-chart\""));
}

#[tokio::test]
async fn a_filter_narrows_the_list_and_pages_walk_every_job_once() {
    let db = Db::new().await;
    let mut all = Vec::new();
    for i in 0..120 {
        all.push(
            db.defer(
                if i % 4 == 0 { "b" } else { "a" },
                serde_json::json!({"i": i}),
            )
            .await,
        );
    }
    let router = db.router(DashboardConfig::new());
    let (_, html) = get(&router, "/jobs?queue=b&status=todo").await;
    let b = job_rows(&html);
    assert_eq!(b.len(), 30);
    assert!(b.iter().all(|id| (id - all[0]) % 4 == 0), "{b:?}");

    // Older links from the newest page: every job once, newest first.
    let mut seen = Vec::new();
    let mut path = "/jobs".to_owned();
    for _ in 0..10 {
        let (status, html) = get(&router, &path).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(job_rows(&html));
        match attr_after(&html, "id=\"older\"", "href") {
            Some(href) => path = format!("/{href}"),
            None => break,
        }
    }
    let mut expected = all.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    // Newer from an older page comes back.
    let (_, html) = get(&router, &format!("/jobs?before={}", all[20])).await;
    let newer = attr_after(&html, "id=\"newer\"", "href").expect("a newer link");
    let (_, html) = get(&router, &format!("/{newer}")).await;
    assert_eq!(job_rows(&html).last(), Some(&all[20]));
}

#[tokio::test]
async fn a_failed_jobs_page_shows_its_events_and_error_and_retry_moves_it_to_todo() {
    let db = Db::new().await;
    let id = db.failed_job().await;
    let router = db.router(DashboardConfig::new());
    let (status, html) = get(&router, &format!("/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    for event in ["deferred", "started", "failed"] {
        assert!(
            html.contains(&format!("data-event=\"{event}\"")),
            "{event} in {html}"
        );
    }
    assert!(
        html.contains("the &lt;b&gt;disk&lt;/b&gt; is full"),
        "{html}"
    );
    assert!(html.contains("data-testid=\"action-retry\""));

    // Without the confirmation: a page asking for it, nothing changed.
    let token = csrf(&router).await;
    let (status, html) = post(
        &router,
        &format!("/jobs/{id}/retry"),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-testid=\"confirm\""));
    assert_eq!(db.status(id).await, JobStatus::Failed);

    let (status, html) = post(
        &router,
        &format!("/jobs/{id}/retry"),
        &format!("csrf={token}&confirmed=1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(testid(&html, "flash").is_some());
    assert!(html.contains(&format!("job {id} retried")));
    assert_eq!(db.status(id).await, JobStatus::Todo);

    // Again: stale, nothing done.
    let (status, html) = post(
        &router,
        &format!("/jobs/{id}/retry"),
        &format!("csrf={token}&confirmed=1"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        html.contains(&format!("nothing done: job {id} is todo")),
        "{html}"
    );
    assert_eq!(db.status(id).await, JobStatus::Todo);
}

#[tokio::test]
async fn script_in_args_is_shown_as_text() {
    let db = Db::new().await;
    let id = db
        .defer(
            "default",
            serde_json::json!({"x": "<script>alert(1)</script>"}),
        )
        .await;
    let router = db.router(DashboardConfig::new());
    for path in [format!("/jobs/{id}"), "/jobs".to_owned()] {
        let (_, html) = get(&router, &path).await;
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_jobs_result_is_shown_pretty_and_as_text() {
    let db = Db::new().await;
    let id = db.defer("default", serde_json::json!({})).await;
    let (claimed, worker) = db.claim("default").await;
    assert_eq!(claimed, id);
    db.app
        .store()
        .finish_jobs(&[FinishJobParams {
            id,
            status: JobStatus::Succeeded,
            delete_job: false,
            error: None,
            result: Some(AttemptResult {
                attempt: 1,
                worker_id: Some(worker),
                json: r#"{"total":42,"note":"<img src=x onerror=alert(1)>"}"#.to_owned(),
            }),
        }])
        .await
        .expect("finish");
    let router = db.router(DashboardConfig::new());
    let (status, html) = get(&router, &format!("/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-testid=\"job-result\""), "{html}");
    assert!(
        html.contains("&quot;total&quot;: 42"),
        "pretty-printed: {html}"
    );
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    // A job without a result has no such section.
    let other = db.defer("default", serde_json::json!({})).await;
    let (_, html) = get(&router, &format!("/jobs/{other}")).await;
    assert!(!html.contains("job-result"), "{html}");
}

#[tokio::test]
async fn an_action_without_the_right_csrf_token_is_403_and_changes_nothing() {
    let db = Db::new().await;
    let id = db.defer("default", serde_json::json!({})).await;
    let router = db.router(DashboardConfig::new());
    for form in ["confirmed=1", "csrf=0123&confirmed=1", "csrf=&confirmed=1"] {
        let (status, html) = post(&router, &format!("/jobs/{id}/cancel"), form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form}");
        assert!(html.contains("CSRF"));
    }
    let (status, _) = post(&router, "/queues/default/pause", "confirmed=1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(db.status(id).await, JobStatus::Todo);
    assert!(
        db.app
            .job_manager()
            .list_queue_pauses()
            .await
            .expect("pauses")
            .is_empty()
    );
}

#[tokio::test]
async fn read_only_hides_and_refuses_actions() {
    let db = Db::new().await;
    let id = db.failed_job().await;
    let writable = db.router(DashboardConfig::new());
    let token = csrf(&writable).await;
    let router = db.router(DashboardConfig::new().with_read_only(true));
    let (_, html) = get(&router, &format!("/jobs/{id}")).await;
    assert!(!html.contains("action-retry"));
    assert!(html.contains("data-testid=\"read-only\""));
    let (status, _) = post(
        &router,
        &format!("/jobs/{id}/retry"),
        &format!("csrf={token}&confirmed=1"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(db.status(id).await, JobStatus::Failed);
}

#[tokio::test]
async fn missing_jobs_and_pages_are_404_pages() {
    let db = Db::new().await;
    let router = db.router(DashboardConfig::new());
    for path in ["/jobs/424242", "/jobs/abc", "/nowhere"] {
        let (status, html) = get(&router, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(testid(&html, "flash").is_some(), "{path}: {html}");
    }
    let token = csrf(&router).await;
    let (status, html) = post(
        &router,
        "/jobs/424242/cancel",
        &format!("csrf={token}&confirmed=1"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("there is no job 424242"));
}

#[tokio::test]
async fn bad_filter_values_are_a_message() {
    let db = Db::new().await;
    let router = db.router(DashboardConfig::new());
    for (query, words) in [
        ("status=bogus", "status \"bogus\" is not a job status"),
        ("id=abc", "id \"abc\" is not a number"),
        ("worker=-1", "worker \"-1\" is not a number"),
        ("before=x", "before \"x\" is not a number"),
    ] {
        let (status, html) = get(&router, &format!("/jobs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            html.contains(&words.replace('"', "&quot;")),
            "{query}: {html}"
        );
    }
}

#[tokio::test]
async fn bulk_actions_and_queue_pauses_say_what_they_did() {
    let db = Db::new().await;
    let failed = db.failed_job().await;
    let a = db.defer("default", serde_json::json!({})).await;
    let b = db.defer("default", serde_json::json!({})).await;
    let router = db.router(DashboardConfig::new());
    let token = csrf(&router).await;
    let form = format!("csrf={token}&action=cancel&ids={a}&ids={b}&ids={failed}&confirmed=1");
    let (status, html) = post(&router, "/jobs/bulk", &form).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&format!("job {a} cancelled")));
    assert!(html.contains(&format!("nothing done: job {failed} is failed")));
    assert_eq!(db.status(b).await, JobStatus::Cancelled);

    let (status, html) = post(
        &router,
        "/queues/default/pause",
        &format!("csrf={token}&confirmed=1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (status, html) = post(
        &router,
        "/queues/default/pause",
        &format!("csrf={token}&confirmed=1"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("nothing done: queue default is paused already"));
    let (_, html) = get(&router, "/queues").await;
    assert!(html.contains("data-testid=\"action-resume\""));
    let (status, _) = post(
        &router,
        "/queues/default/resume",
        &format!("csrf={token}&confirmed=1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let db = Db::new().await;
    let router = db.router(DashboardConfig::new().with_token("s3cret"));
    let (status, html) = get(&router, "/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("name=\"token\""), "a login form");
    let bearer = |token: &str| {
        Request::get("/jobs")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(
        send(&router, bearer("wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&router, bearer("s3cret")).await.0, StatusCode::OK);
    // The login form sets a cookie that opens the pages.
    let (status, _) = post(&router, "/login", "token=wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = router
        .clone()
        .oneshot(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("token=s3cret"))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let request = Request::get("/")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&router, request).await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let db = Db::new().await;
    db.defer("a", serde_json::json!({})).await;
    db.defer("a", serde_json::json!({})).await;
    let router = db.router(DashboardConfig::new());
    let (status, text) = get(&router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses");
    let todo = scrape
        .samples
        .iter()
        .find(|s| s.metric == "postpone_queue_todo_jobs" && s.labels.get("queue") == Some("a"))
        .expect("todo of queue a");
    assert!(matches!(todo.value, prometheus_parse::Value::Gauge(v) if (v - 2.0).abs() < 1e-9));
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "postpone_queue_oldest_runnable_age_seconds")
    );
}

#[tokio::test]
async fn it_mounts_under_a_prefix_and_serves_over_http() {
    let db = Db::new().await;
    let service = Router::new().nest("/dash", db.router(DashboardConfig::new()));
    let (status, html) = get(&service, "/dash/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<base href=\"/dash/\">"), "{html}");

    let served = db.serve(DashboardConfig::new()).await;
    let addr = served.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /workers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    served.stop().await.expect("served and stopped");
}

#[test]
fn beyond_loopback_a_token_is_required() {
    let any: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
    let error = postpone_web::check_bind(any, &DashboardConfig::new()).expect_err("refused");
    assert!(error.to_string().contains("POSTPONE_DASHBOARD_TOKEN"));
    assert!(postpone_web::check_bind(any, &DashboardConfig::new().with_token("t")).is_ok());
    let local: std::net::SocketAddr = "[::1]:8080".parse().expect("addr");
    assert!(postpone_web::check_bind(local, &DashboardConfig::new()).is_ok());
}
