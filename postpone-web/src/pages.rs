//! The pages a user can bookmark: `/` (overview), `/jobs` (filters in the query string),
//! `/jobs/{id}`, `/queues`, `/workers`, `/periodic`. Each reads through `JobManager` with
//! bounded reads (see `postpone::store::inspect`); regions marked `data-live` refresh
//! themselves.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{Markup, html};
use postpone::manager::{
    EstimatedCounts, JobPage, PageCursor, QueueState, STALLED_WORKER_TIMEOUT_DEFAULT,
};
use postpone::{Error, Job, JobStatus};

use crate::auth::Base;
use crate::filters::{self, FIELDS, JobsQuery};
use crate::views::{self, action_button, age, capped, csrf_field, thousands, time};
use crate::{Shared, State as DashboardState};

/// Waiting and running jobs are counted in one pass over at most this many open jobs.
pub(crate) const COUNT_CAP: i64 = 100_000;
/// Finished jobs are counted while the table has at most this many pages, sampled beyond.
pub(crate) const SAMPLE_PAGES: i64 = 1_000;
/// Events shown on a job's page, at most.
const EVENTS_SHOWN: i64 = 500;
/// Held locks shown, at most.
const LOCKS_SHOWN: i64 = 200;
/// Minutes of the throughput chart.
const CHART_MINUTES: usize = 15;
/// The statuses of the overview's columns, after todo and doing.
const FINISHED: [JobStatus; 4] = [
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Cancelled,
    JobStatus::Aborted,
];

/// A failed read as a page: a bad input says so (400), anything else is the database's
/// (503, logged).
pub(crate) fn failure(base: &Base, state: &DashboardState, error: &Error) -> Response {
    if let Error::InvalidInput(message) = error {
        return views::message(
            base,
            state,
            StatusCode::BAD_REQUEST,
            "Not valid",
            std::slice::from_ref(message),
            None,
        );
    }
    tracing::warn!(%error, "dashboard: a read failed");
    views::message(
        base,
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Database error",
        &[format!("the database did not answer: {error}")],
        None,
    )
}

/// Anything else: 404.
pub(crate) async fn not_found(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
) -> Response {
    views::message(
        &base,
        &state,
        StatusCode::NOT_FOUND,
        "Not found",
        &["no such page".to_owned()],
        Some(("./", "Overview")),
    )
}

fn queue_table(
    state: &DashboardState,
    queues: &[QueueState],
    counts: &EstimatedCounts,
    actions: bool,
) -> Markup {
    let approx = if counts.exact { "" } else { "≈" };
    html! {
        table #queues data-testid="queues" {
            thead { tr {
                th { "queue" } th.n { "todo" } th.n { "doing" }
                @for status in FINISHED { th.n { (status.as_str()) } }
                th { "oldest runnable" } th { "paused" }
                @if actions { th { "" } }
            } }
            tbody {
                @for queue in queues {
                    @let per = counts.counts.iter().find(|c| c.name == queue.name);
                    tr data-queue=(queue.name) {
                        td { a href={ "jobs?queue=" (urlencode(&queue.name)) } { (queue.name) } }
                        td.n data-testid={ "count-" (queue.name) "-todo" } { (capped(queue.todo, queue.open_capped)) }
                        td.n data-testid={ "count-" (queue.name) "-doing" } { (capped(queue.doing, queue.open_capped)) }
                        @for status in FINISHED {
                            td.n data-testid={ "count-" (queue.name) "-" (status.as_str()) } {
                                (approx) (thousands(per.map_or(0, |c| c.count(status))))
                            }
                        }
                        td data-testid={ "oldest-" (queue.name) } {
                            @if let Some(oldest) = &queue.oldest_runnable {
                                a href={ "jobs/" (oldest.job_id) } { "#" (oldest.job_id) }
                                @if let Some(seconds) = oldest.age_seconds { " waiting " (age(seconds)) }
                            }
                        }
                        td { @if let Some(at) = queue.paused_at { "since " (time(at)) } }
                        @if actions {
                            td {
                                @if queue.paused_at.is_some() {
                                    (action_button(state, "resume", &format!("queues/{}/resume", urlencode(&queue.name)), "Resume", &format!("Resume queue {}?", queue.name)))
                                } @else {
                                    (action_button(state, "pause", &format!("queues/{}/pause", urlencode(&queue.name)), "Pause", &format!("Pause queue {}? Postpone workers stop taking its jobs; Python workers do not know about pauses.", queue.name)))
                                }
                            }
                        }
                    }
                }
            }
        }
        p.estimate {
            "todo and doing: counted exactly while all queues hold at most " (thousands(COUNT_CAP)) " open jobs; beyond, \"+\" marks lower bounds. "
            @if counts.exact { "Finished jobs: counted." } @else { "Finished jobs: ≈ estimated from a sample of the table's pages." }
        }
    }
}

