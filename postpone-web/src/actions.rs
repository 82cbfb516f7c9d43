//! The actions: `POST /jobs/{id}/{retry|cancel|abort|delete}`, `POST /jobs/bulk` (ids and
//! an action), `POST /queues/{name}/{pause|resume}`. Each goes through `JobManager`.
//!
//! Checks, in order: read-only (403), the CSRF token (403; nothing changed), the
//! confirmation (without `confirmed=1`, a page asking for it, with a form that confirms),
//! then the action. Its page says what happened, or why nothing was done ("nothing done:
//! job 42 is todo") with 409 when the job was not in a state for it (another user or
//! worker got there first).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use postpone::{Error, JobStatus, RetryDecision};

use crate::auth::Base;
use crate::pages::urlencode;
use crate::views::{self, csrf_field};
use crate::{Shared, State as DashboardState};

/// What one action did to one job.
enum Outcome {
    Done(String),
    Nothing(String),
    NotFound(String),
}

#[derive(Clone, Copy)]
enum Action {
    Retry,
    Cancel,
    Abort,
    Delete,
}

impl Action {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "retry" => Some(Self::Retry),
            "cancel" => Some(Self::Cancel),
            "abort" => Some(Self::Abort),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Cancel => "cancel",
            Self::Abort => "abort",
            Self::Delete => "delete",
        }
    }
}

/// The form's fields.
struct Form {
    csrf: Option<String>,
    confirmed: bool,
    action: Option<String>,
    ids: Vec<String>,
}

fn form(body: &[u8]) -> Form {
    let mut form = Form {
        csrf: None,
        confirmed: false,
        action: None,
        ids: Vec::new(),
    };
    for (key, value) in form_urlencoded::parse(body) {
        match key.as_ref() {
            "csrf" => form.csrf = Some(value.into_owned()),
            "confirmed" => form.confirmed = value == "1",
            "action" => form.action = Some(value.into_owned()),
            "ids" => form.ids.push(value.into_owned()),
            _ => {}
        }
    }
    form
}

/// Read-only and CSRF checks: the refusal, if any.
fn refused(base: &Base, state: &DashboardState, form: &Form) -> Option<Response> {
    if state.config.read_only() {
        return Some(views::message(
            base,
            state,
            StatusCode::FORBIDDEN,
            "Read-only",
            &["this dashboard is read-only: actions are off, nothing was changed".to_owned()],
            Some(("./", "Overview")),
        ));
    }
    if !state.secrets.csrf_ok(form.csrf.as_deref()) {
        return Some(views::message(
            base,
            state,
            StatusCode::FORBIDDEN,
            "Forbidden",
            &[
                "missing or wrong CSRF token: nothing was changed; reload the page and try again"
                    .to_owned(),
            ],
            Some(("./", "Overview")),
        ));
    }
    None
}

/// The page asking to confirm `question`, with a form posting the same fields again.
fn confirm(
    base: &Base,
    state: &DashboardState,
    href: &str,
    question: &str,
    form: &Form,
) -> Response {
    let body = html! {
        h1 { "Confirm" }
        p data-testid="confirm-question" { (question) }
        form method="post" action=(href) {
            (csrf_field(state))
            input type="hidden" name="confirmed" value="1";
            @if let Some(action) = &form.action { input type="hidden" name="action" value=(action); }
            @for id in &form.ids { input type="hidden" name="ids" value=(id); }
            button type="submit" id="confirm" data-testid="confirm" { "Yes, do it" }
            " " a href="./" { "No, go back" }
        }
    };
    views::page(base, state, "Confirm", "", &body).into_response()
}

/// Job `id`'s status, or the outcome that says it is gone.
async fn status_of(
    manager: &postpone::JobManager,
    id: i64,
) -> Result<Result<JobStatus, Outcome>, Error> {
    match manager.get_job(id).await {
        Ok(job) => Ok(Ok(job.status)),
        Err(Error::JobNotFound { .. }) => Ok(Err(Outcome::NotFound(format!(
            "nothing done: there is no job {id}"
        )))),
        Err(error) => Err(error),
    }
}

