//! `postpone queues`: the queues with their job counts per status and whether each is
//! paused; `postpone queues pause NAME` / `resume NAME` (the library's
//! `JobManager::pause_queue` / `resume_queue`).
//!
//! A paused queue without jobs is listed too (unless a task, status or lock filter is
//! given), so a pause is never invisible. Python workers do not know about pauses: the text
//! output says so whenever a queue is paused.

use std::process::ExitCode;

use postpone::JobFilter;
use postpone::manager::{CountBy, JobManager};
use postpone::store::JobCounts;

use crate::flags::{QueuesCommand, QueuesFlags};
use crate::output::{self, QueueRow};
use crate::{Context, values};

/// Said under the list whenever a queue is paused.
pub(crate) const PYTHON_NOTE: &str = "paused: Postpone workers take none of its jobs until it is resumed; Python (Procrastinate) workers do not know about pauses and still do";

/// The queues matching `filter` with their counts and pauses, by name.
pub(crate) async fn overview(
    manager: &JobManager,
    filter: &JobFilter,
) -> anyhow::Result<Vec<QueueRow>> {
    let counts = manager.count_jobs(CountBy::Queue, filter).await?;
    let pauses = manager.list_queue_pauses().await?;
    let mut rows: Vec<QueueRow> = counts
        .into_iter()
        .map(|counts| QueueRow {
            paused_at: pauses
                .iter()
                .find(|p| p.queue_name == counts.name)
                .map(|p| p.paused_at),
            counts,
        })
        .collect();
    // Paused queues without a job matching: shown unless the filter is about jobs.
    let about_jobs = filter.task_name.is_some() || filter.status.is_some() || filter.lock.is_some();
    if !about_jobs {
        for pause in pauses {
            let wanted = filter
                .queue_name
                .as_ref()
                .is_none_or(|q| *q == pause.queue_name);
            if wanted && !rows.iter().any(|r| r.counts.name == pause.queue_name) {
                rows.push(QueueRow {
                    counts: JobCounts {
                        name: pause.queue_name,
                        jobs_count: 0,
                        stats: Default::default(),
                    },
                    paused_at: Some(pause.paused_at),
                });
            }
        }
        rows.sort_by(|a, b| a.counts.name.cmp(&b.counts.name));
    }
    Ok(rows)
}

pub(crate) async fn run(flags: QueuesFlags, context: Context) -> anyhow::Result<ExitCode> {
    let Some(action) = flags.action else {
        let filter = values::count_filter(flags.counts)?;
        let (app, format) = context.app()?;
        let rows = overview(&app.job_manager(), &filter).await?;
        if format.is_json() {
            output::print_json(&output::queues_json(&rows))?;
        } else if rows.is_empty() {
            output::print("(no queues with jobs)\n")?;
        } else {
            let mut text = output::queues_table(&rows).render();
            if rows.iter().any(|r| r.paused_at.is_some()) {
                text.push_str(&format!("\n{PYTHON_NOTE}\n"));
            }
            output::print(&text)?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let (app, format) = context.app()?;
    let manager = app.job_manager();
    let (name, pause) = match action {
        QueuesCommand::Pause(flags) => (flags.name, true),
        QueuesCommand::Resume(flags) => (flags.name, false),
    };
    let changed = if pause {
        manager.pause_queue(&name).await?
    } else {
        manager.resume_queue(&name).await?
    };
    if format.is_json() {
        return output::print_json(&serde_json::json!({
            "queue": name,
            "paused": pause,
            "changed": changed,
        }))
        .map(|()| ExitCode::SUCCESS);
    }
    let line = match (pause, changed) {
        (true, true) => format!(
            "paused queue {name:?}: Postpone workers take none of its jobs until `postpone queues resume {name}` (Python workers do not know about pauses)\n"
        ),
        (true, false) => format!("queue {name:?} was paused already\n"),
        (false, true) => format!("resumed queue {name:?}: workers take its jobs again\n"),
        (false, false) => format!("queue {name:?} was not paused\n"),
    };
    output::print(&line)?;
    Ok(ExitCode::SUCCESS)
}
