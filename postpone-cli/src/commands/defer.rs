//! `postpone defer TASK [JSON]` (Procrastinate's `procrastinate defer`).
//!
//! Everything is validated before anything is written: the JSON, `--at` / `--in`, the
//! names (at most 128 characters), the task (known, or `--unknown`), the args against the
//! task's type; then the schema is checked, then the one job is inserted.

use std::process::ExitCode;

use anyhow::anyhow;
use postpone::{App, Error, JobSpec};
use serde_json::json;

use crate::flags::DeferFlags;
use crate::output::{self, Format};
use crate::{Context, values};

pub(crate) async fn run(flags: DeferFlags, context: Context) -> anyhow::Result<ExitCode> {
    let args = values::parse_args_json(&flags.task, &flags.args)?;
    let (at, delay) = values::at_or_in(flags.at.as_deref(), flags.in_.as_deref())?;
    let timeout = flags
        .timeout
        .as_deref()
        .map(|t| values::parse_timeout("--timeout", t))
        .transpose()?;
    let (app, format) = context.app()?;
    let mut job = app.configure_by_name(&flags.task, args);
    if let Some(queue) = flags.queue {
        job = job.with_queue(queue);
    }
    if let Some(lock) = flags.lock {
        job = job.with_lock(lock);
    }
    if let Some(queueing_lock) = flags.queueing_lock {
        job = job.with_queueing_lock(queueing_lock);
    }
    if let Some(priority) = flags.priority {
        job = job.with_priority(priority);
    }
    if let Some(at) = at {
        job = job.schedule_at(at);
    }
    if let Some(delay) = delay {
        job = job.schedule_in(delay);
    }
    if let Some(timeout) = timeout {
        job = job.with_timeout(timeout);
    }
    if flags.unknown {
        job = job.allow_unknown();
    }
    let spec = job.into_spec().map_err(|error| match error {
        Error::UnknownTask { name } => unknown_task(&app, &name),
        other => other.into(),
    })?;
    app.check_schema().await?;
    match app.defer_specs(vec![spec.clone()]).await {
        Ok(ids) => {
            let id = ids
                .first()
                .copied()
                .ok_or_else(|| anyhow!("the database returned no id for the deferred job"))?;
            print_deferred(id, &spec, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::AlreadyEnqueued { queueing_lock }) if flags.ignore_already_enqueued => {
            if format.is_json() {
                output::print_json(&json!({
                    "id": null,
                    "already_enqueued": true,
                    "queueing_lock": queueing_lock,
                }))?;
            } else {
                output::print(&format!(
                    "job not deferred: a job with queueing lock {queueing_lock:?} is already waiting (ignored: --ignore-already-enqueued)\n"
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(error.into()),
    }
}

fn unknown_task(app: &App, name: &str) -> anyhow::Error {
    // The builtin tasks are in every app; name the binary's own.
    let own: Vec<&str> = app
        .task_names()
        .iter()
        .map(String::as_str)
        .filter(|name| !postpone::builtin::is_builtin(name))
        .collect();
    let known = if own.is_empty() {
        "this binary has no Rust tasks of its own; embed the CLI in your own binary to register them"
            .to_owned()
    } else {
        format!("known tasks: {}", own.join(", "))
    };
    anyhow!("unknown task {name:?}: pass --unknown to defer it anyway ({known})")
}

fn print_deferred(id: i64, spec: &JobSpec, format: Format) -> anyhow::Result<()> {
    if format.is_json() {
        return output::print_json(&json!({
            "id": id,
            "task_name": spec.task_name,
            "queue_name": spec.queue_name,
            "priority": spec.priority,
            "lock": spec.lock,
            "queueing_lock": spec.queueing_lock,
            "args": spec.args,
            "scheduled_at": spec.scheduled_at,
            "timeout_seconds": spec.timeout.map(|t| t.as_secs_f64()),
        }));
    }
    let mut line = format!(
        "deferred job {id}: task {:?} on queue {:?}",
        spec.task_name, spec.queue_name
    );
    if let Some(at) = spec.scheduled_at {
        line.push_str(&format!(
            ", not before {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if let Some(timeout) = spec.timeout {
        line.push_str(&format!(", timeout {timeout:?}"));
    }
    line.push('\n');
    output::print(&line)
}