/// Does `action` to job `id`, saying what happened.
async fn act(state: &DashboardState, id: i64, action: Action) -> Result<Outcome, Error> {
    let manager = &state.manager;
    let before = match status_of(manager, id).await? {
        Ok(status) => status,
        Err(gone) => return Ok(gone),
    };
    let nothing = |status: JobStatus, rule: &str| {
        Outcome::Nothing(format!("nothing done: job {id} is {status}: {rule}"))
    };
    let done = match action {
        Action::Retry => {
            if before != JobStatus::Failed {
                return Ok(nothing(before, "only failed jobs are retried here"));
            }
            // Still failed when the database retries it, or nothing is done: another
            // user's retry (and a worker's claim) in between never makes it run twice.
            match manager.retry_failed_job(id, RetryDecision::default()).await {
                Ok(done) => done,
                Err(Error::AlreadyEnqueued { queueing_lock }) => {
                    return Ok(Outcome::Nothing(format!(
                        "nothing done: job {id} stays failed: a waiting job holds its queueing lock {queueing_lock:?}"
                    )));
                }
                Err(error) => return Err(error),
            }
        }
        Action::Cancel => manager.cancel_job_by_id(id, false, false).await?,
        Action::Abort => manager.cancel_job_by_id(id, true, false).await?,
        Action::Delete => manager.cancel_job_by_id(id, false, true).await?,
    };
    if !done {
        let now = match status_of(manager, id).await? {
            Ok(status) => status,
            Err(gone) => return Ok(gone),
        };
        let rule = match action {
            Action::Retry => "only failed jobs are retried here",
            Action::Cancel => "only waiting (todo) jobs can be cancelled",
            Action::Abort => "only waiting or running jobs can be aborted",
            Action::Delete => {
                "only waiting (todo) jobs can be deleted; finished ones go with delete_old_jobs"
            }
        };
        return Ok(nothing(now, rule));
    }
    Ok(Outcome::Done(match (action, before) {
        (Action::Retry, _) => format!("job {id} retried: it is todo again"),
        (Action::Cancel, _) => format!("job {id} cancelled"),
        (Action::Abort, JobStatus::Doing) => {
            format!("abort requested for job {id}: its worker stops it")
        }
        (Action::Abort, _) => format!("job {id} aborted before it started (cancelled)"),
        (Action::Delete, _) => format!("job {id} deleted"),
    }))
}

/// `POST /jobs/{id}/{action}`.
pub(crate) async fn job(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let form = form(&body);
    if let Some(refusal) = refused(&base, &state, &form) {
        return refusal;
    }
    let Some(action) = Action::parse(&action) else {
        return views::message(
            &base,
            &state,
            StatusCode::NOT_FOUND,
            "Not found",
            &[format!(
                "no action {action:?}: retry, cancel, abort or delete"
            )],
            None,
        );
    };
    let Ok(id) = id.parse::<i64>() else {
        return views::job_not_found(&base, &state, format!("nothing done: no job {id:?}"));
    };
    let href = format!("jobs/{id}/{}", action.verb());
    if !form.confirmed {
        return confirm(
            &base,
            &state,
            &href,
            &format!("{} job {id}?", capitalised(action.verb())),
            &form,
        );
    }
    let back = format!("jobs/{id}");
    match act(&state, id, action).await {
        Ok(Outcome::Done(line)) => {
            tracing::info!(job = id, action = action.verb(), "dashboard action");
            views::message(
                &base,
                &state,
                StatusCode::OK,
                "Done",
                &[line],
                Some((&back, "Back to the job")),
            )
        }
        Ok(Outcome::Nothing(line)) => views::message(
            &base,
            &state,
            StatusCode::CONFLICT,
            "Nothing done",
            &[line],
            Some((&back, "Back to the job")),
        ),
        Ok(Outcome::NotFound(line)) => views::message(
            &base,
            &state,
            StatusCode::NOT_FOUND,
            "Job not found",
            &[line],
            Some(("jobs", "Jobs")),
        ),
        Err(error) => crate::pages::failure(&base, &state, &error),
    }
}