/// Path segments and query values are percent-encoded where built from data.
pub(crate) fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `GET /`.
pub(crate) async fn overview(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
) -> Response {
    state.throughput.ensure_started(&state.manager);
    let manager = &state.manager;
    let (queues, counts, workers, stalled) = tokio::join!(
        manager.queue_overview(COUNT_CAP),
        manager.estimate_job_counts(SAMPLE_PAGES),
        manager.list_workers(),
        manager.list_stalled_jobs(STALLED_WORKER_TIMEOUT_DEFAULT, None, None),
    );
    let (queues, counts, workers, stalled) = match (queues, counts, workers, stalled) {
        (Ok(q), Ok(c), Ok(w), Ok(s)) => (q, c, w, s),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return failure(&base, &state, &e);
        }
    };
    let (succeeded, ready) = state.throughput.last_minutes("succeeded", CHART_MINUTES);
    let (failed, _) = state.throughput.last_minutes("failed", CHART_MINUTES);
    let last_full =
        |series: &[(chrono::DateTime<Utc>, i64)]| series.iter().rev().nth(1).map_or(0, |(_, n)| *n);
    let body = html! {
        div #live-overview data-live {
            h2 { "Queues" }
            @if queues.is_empty() { p { "No queue has a job yet." } } @else { (queue_table(&state, &queues, &counts, false)) }
            h2 { "Throughput" }
            p {
                "Last full minute: "
                span data-testid="succeeded-per-minute" { (thousands(last_full(&succeeded))) } " succeeded, "
                span data-testid="failed-per-minute" { (thousands(last_full(&failed))) } " failed"
                @if !ready { " (reading recent events…)" }
            }
            (views::chart(&succeeded, &failed))
            p.hint { "Jobs ended per minute over the last " (CHART_MINUTES) " minutes: succeeded in green, failed in red." }
            h2 { "Workers" }
            (worker_table(&workers))
            h2 { "Stalled jobs" }
            @if stalled.is_empty() {
                p data-testid="stalled-none" { "None: every running job's worker sent a heartbeat in the last " (STALLED_WORKER_TIMEOUT_DEFAULT) " s." }
            } @else {
                (job_table(&state, &stalled, false))
            }
        }
    };
    views::page(&base, &state, "Overview", "Overview", &body).into_response()
}

fn worker_table(workers: &[postpone::manager::WorkerRow]) -> Markup {
    html! {
        @if workers.is_empty() {
            p data-testid="workers-none" { "No worker is registered." }
        } @else {
            table #workers data-testid="workers" {
                thead { tr { th { "worker" } th { "last heartbeat" } th.n { "running jobs" } } }
                tbody {
                    @for worker in workers {
                        @let stalled = worker.heartbeat_age_seconds > STALLED_WORKER_TIMEOUT_DEFAULT;
                        tr data-worker=(worker.id) {
                            td { a href={ "jobs?worker=" (worker.id) } { (worker.id) } }
                            td class=[stalled.then_some("stalled")] {
                                (age(worker.heartbeat_age_seconds)) " ago"
                                @if stalled { " (stalled)" }
                            }
                            td.n { (worker.running_jobs) }
                        }
                    }
                }
            }
        }
    }
}

