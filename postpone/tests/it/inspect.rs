//! The dashboard's reads (`JobManager::list_jobs_page`, `queue_overview`, ...) on
//! PostgreSQL and in memory: one scenario on both stores, what it saw must be equal, and a
//! few results are checked outright.

use std::sync::Arc;
use std::time::Duration;

use postpone::manager::{JobPageParams, PageCursor};
use postpone::store::{DeferJobParams, FetchJobsParams, FinishJobParams};
use postpone::{App, JobFilter, JobStatus, MemoryStore};

use crate::harness::schema_db;

fn spec(queue: &str, lock: Option<&str>, args: serde_json::Value) -> DeferJobParams {
    DeferJobParams {
        queue_name: queue.to_owned(),
        task_name: "tests.record".to_owned(),
        priority: 0,
        lock: lock.map(str::to_owned),
        queueing_lock: None,
        args,
        scheduled_at: None,
        timeout: None,
        trace_context: None,
        flow: Vec::new(),
    }
}

fn page(filter: JobFilter, search: Option<&str>, cursor: PageCursor) -> JobPageParams {
    JobPageParams {
        filter,
        search: search.map(str::to_owned),
        cursor,
        limit: 2,
        scan_limit: 3,
    }
}

async fn scenario(app: &App) -> Vec<String> {
    let store = app.store();
    let manager = app.job_manager();
    let mut seen = Vec::new();
    let mut jobs = vec![
        spec("a", Some("L1"), serde_json::json!({"label": "one"})),
        spec("a", None, serde_json::json!({"label": "<script>two"})),
        spec(
            "b",
            Some("L2"),
            serde_json::json!({"n": 3, "label": "three"}),
        ),
        spec("b", None, serde_json::json!({"label": "four"})),
        spec("c", None, serde_json::json!({"label": "five"})),
        spec("a", None, serde_json::json!({"label": "six"})),
    ];
    jobs[4].timeout = Some(Duration::from_secs(7));
    jobs[5].scheduled_at = Some(chrono::Utc::now() + chrono::TimeDelta::hours(1));
    store.defer_jobs(&jobs).await.expect("defer");
    let worker = store.register_worker().await.expect("register");
    // Jobs 3 (lock L2) and 4 of queue b run; job 1 runs and fails.
    store
        .fetch_jobs(&FetchJobsParams::new(Some(&["b".to_owned()]), worker, 5))
        .await
        .expect("fetch b");
    store
        .fetch_jobs(&FetchJobsParams::new(Some(&["a".to_owned()]), worker, 1))
        .await
        .expect("fetch a");
    store
        .finish_jobs(&[FinishJobParams {
            id: 1,
            status: JobStatus::Failed,
            delete_job: false,
            error: None,
            result: None,
        }])
        .await
        .expect("finish");
    manager.pause_queue("z").await.expect("pause");

    // Pages: every job once, newest first, in windows of 3, pages of 2.
    let mut cursor = PageCursor::Newest;
    loop {
        let params = page(JobFilter::default(), None, cursor);
        let got = manager.list_jobs_page(&params).await.expect("page");
        let ids: Vec<i64> = got.jobs.iter().map(|j| j.id).collect();
        seen.push(format!(
            "page {cursor:?}: {ids:?} scanned {} edge {:?}",
            got.scanned, got.scan_edge
        ));
        cursor = match ids.last() {
            Some(&last) if ids.len() == 2 => PageCursor::Before(last),
            _ if got.window_full(&params) => match got.scan_edge {
                Some(edge) => PageCursor::Before(edge),
                None => break,
            },
            _ => break,
        };
    }
    for params in [
        page(JobFilter::default(), None, PageCursor::After(1)),
        page(JobFilter::default(), None, PageCursor::After(4)),
        page(
            JobFilter {
                queue_name: Some("a".to_owned()),
                ..JobFilter::default()
            },
            None,
            PageCursor::Newest,
        ),
        page(
            JobFilter {
                status: Some(JobStatus::Doing),
                ..JobFilter::default()
            },
            None,
            PageCursor::Before(4),
        ),
        page(
            JobFilter::default(),
            Some("<script>"),
            PageCursor::Before(4),
        ),
        page(
            JobFilter::default(),
            Some(r#""n": 3"#),
            PageCursor::Before(4),
        ),
        page(
            JobFilter {
                id: Some(1),
                ..JobFilter::default()
            },
            None,
            PageCursor::Newest,
        ),
    ] {
        let got = manager.list_jobs_page(&params).await.expect("page");
        let ids: Vec<(i64, JobStatus)> = got.jobs.iter().map(|j| (j.id, j.status)).collect();
        seen.push(format!(
            "{:?} {:?} {:?}: {ids:?} scanned {} edge {:?}",
            params.filter, params.search, params.cursor, got.scanned, got.scan_edge
        ));
    }
    assert!(seen.contains(&"page Newest: [6, 5] scanned 3 edge Some(4)".to_owned()));
    assert!(
        seen.iter()
            .any(|s| s.contains(r#"Some("<script>") Before(4): [(2, Todo)]"#))
    );
    assert!(
        seen.iter()
            .any(|s| s.contains(r#"Before(4): [(3, Doing)]"#))
    );

    let capped = manager.queue_overview(2).await.expect("overview");
    seen.push(format!(
        "capped at 2: {:?} open {}",
        capped.iter().map(|q| q.open_capped).collect::<Vec<_>>(),
        capped.iter().map(|q| q.todo + q.doing).sum::<i64>()
    ));
    let overview = manager.queue_overview(1000).await.expect("overview");
    for queue in &overview {
        seen.push(format!(
            "queue {} todo {} doing {} capped {} oldest {:?} paused {}",
            queue.name,
            queue.todo,
            queue.doing,
            queue.open_capped,
            queue.oldest_runnable.as_ref().map(|o| (
                o.job_id,
                o.since.is_some(),
                o.age_seconds.is_some_and(|s| (0.0..600.0).contains(&s))
            )),
            queue.paused_at.is_some()
        ));
    }
    assert_eq!(overview.len(), 4, "a, b, c and the paused z: {overview:?}");
    let counts = manager.estimate_job_counts(1000).await.expect("counts");
    seen.push(format!("counts {counts:?}"));
    assert!(counts.exact);

    let workers = manager.list_workers().await.expect("workers");
    seen.push(format!(
        "workers {:?}",
        workers
            .iter()
            .map(|w| (w.id, w.running_jobs, w.heartbeat_age_seconds < 600.0))
            .collect::<Vec<_>>()
    ));
    let events = manager.list_events(1, 10).await.expect("events");
    seen.push(format!(
        "events {:?}",
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>()
    ));
    let last = manager.last_event_id().await.expect("last event");
    seen.push(format!("last event {last:?}"));
    let tally = manager.events_since(2, 100).await.expect("tally");
    let mut per_type: Vec<(String, i64)> = tally
        .counts
        .iter()
        .map(|c| (c.event_type.clone(), c.count))
        .collect();
    per_type.sort();
    seen.push(format!("since 2: last {:?} {per_type:?}", tally.last_id));
    let limited = manager.events_since(0, 3).await.expect("tally");
    seen.push(format!("first 3: last {:?}", limited.last_id));
    seen.push(format!(
        "locked {:?}",
        manager
            .list_locked_jobs(10)
            .await
            .expect("locks")
            .iter()
            .map(|j| (j.id, j.lock.clone()))
            .collect::<Vec<_>>()
    ));
    seen.push(format!(
        "timeouts {:?} {:?}",
        manager.get_job_timeout(5).await.expect("timeout"),
        manager.get_job_timeout(4).await.expect("timeout")
    ));
    let tick = spec("p", None, serde_json::json!({"timestamp": 60}));
    store
        .defer_periodic_job(&tick, "every", 60)
        .await
        .expect("tick");
    store
        .defer_periodic_job(&tick, "every", 120)
        .await
        .expect("tick");
    seen.push(format!(
        "periodic {:?}",
        manager.list_periodic_defers().await.expect("periodic")
    ));
    seen.push(format!(
        "bad limit: {}",
        manager
            .list_jobs_page(&JobPageParams {
                limit: 0,
                ..page(JobFilter::default(), None, PageCursor::Newest)
            })
            .await
            .is_err()
    ));
    seen
}

#[tokio::test]
async fn the_dashboards_reads_are_the_same_on_both_stores() {
    let db = schema_db().await;
    let pg_app = App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .build()
        .expect("app");
    let pg = scenario(&pg_app).await;
    let memory_app = App::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .expect("app");
    let memory = scenario(&memory_app).await;
    assert_eq!(memory, pg, "the in-memory store differs from PostgreSQL");
}
