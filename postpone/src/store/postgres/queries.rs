//! Every SQL statement the PostgreSQL store runs, one named file each, named after
//! Procrastinate's `queries.sql` entries so one name greps across Python and Rust.
//! No SQL is assembled from strings anywhere else; here, only the `LISTEN` family (an
//! identifier cannot be a parameter) and the four finish statements cut from the one text
//! of `finish_jobs.sql`, by its marked sections.

/// Inserts a batch of jobs; the triggers write their events and notifications.
pub const DEFER_JOBS: &str = include_str!("queries/defer_jobs.sql");
/// Inserts a batch of jobs with their events and notifications written set-wise.
pub const DEFER_JOBS_SET_WISE: &str = include_str!("queries/defer_jobs_set_wise.sql");

/// Batches this large take [`DEFER_JOBS_SET_WISE`]; below it the function's own cost is
/// more than the set-wise writes save (break-even measured near 20 jobs).
pub const SET_WISE_DEFER_MIN: usize = 20;

/// Inserts a batch of jobs and what their defer calls keep beside them: timeouts, trace
/// contexts.
pub const DEFER_JOBS_WITH_EXTRAS: &str = include_str!("queries/defer_jobs_with_extras.sql");

/// The statement that defers `jobs` jobs: [`DEFER_JOBS_WITH_EXTRAS`] when one of them has
/// a timeout or a trace context of its own, else [`DEFER_JOBS`] or [`DEFER_JOBS_SET_WISE`]
/// by size.
pub fn defer_jobs(jobs: usize, with_extras: bool) -> &'static str {
    if with_extras {
        DEFER_JOBS_WITH_EXTRAS
    } else if jobs >= SET_WISE_DEFER_MIN {
        DEFER_JOBS_SET_WISE
    } else {
        DEFER_JOBS
    }
}
/// Defers one tick of a periodic task, deduplicated across workers.
pub const DEFER_PERIODIC_JOB: &str = include_str!("queries/defer_periodic_job.sql");
/// Lists jobs with filters.
pub const LIST_JOBS: &str = include_str!("queries/list_jobs.sql");
/// Counts jobs per queue and status.
pub const LIST_QUEUES: &str = include_str!("queries/list_queues.sql");
/// Counts jobs per task and status.
pub const LIST_TASKS: &str = include_str!("queries/list_tasks.sql");
/// Counts jobs per lock and status.
pub const LIST_LOCKS: &str = include_str!("queries/list_locks.sql");
/// Cancels (or aborts, or deletes) a job.
pub const CANCEL_JOB: &str = include_str!("queries/cancel_job.sql");
/// Retries a doing or failed job.
pub const RETRY_JOB: &str = include_str!("queries/retry_job.sql");
/// Retries a job only if it is failed when the statement runs.
pub const RETRY_FAILED_JOB: &str = include_str!("queries/retry_failed_job.sql");
/// Lists jobs of stalled workers.
pub const SELECT_STALLED_JOBS_BY_HEARTBEAT: &str =
    include_str!("queries/select_stalled_jobs_by_heartbeat.sql");
/// Deletes old finished jobs.
pub const DELETE_OLD_JOBS: &str = include_str!("queries/delete_old_jobs.sql");
/// Registers a worker.
pub const REGISTER_WORKER: &str = include_str!("queries/register_worker.sql");
/// Unregisters a worker.
pub const UNREGISTER_WORKER: &str = include_str!("queries/unregister_worker.sql");
/// Records a worker's heartbeat.
pub const UPDATE_HEARTBEAT: &str = include_str!("queries/update_heartbeat.sql");
/// Deletes workers without a recent heartbeat.
pub const PRUNE_STALLED_WORKERS: &str = include_str!("queries/prune_stalled_workers.sql");
/// Claims a batch of jobs and raises the worker's start watermark.
pub const FETCH_JOBS: &str = include_str!("queries/fetch_jobs.sql");
/// Claims a batch of jobs under the flow-control limits (ADR 18).
pub const FETCH_JOBS_FLOW: &str = include_str!("queries/fetch_jobs_flow.sql");
/// Whether any flow-control limit is stored.
pub const FLOW_IN_USE: &str = include_str!("queries/flow_in_use.sql");
/// How long until a full rate-limited bucket has room.
pub const FLOW_NEXT_START: &str = include_str!("queries/flow_next_start.sql");
/// Wakes the workers of queues whose flow-limited jobs left doing.
pub const NOTIFY_FLOW_RELEASED: &str = include_str!("queries/notify_flow_released.sql");
/// Raises a worker's start watermark.
pub const MARK_STARTED: &str = include_str!("queries/mark_started.sql");
/// Finishes a batch of jobs: the text of four statements, picked by [`finish_jobs`].
pub const FINISH_JOBS: &str = include_str!("queries/finish_jobs.sql");