/// `POST /jobs/bulk`: one action on the selected jobs, each job's outcome on its line.
pub(crate) async fn bulk(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
    body: axum::body::Bytes,
) -> Response {
    let form = form(&body);
    if let Some(refusal) = refused(&base, &state, &form) {
        return refusal;
    }
    let Some(action) = form.action.as_deref().and_then(Action::parse) else {
        return views::message(
            &base,
            &state,
            StatusCode::BAD_REQUEST,
            "Not valid",
            &["choose an action: retry, cancel, abort or delete".to_owned()],
            Some(("jobs", "Jobs")),
        );
    };
    let mut ids = Vec::new();
    for id in &form.ids {
        match id.parse::<i64>() {
            Ok(id) => ids.push(id),
            Err(_) => {
                return views::message(
                    &base,
                    &state,
                    StatusCode::BAD_REQUEST,
                    "Not valid",
                    &[format!("nothing done: {id:?} is not a job id")],
                    Some(("jobs", "Jobs")),
                );
            }
        }
    }
    if ids.is_empty() {
        return views::message(
            &base,
            &state,
            StatusCode::BAD_REQUEST,
            "Nothing selected",
            &["nothing done: select jobs first".to_owned()],
            Some(("jobs", "Jobs")),
        );
    }
    if !form.confirmed {
        let question = format!(
            "{} {} jobs ({})?",
            capitalised(action.verb()),
            ids.len(),
            ids.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return confirm(&base, &state, "jobs/bulk", &question, &form);
    }
    let mut lines = Vec::new();
    let mut any_done = false;
    for id in ids {
        match act(&state, id, action).await {
            Ok(Outcome::Done(line)) => {
                any_done = true;
                lines.push(line);
            }
            Ok(Outcome::Nothing(line) | Outcome::NotFound(line)) => lines.push(line),
            Err(error) => return crate::pages::failure(&base, &state, &error),
        }
    }
    let status = if any_done {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    views::message(
        &base,
        &state,
        status,
        if any_done { "Done" } else { "Nothing done" },
        &lines,
        Some(("jobs", "Back to the jobs")),
    )
}

/// `POST /queues/{name}/{pause|resume}`.
pub(crate) async fn queue(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
    Path((name, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let form = form(&body);
    if let Some(refusal) = refused(&base, &state, &form) {
        return refusal;
    }
    let pause = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => {
            return views::message(
                &base,
                &state,
                StatusCode::NOT_FOUND,
                "Not found",
                &[format!("no action {action:?}: pause or resume")],
                None,
            );
        }
    };
    let href = format!("queues/{}/{action}", urlencode(&name));
    if !form.confirmed {
        return confirm(
            &base,
            &state,
            &href,
            &format!("{} queue {name}?", capitalised(&action)),
            &form,
        );
    }
    let result = if pause {
        state.manager.pause_queue(&name).await
    } else {
        state.manager.resume_queue(&name).await
    };
    match result {
        Ok(true) => views::message(
            &base,
            &state,
            StatusCode::OK,
            "Done",
            &[format!(
                "queue {name} {}",
                if pause {
                    "paused: Postpone workers take none of its jobs until it is resumed"
                } else {
                    "resumed"
                }
            )],
            Some(("queues", "Back to the queues")),
        ),
        Ok(false) => views::message(
            &base,
            &state,
            StatusCode::CONFLICT,
            "Nothing done",
            &[format!(
                "nothing done: queue {name} is {}",
                if pause {
                    "paused already"
                } else {
                    "not paused"
                }
            )],
            Some(("queues", "Back to the queues")),
        ),
        Err(error) => crate::pages::failure(&base, &state, &error),
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}
