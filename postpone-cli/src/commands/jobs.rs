//! The job manager on the command line (Procrastinate's `procrastinate shell` commands and
//! `JobManager`): `jobs list | stalled | delete-old`, `queues`, `tasks`, `locks`, `retry`,
//! `cancel`, `abort`; and `jobs show | result` for one job.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use postpone::RetryDecision;
use postpone::manager::{
    CountBy, DeleteOldJobsOptions, FailedAttempt, JobManager, JobResultRow, Rescue,
};
use postpone::{Job, JobFilter, JobStatus};
use serde_json::json;

use crate::flags::{
    AbortFlags, CancelFlags, CountFlags, JobsCommand, JobsDeleteOldFlags, JobsListFlags,
    JobsStalledFlags, RetryFlags,
};
use crate::output::{self, Format, Table, or_dash};
use crate::{Context, values};

pub(crate) async fn run(command: JobsCommand, context: Context) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::List(flags) => list(flags, context).await,
        JobsCommand::Show(flags) => show(flags.id, context).await,
        JobsCommand::Result(flags) => result(flags.id, context).await,
        JobsCommand::Stalled(flags) => stalled(flags, context).await,
        JobsCommand::DeleteOld(flags) => delete_old(flags, context).await,
    }
}

async fn list(flags: JobsListFlags, context: Context) -> anyhow::Result<ExitCode> {
    let filter = JobFilter {
        id: flags.id,
        queue_name: flags.queue,
        task_name: flags.task,
        status: values::parse_status(flags.status.as_deref())?,
        lock: flags.lock,
        queueing_lock: flags.queueing_lock,
        worker_id: flags.worker,
        limit: flags.limit,
    };
    if let Some(limit) = filter.limit.filter(|l| *l < 0) {
        bail!("--limit {limit} is negative: give a number of jobs >= 0");
    }
    let (app, format) = context.app()?;
    let manager = app.job_manager();
    let jobs = manager.list_jobs(&filter).await?;
    let rescues = if flags.details {
        rescues_of(&manager, &jobs).await?
    } else {
        BTreeMap::new()
    };
    print_jobs(&jobs, flags.details.then_some(&rescues), format)?;
    Ok(ExitCode::SUCCESS)
}