fn job_table(state: &DashboardState, jobs: &[Job], select: bool) -> Markup {
    html! {
        table #jobs data-testid="jobs" {
            thead { tr {
                @if select { th { input type="checkbox" id="select-all" aria-label="select all"; } }
                th.n { "id" } th { "queue" } th { "task" } th { "status" } th.n { "attempts" }
                th { "lock" } th { "queueing lock" } th.n { "worker" } th { "scheduled" } th { "args" }
            } }
            tbody {
                @for job in jobs {
                    tr data-job=(job.id) data-status=(job.status.as_str()) {
                        @if select { td { input type="checkbox" name="ids" value=(job.id) aria-label={ "select job " (job.id) }; } }
                        td.n { a href={ "jobs/" (job.id) } { (job.id) } }
                        td { (job.queue_name) }
                        td { (job.task_name) }
                        td data-testid={ "status-" (job.id) } { (job.status.as_str()) }
                        td.n { (job.attempts) }
                        td { (job.lock.as_deref().unwrap_or("")) }
                        td { (job.queueing_lock.as_deref().unwrap_or("")) }
                        td.n { (job.worker_id.map(|w| w.to_string()).unwrap_or_default()) }
                        td { (job.scheduled_at.map(time).unwrap_or_default()) }
                        td { code { (preview(&job.args)) } }
                    }
                }
            }
        }
        @let _ = state;
    }
}

/// The args on one line, cut at 120 characters.
fn preview(args: &serde_json::Value) -> String {
    let text = args.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn filter_form(query: &JobsQuery) -> Markup {
    html! {
        form.filters #filters method="get" action="jobs" {
            @for (key, label) in FIELDS {
                label {
                    (label) " "
                    @if key == "status" {
                        select name="status" id="filter-status" data-testid="filter-status" {
                            option value="" { "any" }
                            @for status in postpone::JobStatus::ALL {
                                option value=(status.as_str()) selected[query.value("status") == status.as_str()] { (status.as_str()) }
                            }
                        }
                    } @else {
                        input type="text" name=(key) id={ "filter-" (key) } data-testid={ "filter-" (key) } value=(query.value(key));
                    }
                }
            }
            button type="submit" id="filter-submit" data-testid="filter-submit" { "Filter" }
            " " a href="jobs" { "clear" }
        }
    }
}