/// The statement that finishes a batch, cut from [`FINISH_JOBS`]: with the results'
/// lines (and parameters `$9` to `$12`) when a job of the batch has a result to keep;
/// with the workflow nodes' lines when a node may be running, else with the lines that
/// return no workflow. Each of the four is cut once.
#[must_use]
pub fn finish_jobs(with_results: bool, with_nodes: bool) -> &'static str {
    static STATEMENTS: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
        [(false, false), (false, true), (true, false), (true, true)].map(|(results, nodes)| {
            sections(FINISH_JOBS, |name| match name {
                "results" => results,
                "nodes" => nodes,
                "!nodes" => !nodes,
                _ => false,
            })
        })
    });
    &STATEMENTS[usize::from(with_results) * 2 + usize::from(with_nodes)]
}

/// `text` without the sections `keep` refuses: a section is the lines between a line
/// `-- [name]` and a line `-- [/name]` (they nest; the marker lines go too). A line
/// stays when `keep` takes every section around it.
fn sections(text: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut open: Vec<(&str, bool)> = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let marker = line
            .trim()
            .strip_prefix("-- [")
            .and_then(|rest| rest.strip_suffix(']'));
        match marker {
            Some(name) if name.starts_with('/') => {
                open.pop();
            }
            Some(name) => open.push((name, keep(name))),
            None if open.iter().all(|(_, kept)| *kept) => {
                out.push_str(line);
                out.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Whether a workflow node's job may be running.
pub const ANY_RUNNING_NODES: &str = include_str!("queries/any_running_nodes.sql");
/// Sends a batch of failed jobs back to todo.
pub const RETRY_JOBS: &str = include_str!("queries/retry_jobs.sql");
/// Sends claimed jobs that did not start back to todo.
pub const HAND_BACK_JOBS: &str = include_str!("queries/hand_back_jobs.sql");
/// Which running jobs have an abort request.
pub const LIST_JOBS_TO_ABORT: &str = include_str!("queries/list_jobs_to_abort.sql");
/// One rescue pass at a time: the transaction's advisory lock.
pub const RESCUE_LOCK: &str = include_str!("queries/rescue_lock.sql");
/// The rescue's key for [`RESCUE_LOCK`]: the bytes of "pprescue".
pub const RESCUE_LOCK_KEY: i64 = 0x7070_7265_7363_7565;
/// The doing jobs of dead workers, locked, with whether they may have started.
pub const SELECT_JOBS_TO_RESCUE: &str = include_str!("queries/select_jobs_to_rescue.sql");
/// Records rescues.
pub const RECORD_RESCUES: &str = include_str!("queries/record_rescues.sql");
/// Removes dead workers and their start watermarks.
pub const PRUNE_RESCUED_WORKERS: &str = include_str!("queries/prune_rescued_workers.sql");
/// The rescues of some jobs.
pub const LIST_RESCUES: &str = include_str!("queries/list_rescues.sql");
/// The recorded errors of jobs' attempts.
pub const LIST_JOB_ERRORS: &str = include_str!("queries/list_job_errors.sql");
/// The stored result of a job.
pub const GET_JOB_RESULT: &str = include_str!("queries/get_job_result.sql");
/// Records that someone waits for a job's end.
pub const WAIT_FOR_JOB: &str = include_str!("queries/wait_for_job.sql");
/// Pauses a queue and notifies the workers.
pub const PAUSE_QUEUE: &str = include_str!("queries/pause_queue.sql");
/// Resumes a queue and notifies the workers.
pub const RESUME_QUEUE: &str = include_str!("queries/resume_queue.sql");
/// The paused queues.
pub const LIST_QUEUE_PAUSES: &str = include_str!("queries/list_queue_pauses.sql");
/// Inserts a workflow: its nodes, and its roots as jobs.
pub const DEFER_WORKFLOW: &str = include_str!("queries/defer_workflow.sql");
/// Cancels and releases the nodes of workflows their parents' outcomes allow.
pub const ADVANCE_WORKFLOWS: &str = include_str!("queries/advance_workflows.sql");
/// Records the ends of nodes whose jobs ended elsewhere; the workflows to advance.
pub const SYNC_WORKFLOWS: &str = include_str!("queries/sync_workflows.sql");
/// One workflow's row.
pub const GET_WORKFLOW: &str = include_str!("queries/get_workflow.sql");
/// One workflow's nodes.
pub const LIST_WORKFLOW_NODES: &str = include_str!("queries/list_workflow_nodes.sql");
/// The newest workflows with their nodes counted per status.
pub const LIST_WORKFLOWS: &str = include_str!("queries/list_workflows.sql");
/// A workflow job's parents' outcomes and results.
pub const LIST_PARENT_OUTCOMES: &str = include_str!("queries/list_parent_outcomes.sql");

/// One page of jobs, newest first, below a cursor, within a scan window (the dashboard).
pub const LIST_JOBS_PAGE: &str = include_str!("queries/list_jobs_page.sql");
/// One page of jobs, oldest first, above a cursor, within a scan window (the dashboard).
pub const LIST_JOBS_PAGE_NEWER: &str = include_str!("queries/list_jobs_page_newer.sql");
/// Per queue: capped todo and doing counts, the oldest runnable job, the pause.
pub const QUEUE_OVERVIEW: &str = include_str!("queries/queue_overview.sql");
/// The jobs table's size in pages.
pub const JOB_TABLE_SIZE: &str = include_str!("queries/job_table_size.sql");
/// Jobs per queue and status in a sample of the table's pages.
pub const COUNT_JOBS_SAMPLED: &str = include_str!("queries/count_jobs_sampled.sql");
/// The registered workers with their heartbeat's age and running jobs.
pub const LIST_WORKERS: &str = include_str!("queries/list_workers.sql");
/// A job's events.
pub const LIST_EVENTS: &str = include_str!("queries/list_events.sql");
/// The newest event's id.
pub const LAST_EVENT_ID: &str = include_str!("queries/last_event_id.sql");
/// Events after an id, counted per minute and type.
pub const EVENTS_SINCE: &str = include_str!("queries/events_since.sql");
/// The last deferred tick of each periodic schedule.
pub const LIST_PERIODIC_DEFERS: &str = include_str!("queries/list_periodic_defers.sql");
/// Running jobs holding a lock.
pub const LIST_LOCKED_JOBS: &str = include_str!("queries/list_locked_jobs.sql");
/// A job's own timeout.
pub const GET_JOB_TIMEOUT: &str = include_str!("queries/get_job_timeout.sql");

/// `LISTEN "<channel>"`: the one statement whose text depends on input, because
/// LISTEN takes an identifier, not a parameter (Procrastinate's `listen_queue`).
/// The channel is quoted as an identifier, inner quotes doubled.
#[must_use]
pub fn listen(channel: &str) -> String {
    format!("LISTEN \"{}\"", channel.replace('"', "\"\""))
}

/// `NOTIFY "<channel>"`, quoted as [`listen`] quotes it: the test notification a LISTEN
/// connection sends itself through the pool (see `listen.rs`). A simple statement, so it
/// reaches the server through any pooler.
#[must_use]
pub fn notify(channel: &str) -> String {
    format!("NOTIFY \"{}\"", channel.replace('"', "\"\""))
}

/// `UNLISTEN "<channel>"`, quoted as [`listen`] quotes it.
#[must_use]
pub fn unlisten(channel: &str) -> String {
    format!("UNLISTEN \"{}\"", channel.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_drop_what_keep_refuses_nested_and_markers_too() {
        let text = "a\n-- [x]\nb\n  -- [y]\nc\n  -- [/y]\n-- [/x]\n-- [!x]\nd\n-- [/!x]\ne\n";
        let cut = |x: bool, y: bool| {
            sections(text, |name| match name {
                "x" => x,
                "y" => y,
                "!x" => !x,
                _ => false,
            })
        };
        assert_eq!(cut(true, true), "a\nb\nc\ne\n");
        assert_eq!(cut(true, false), "a\nb\ne\n");
        assert_eq!(cut(false, true), "a\nd\ne\n");
    }

    /// The four finish statements name the result and node tables only when asked, and
    /// every section of the text is closed (no marker survives).
    #[test]
    fn the_finish_statements_name_only_the_tables_they_need() {
        for results in [false, true] {
            for nodes in [false, true] {
                let sql = finish_jobs(results, nodes);
                assert_eq!(sql.contains("postpone_job_results"), results, "{sql}");
                assert_eq!(sql.contains("$12"), results, "{sql}");
                assert_eq!(sql.contains("postpone_workflow_nodes"), nodes, "{sql}");
                assert!(sql.contains("AS ended_nodes"), "{sql}");
                assert!(!sql.contains("-- ["), "{sql}");
            }
        }
        let opens = FINISH_JOBS.matches("-- [").count();
        let closes = FINISH_JOBS.matches("-- [/").count();
        assert_eq!(opens, closes * 2, "unbalanced sections in finish_jobs.sql");
    }
}