/// `jobs show ID`: the job, its failed attempts' errors, its rescues and its result.
async fn show(id: i64, context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    let details = JobDetails::load(&app.job_manager(), id).await?;
    if format.is_json() {
        output::print_json(&details.json()?)?;
    } else {
        output::print(&details.text())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `jobs result ID`: the job's stored result, as pretty JSON (`--json`: the stored row,
/// its value under `result`); an error line and exit 1 when there is none to print.
async fn result(id: i64, context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    let manager = app.job_manager();
    let job = manager.get_job(id).await?;
    match job.status {
        JobStatus::Succeeded => {}
        JobStatus::Todo | JobStatus::Doing | JobStatus::Aborting => bail!(
            "job {id} has no result yet: its status is {}; try again once it has ended (postpone jobs show {id})",
            job.status
        ),
        status => {
            let error = manager.list_job_errors(&[id]).await?.pop();
            match error {
                Some(error) => bail!(
                    "job {id} has no result: it ended {status} (attempt {}: {}: {})",
                    error.attempt,
                    error.kind,
                    error.message
                ),
                None => bail!("job {id} has no result: it ended {status}"),
            }
        }
    }
    let Some(row) = manager.get_job_result(id).await? else {
        bail!(
            "job {id} succeeded but stored no result: its task set none (JobContext::set_result), or a Python worker ran it (Python return values are not stored)"
        );
    };
    let value = row.value()?;
    if format.is_json() {
        let mut json = serde_json::to_value(&row)?;
        json["result"] = value;
        if let Some(object) = json.as_object_mut() {
            object.remove("json");
        }
        output::print_json(&json)?;
    } else {
        output::print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One job and what is kept beside it: `jobs show` and the shell's `show_job`.
pub(crate) struct JobDetails {
    job: Job,
    errors: Vec<FailedAttempt>,
    rescues: Vec<Rescue>,
    result: Option<JobResultRow>,
}

impl JobDetails {
    /// Reads job `id` and its errors, rescues and result.
    pub(crate) async fn load(manager: &JobManager, id: i64) -> postpone::Result<Self> {
        let job = manager.get_job(id).await?;
        let errors = manager.list_job_errors(&[id]).await?;
        let rescues = manager.list_rescues(&[id]).await?;
        let result = manager.get_job_result(id).await?;
        Ok(Self {
            job,
            errors,
            rescues,
            result,
        })
    }

    /// As `jobs show --json` prints it: its row, `errors`, `rescues` and `result` (the
    /// value, or null).
    pub(crate) fn json(&self) -> anyhow::Result<serde_json::Value> {
        let mut value = job_json(&self.job, &self.errors, &self.rescues)?;
        value["result"] = match &self.result {
            Some(row) => row.value()?,
            None => serde_json::Value::Null,
        };
        Ok(value)
    }

    /// For a person: [`job_text`], then the result.
    pub(crate) fn text(&self) -> String {
        let mut text = job_text(&self.job, &self.errors, &self.rescues);
        match &self.result {
            Some(row) => text.push_str(&format!(
                "\nresult (attempt {}): {}\n",
                row.attempt, row.json
            )),
            None => text.push_str("\nresult: none stored\n"),
        }
        text
    }
}

/// A job as `jobs show --json` prints it: its row, `errors` and `rescues`.
fn job_json(
    job: &Job,
    errors: &[FailedAttempt],
    rescues: &[Rescue],
) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(job)?;
    value["errors"] = serde_json::to_value(errors)?;
    value["rescues"] = serde_json::to_value(rescues)?;
    Ok(value)
}

/// A job for a person: its fields, then why each attempt that did not succeed ended, then
/// its rescues.
fn job_text(job: &Job, errors: &[FailedAttempt], rescues: &[Rescue]) -> String {
    let time =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut text = String::new();
    for (name, value) in [
        ("id", job.id.to_string()),
        ("task", job.task_name.clone()),
        ("queue", job.queue_name.clone()),
        ("status", job.status.to_string()),
        ("attempts", job.attempts.to_string()),
        ("priority", job.priority.to_string()),
        ("lock", or_dash(job.lock.as_deref())),
        ("queueing_lock", or_dash(job.queueing_lock.as_deref())),
        ("scheduled_at", or_dash(job.scheduled_at.map(time))),
        ("worker", or_dash(job.worker_id)),
        ("abort_requested", job.abort_requested.to_string()),
        ("args", job.args.to_string()),
    ] {
        text.push_str(&format!("{name:<16} {value}\n"));
    }
    text.push_str("\nfailed attempts:");
    if errors.is_empty() {
        text.push_str(" none recorded (a job run by a Python worker has none)\n");
    } else {
        text.push('\n');
        for error in errors {
            text.push_str(&format!(
                "  attempt {} at {} (worker {}): {}: {}\n",
                error.attempt,
                time(error.failed_at),
                or_dash(error.worker_id),
                error.kind,
                error.message
            ));
        }
    }
    text.push_str("\nrescues:");
    if rescues.is_empty() {
        text.push_str(" none\n");
    } else {
        text.push('\n');
        for rescue in rescues {
            text.push_str(&format!("  {}\n", rescue_line(rescue)));
        }
    }
    text
}

async fn stalled(flags: JobsStalledFlags, context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    let jobs = app
        .job_manager()
        .list_stalled_jobs(
            flags.seconds_since_heartbeat,
            flags.queue.as_deref(),
            flags.task.as_deref(),
        )
        .await?;
    let rescues = rescues_of(&app.job_manager(), &jobs).await?;
    print_jobs(&jobs, Some(&rescues), format)?;
    Ok(ExitCode::SUCCESS)
}

async fn delete_old(flags: JobsDeleteOldFlags, context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    let deleted = app
        .job_manager()
        .delete_old_jobs(&DeleteOldJobsOptions {
            nb_hours: flags.hours,
            queue: flags.queue,
            include_failed: flags.include_failed,
            include_cancelled: flags.include_cancelled,
            include_aborted: flags.include_aborted,
        })
        .await?;
    if format.is_json() {
        output::print_json(&json!({ "deleted": deleted }))?;
    } else {
        output::print(&format!(
            "deleted {deleted} job{} finished more than {} hours ago\n",
            if deleted == 1 { "" } else { "s" },
            flags.hours
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn counts(
    by: CountBy,
    flags: CountFlags,
    context: Context,
) -> anyhow::Result<ExitCode> {
    let filter = values::count_filter(flags)?;
    let (app, format) = context.app()?;
    let counts = app.job_manager().count_jobs(by, &filter).await?;
    if format.is_json() {
        output::print_json(&output::counts_json(&counts))?;
    } else if counts.is_empty() {
        output::print(&format!("(no {}s with jobs)\n", by.noun()))?;
    } else {
        output::print(&output::counts_table(by.noun(), &counts).render())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn retry(flags: RetryFlags, context: Context) -> anyhow::Result<ExitCode> {
    let (at, delay) = values::at_or_in(flags.at.as_deref(), flags.in_.as_deref())?;
    let retry_at = match (at, delay) {
        (Some(at), _) => Some(at),
        (None, Some(delay)) => Some(values::after(delay)?),
        (None, None) => None,
    };
    let (app, format) = context.app()?;
    let manager = app.job_manager();
    manager
        .retry_job_by_id(
            flags.id,
            RetryDecision {
                retry_at,
                priority: flags.priority,
                queue: flags.queue,
                lock: flags.lock,
            },
        )
        .await?;
    let job = manager.get_job(flags.id).await?;
    if format.is_json() {
        output::print_json(&job)?;
    } else {
        let mut line = format!(
            "job {} retried: status {} on queue {:?}",
            job.id, job.status, job.queue_name
        );
        if let Some(at) = retry_at {
            line.push_str(&format!(
                ", not before {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        line.push('\n');
        output::print(&line)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn cancel(flags: CancelFlags, context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    let manager = app.job_manager();
    let id = flags.id;
    if !manager.cancel_job_by_id(id, false, flags.delete).await? {
        let status = manager.get_job_status(id).await?;
        let hint = if status == JobStatus::Doing {
            format!(": it is running; use `postpone abort {id}` to stop it")
        } else {
            " (only a todo job can be cancelled)".to_owned()
        };
        bail!("job {id} cannot be cancelled: its status is {status}{hint}");
    }
    let outcome = if flags.delete { "deleted" } else { "cancelled" };
    if format.is_json() {
        output::print_json(&json!({ "id": id, "outcome": outcome }))?;
    } else {
        output::print(&format!("job {id} {outcome}\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn abort(flags: AbortFlags, context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    let manager = app.job_manager();
    let id = flags.id;
    if !manager.cancel_job_by_id(id, true, false).await? {
        let status = manager.get_job_status(id).await?;
        bail!("job {id} cannot be aborted: its status is {status} (only todo and doing jobs can)");
    }
    // Same rule as procrastinate_cancel_job_v1 with abort: a waiting job is cancelled, a
    // running one gets abort_requested and its worker stops it (it may be stopped, i.e.
    // `aborted`, by the time we read it back: only `cancelled` means it had not started).
    let job = manager.get_job(id).await?;
    let (outcome, text) = if job.status == JobStatus::Cancelled {
        (
            "cancelled",
            format!("job {id} cancelled (it had not started)"),
        )
    } else {
        (
            "abort_requested",
            format!("abort requested for job {id}: its worker will stop it"),
        )
    };
    if format.is_json() {
        output::print_json(&json!({ "id": id, "outcome": outcome, "status": job.status }))?;
    } else {
        output::print(&format!("{text}\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The rescues of these jobs, by job id.
async fn rescues_of(
    manager: &JobManager,
    jobs: &[Job],
) -> anyhow::Result<BTreeMap<i64, Vec<Rescue>>> {
    let ids: Vec<i64> = jobs.iter().map(|job| job.id).collect();
    let mut by_job: BTreeMap<i64, Vec<Rescue>> = BTreeMap::new();
    for rescue in manager.list_rescues(&ids).await? {
        by_job.entry(rescue.job_id).or_default().push(rescue);
    }
    Ok(by_job)
}

/// One line for a person: how often the job was rescued and what the last rescue did.
fn rescue_summary(rescues: &[Rescue]) -> String {
    match rescues.last() {
        Some(last) => format!("{}x, last {}", rescues.len(), rescue_line(last)),
        None => "-".to_owned(),
    }
}

/// One rescue: when, which worker stopped, whether the job may have started there, what
/// the rescue did.
fn rescue_line(rescue: &Rescue) -> String {
    let worker = rescue
        .worker_id
        .map_or_else(|| "a pruned worker".to_owned(), |w| format!("worker {w}"));
    let started = if rescue.started {
        "may have started there"
    } else {
        "never started there"
    };
    format!(
        "{}: {worker} stopped, {started}; {}",
        rescue
            .rescued_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        rescue.outcome
    )
}

/// Prints jobs; with `details` (their rescues), also attempts, worker, abort request, args
/// and the rescues.
fn print_jobs(
    jobs: &[Job],
    details: Option<&BTreeMap<i64, Vec<Rescue>>>,
    format: Format,
) -> anyhow::Result<()> {
    if format.is_json() {
        let Some(rescues) = details else {
            return output::print_json(jobs);
        };
        let jobs: Vec<serde_json::Value> = jobs
            .iter()
            .map(|job| {
                let mut value = serde_json::to_value(job)?;
                value["rescues"] = serde_json::to_value(rescues.get(&job.id))?;
                Ok(value)
            })
            .collect::<serde_json::Result<_>>()?;
        return output::print_json(&jobs);
    }
    if jobs.is_empty() {
        return output::print("(no jobs)\n");
    }
    let mut headers = vec![
        "id",
        "queue",
        "task",
        "status",
        "priority",
        "lock",
        "queueing_lock",
        "scheduled_at",
    ];
    if details.is_some() {
        headers.extend(["attempts", "worker", "abort_requested", "args", "rescued"]);
    }
    let mut table = Table::new(&headers, &["id", "priority", "attempts", "worker"]);
    for job in jobs {
        let mut row = vec![
            job.id.to_string(),
            job.queue_name.clone(),
            job.task_name.clone(),
            job.status.to_string(),
            job.priority.to_string(),
            or_dash(job.lock.as_deref()),
            or_dash(job.queueing_lock.as_deref()),
            or_dash(
                job.scheduled_at
                    .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            ),
        ];
        if let Some(rescues) = details {
            row.extend([
                job.attempts.to_string(),
                or_dash(job.worker_id),
                job.abort_requested.to_string(),
                job.args.to_string(),
                rescue_summary(rescues.get(&job.id).map_or(&[], Vec::as_slice)),
            ]);
        }
        table.push(row);
    }
    output::print(&table.render())
}