/// The older and newer links of a page (keyset: never an offset).
fn pager(query: &JobsQuery, page: &JobPage) -> Markup {
    let params = &query.params;
    let first = page.jobs.first().map(|j| j.id);
    let last = page.jobs.last().map(|j| j.id);
    let full = i64::try_from(page.jobs.len()).unwrap_or(i64::MAX) >= params.limit;
    let window_full = page.window_full(params);
    // The link onward in the page's direction: past its last job when full; past the
    // window it scanned when that was full; else none (nothing further).
    let further = |end: Option<i64>| {
        if full {
            end
        } else if window_full {
            page.scan_edge
        } else {
            None
        }
    };
    let (older, newer) = match params.cursor {
        PageCursor::Newest => (further(last), None),
        PageCursor::Before(before) => (further(last), Some(first.unwrap_or(before - 1))),
        PageCursor::After(after) => (Some(last.unwrap_or(after + 1)), further(first)),
    };
    html! {
        p.pager {
            @if let Some(newer) = newer { a #newer data-testid="newer" href=(query.link(Some(("after", newer)))) { "← newer" } " " }
            @if let Some(older) = older { a #older data-testid="older" href=(query.link(Some(("before", older)))) { "older →" } }
            @if page.jobs.is_empty() && window_full {
                " " span.hint { "No match among the " (thousands(page.scanned)) " jobs looked at; the links look further." }
            }
        }
    }
}

/// `GET /jobs`.
pub(crate) async fn jobs(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = filters::parse(raw.as_deref());
    if !query.errors.is_empty() {
        let body = html! {
            h1 { "Jobs" }
            (filter_form(&query))
            div #flash .flash.error data-testid="flash" role="status" {
                @for error in &query.errors { p { (error) } }
            }
        };
        return (
            StatusCode::BAD_REQUEST,
            views::page(&base, &state, "Jobs", "Jobs", &body),
        )
            .into_response();
    }
    let page = match state.manager.list_jobs_page(&query.params).await {
        Ok(page) => page,
        Err(error) => return failure(&base, &state, &error),
    };
    let actions = !state.config.read_only();
    let body = html! {
        h1 { "Jobs" }
        (filter_form(&query))
        form #bulk method="post" action="jobs/bulk" data-confirm="Apply this action to the selected jobs?" {
            @if actions {
                (csrf_field(&state))
                label { "Selected jobs: "
                    select name="action" id="bulk-action" data-testid="bulk-action" {
                        option value="retry" { "retry" } option value="cancel" { "cancel" }
                        option value="abort" { "abort" } option value="delete" { "delete" }
                    }
                }
                " " button type="submit" id="bulk-submit" data-testid="bulk-submit" { "Apply" }
            }
            div #live-jobs data-live {
                @if page.jobs.is_empty() { p data-testid="jobs-none" { "No job matches." } }
                @else { (job_table(&state, &page.jobs, actions)) }
                (pager(&query, &page))
            }
        }
    };
    views::page(&base, &state, "Jobs", "Jobs", &body).into_response()
}

/// `GET /jobs/{id}`.
pub(crate) async fn job(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return views::job_not_found(
            &base,
            &state,
            format!("no job {id:?}: a job id is a number"),
        );
    };
    let manager = &state.manager;
    let job = match manager.get_job(id).await {
        Ok(job) => job,
        Err(Error::JobNotFound { .. }) => {
            return views::job_not_found(
                &base,
                &state,
                format!("no job {id}: it never existed, or was deleted"),
            );
        }
        Err(error) => return failure(&base, &state, &error),
    };
    let ids = [id];
    let (events, errors, rescues, timeout, result) = match tokio::try_join!(
        manager.list_events(id, EVENTS_SHOWN),
        manager.list_job_errors(&ids),
        manager.list_rescues(&ids),
        manager.get_job_timeout(id),
        manager.get_job_result(id),
    ) {
        Ok(read) => read,
        Err(error) => return failure(&base, &state, &error),
    };
    // The stored text pretty-printed; kept as written when it is not JSON (set by hand).
    let result = result.map(|row| {
        let text = row
            .value()
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or_else(|| row.json.clone());
        (row, text)
    });
    let args = serde_json::to_string_pretty(&job.args).unwrap_or_else(|_| job.args.to_string());
    let actions = !state.config.read_only();
    let body = html! {
        h1 { "Job " (job.id) }
        div #live-job data-live {
            table.facts {
                tr { th { "status" } td data-testid="job-status" { (job.status.as_str()) } }
                tr { th { "queue" } td { a href={ "jobs?queue=" (urlencode(&job.queue_name)) } { (job.queue_name) } } }
                tr { th { "task" } td { (job.task_name) } }
                tr { th { "attempts" } td data-testid="job-attempts" { (job.attempts) } }
                tr { th { "priority" } td { (job.priority) } }
                tr { th { "lock" } td { (job.lock.as_deref().unwrap_or("")) } }
                tr { th { "queueing lock" } td { (job.queueing_lock.as_deref().unwrap_or("")) } }
                tr { th { "scheduled at" } td { (job.scheduled_at.map(time).unwrap_or_default()) } }
                tr { th { "worker" } td { (job.worker_id.map(|w| w.to_string()).unwrap_or_default()) } }
                tr { th { "abort requested" } td { (job.abort_requested) } }
                tr { th { "timeout" } td data-testid="job-timeout" { (timeout.map(|t| format!("{} s", t.as_secs_f64())).unwrap_or_else(|| "the task's or the worker's".to_owned())) } }
            }
            @if actions {
                p.actions {
                    @if job.status == JobStatus::Failed { (action_button(&state, "retry", &format!("jobs/{id}/retry"), "Retry", &format!("Retry job {id}?"))) " " }
                    @if job.status == JobStatus::Todo { (action_button(&state, "cancel", &format!("jobs/{id}/cancel"), "Cancel", &format!("Cancel job {id}?"))) " " }
                    @if matches!(job.status, JobStatus::Todo | JobStatus::Doing) { (action_button(&state, "abort", &format!("jobs/{id}/abort"), "Abort", &format!("Abort job {id}?"))) " " }
                    @if job.status == JobStatus::Todo { (action_button(&state, "delete", &format!("jobs/{id}/delete"), "Delete", &format!("Delete job {id}? This cannot be undone."))) }
                }
            }
            h2 { "Args" }
            pre data-testid="job-args" { (args) }
            @if let Some((row, text)) = &result {
                h2 { "Result" }
                p.hint { "Set by attempt " (row.attempt) " at " (time(row.finished_at)) "." }
                pre data-testid="job-result" { (text) }
            }
            h2 { "Failed attempts" }
            @if errors.is_empty() { p data-testid="errors-none" { "No recorded error (jobs run by Python workers record none)." } }
            @else {
                table #errors data-testid="job-errors" {
                    thead { tr { th.n { "attempt" } th { "when" } th.n { "worker" } th { "kind" } th { "message" } } }
                    tbody { @for e in &errors { tr {
                        td.n { (e.attempt) } td { (time(e.failed_at)) } td.n { (e.worker_id.map(|w| w.to_string()).unwrap_or_default()) }
                        td { (e.kind) } td { pre { (e.message) } }
                    } } }
                }
            }
            @if !rescues.is_empty() {
                h2 { "Rescues" }
                table #rescues data-testid="job-rescues" {
                    thead { tr { th { "when" } th.n { "dead worker" } th { "may have started" } th { "outcome" } } }
                    tbody { @for r in &rescues { tr {
                        td { (time(r.rescued_at)) } td.n { (r.worker_id.map(|w| w.to_string()).unwrap_or_default()) }
                        td { (r.started) } td { (r.outcome) }
                    } } }
                }
            }
            h2 { "Events" }
            table #events data-testid="job-events" {
                thead { tr { th.n { "#" } th { "event" } th { "at" } } }
                tbody { @for e in &events { tr data-event=(e.event_type.as_str()) {
                    td.n { (e.id) } td { (e.event_type.as_str()) } td { (time(e.at)) }
                } } }
            }
        }
    };
    views::page(&base, &state, &format!("Job {id}"), "Jobs", &body).into_response()
}

/// `GET /queues`.
pub(crate) async fn queues(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
) -> Response {
    let manager = &state.manager;
    let (queues, counts) = tokio::join!(
        manager.queue_overview(COUNT_CAP),
        manager.estimate_job_counts(SAMPLE_PAGES)
    );
    let (queues, counts) = match (queues, counts) {
        (Ok(q), Ok(c)) => (q, c),
        (Err(e), _) | (_, Err(e)) => return failure(&base, &state, &e),
    };
    let body = html! {
        h1 { "Queues" }
        div #live-queues data-live {
            @if queues.is_empty() { p { "No queue has a job yet." } }
            @else { (queue_table(&state, &queues, &counts, !state.config.read_only())) }
        }
        p.hint { "A paused queue: Postpone workers take none of its jobs until it is resumed. Python (Procrastinate) workers do not know about pauses." }
    };
    views::page(&base, &state, "Queues", "Queues", &body).into_response()
}

/// `GET /workers`.
pub(crate) async fn workers(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
) -> Response {
    let workers = match state.manager.list_workers().await {
        Ok(workers) => workers,
        Err(error) => return failure(&base, &state, &error),
    };
    let body = html! {
        h1 { "Workers" }
        div #live-workers data-live { (worker_table(&workers)) }
        p.hint { "Rows of procrastinate_workers: Postpone and Procrastinate workers alike. A worker silent for over " (STALLED_WORKER_TIMEOUT_DEFAULT) " s is stalled; the rescue hands its jobs to others." }
    };
    views::page(&base, &state, "Workers", "Workers", &body).into_response()
}

/// `GET /periodic`.
pub(crate) async fn periodic(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
) -> Response {
    let manager = &state.manager;
    let (defers, locked) = tokio::join!(
        manager.list_periodic_defers(),
        manager.list_locked_jobs(LOCKS_SHOWN)
    );
    let (defers, locked) = match (defers, locked) {
        (Ok(d), Ok(l)) => (d, l),
        (Err(e), _) | (_, Err(e)) => return failure(&base, &state, &e),
    };
    let now = Utc::now();
    let tick_time = |ts: Option<i64>| {
        ts.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map(time)
            .unwrap_or_default()
    };
    let body = html! {
        h1 { "Periodic tasks" }
        div #live-periodic data-live {
            @if !state.periodic.is_empty() {
                h2 { "Schedules of this app" }
                table #schedules data-testid="schedules" {
                    thead { tr { th { "task" } th { "periodic id" } th { "cron" } th { "time zone" } th { "next tick" } th { "last deferred tick" } } }
                    tbody { @for p in &state.periodic {
                        @let last = defers.iter().find(|d| d.task_name == p.task_name() && d.periodic_id == p.periodic_id());
                        tr {
                            td { (p.task_name()) } td { (p.periodic_id()) } td { code { (p.cron()) } }
                            td { (p.schedule().map_or("UTC", |s| s.timezone())) }
                            td data-testid="next-tick" { (p.schedule().and_then(|s| s.next_after(now)).map(time).unwrap_or_default()) }
                            td { @if let Some(d) = last { (tick_time(d.defer_timestamp)) @if let Some(job) = d.job_id { " " a href={ "jobs/" (job) } { "#" (job) } } } }
                        }
                    } }
                }
            }
            h2 { "Deferred ticks" }
            @if defers.is_empty() { p { "No periodic task has deferred a job in this database." } }
            @else {
                table #ticks data-testid="periodic-defers" {
                    thead { tr { th { "task" } th { "periodic id" } th { "last tick" } th { "job" } } }
                    tbody { @for d in &defers { tr {
                        td { (d.task_name) } td { (d.periodic_id) } td { (tick_time(d.defer_timestamp)) }
                        td { @if let Some(job) = d.job_id { a href={ "jobs/" (job) } { "#" (job) } } }
                    } } }
                }
            }
            @if state.periodic.is_empty() { p.hint { "Schedules and next ticks show when the dashboard is built from an App with periodic tasks." } }
            h2 { "Locks in use" }
            @if locked.is_empty() { p data-testid="locks-none" { "No running job holds a lock." } }
            @else {
                table #locks data-testid="locks" {
                    thead { tr { th { "lock" } th.n { "job" } th { "queue" } th { "task" } th.n { "worker" } } }
                    tbody { @for job in &locked { tr {
                        td { (job.lock.as_deref().unwrap_or("")) } td.n { a href={ "jobs/" (job.id) } { (job.id) } }
                        td { (job.queue_name) } td { (job.task_name) } td.n { (job.worker_id.map(|w| w.to_string()).unwrap_or_default()) }
                    } } }
                }
                @if i64::try_from(locked.len()).unwrap_or(i64::MAX) >= LOCKS_SHOWN { p.hint { "The first " (LOCKS_SHOWN) " locks, by name." } }
            }
        }
    };
    views::page(&base, &state, "Periodic", "Periodic", &body).into_response()
}
