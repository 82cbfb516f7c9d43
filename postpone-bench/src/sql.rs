//! Every SQL statement of the bench, one file each under `sql/` (Postpone's own statements
//! come from `postpone::store::postgres::queries`, so the bench runs what the worker runs).
//! No SQL is assembled from strings, but for one step: [`CEILINGS`] takes the library's
//! fetch and finish statements into its two placeholders (`ceilings.rs`).

/// The server-side ceilings' procedures and the wrappers of the worker's statements.
pub(crate) const CEILINGS: &str = include_str!("sql/ceilings.sql");
/// W1's floor: its table, and one row.
pub(crate) const BASELINE_TABLE: &str = include_str!("sql/baseline_table.sql");
pub(crate) const BASELINE_INSERT: &str = include_str!("sql/baseline_insert.sql");
/// The `deferred` events written.
pub(crate) const COUNT_DEFERRED_EVENTS: &str = include_str!("sql/count_deferred_events.sql");
/// W3L's prefilled succeeded jobs (`$1` of them) and their events, then vacuumed.
pub(crate) const PREFILL_JOBS: &str = include_str!("sql/prefill_jobs.sql");
pub(crate) const PREFILL_EVENTS: &str = include_str!("sql/prefill_events.sql");
pub(crate) const VACUUM_JOBS: &str = include_str!("sql/vacuum_jobs.sql");
pub(crate) const VACUUM_EVENTS: &str = include_str!("sql/vacuum_events.sql");
/// `--analyze`.
pub(crate) const ANALYZE_JOBS: &str = include_str!("sql/analyze_jobs.sql");
/// The backends of the other sessions of this database, and this session's own.
pub(crate) const BACKEND_PIDS: &str = include_str!("sql/backend_pids.sql");
pub(crate) const BACKEND_PID: &str = include_str!("sql/backend_pid.sql");
/// RATE: the starts in the measured window, and the most in any one-second window.
pub(crate) const RATE_STARTS: &str = include_str!("sql/rate_starts.sql");
/// After a drain: succeeded and other jobs.
pub(crate) const DRAIN_OUTCOMES: &str = include_str!("sql/drain_outcomes.sql");
/// WF: the workflow's succeeded nodes, and the jobs made.
pub(crate) const COUNT_WORKFLOW_SUCCEEDED: &str = include_str!("sql/count_workflow_succeeded.sql");
pub(crate) const COUNT_JOBS: &str = include_str!("sql/count_jobs.sql");
/// After R1: the results stored.
pub(crate) const COUNT_RESULTS: &str = include_str!("sql/count_results.sql");
/// Triggers switched off for some ceilings.
pub(crate) const DISABLE_NOTIFY_TRIGGER: &str = include_str!("sql/disable_notify_trigger.sql");
pub(crate) const DISABLE_USER_TRIGGERS: &str = include_str!("sql/disable_user_triggers.sql");
/// The ceilings' procedures, called with their sizes as parameters.
pub(crate) const CALL_W1S: &str = include_str!("sql/call_w1s.sql");
pub(crate) const CALL_W2S: &str = include_str!("sql/call_w2s.sql");
pub(crate) const CALL_W3S: &str = include_str!("sql/call_w3s.sql");
/// A session that does not wait for the WAL flush.
pub(crate) const SYNCHRONOUS_COMMIT_OFF: &str = include_str!("sql/synchronous_commit_off.sql");
/// Counts the ceilings check their work with.
pub(crate) const COUNT_TODO: &str = include_str!("sql/count_todo.sql");
pub(crate) const COUNT_DOING: &str = include_str!("sql/count_doing.sql");
pub(crate) const COUNT_SUCCEEDED: &str = include_str!("sql/count_succeeded.sql");
pub(crate) const COUNT_DRAIN_EVENTS: &str = include_str!("sql/count_drain_events.sql");
/// W4S: its one-row table, its single defer, its bare write.
pub(crate) const W4S_TABLE: &str = include_str!("sql/w4s_table.sql");
pub(crate) const W4S_DEFER: &str = include_str!("sql/w4s_defer.sql");
pub(crate) const W4S_WRITE: &str = include_str!("sql/w4s_write.sql");
/// The server's version and settings, for the report.
pub(crate) const SERVER_INFO: &str = include_str!("sql/server_info.sql");

/// The chaos suite (`chaos.rs`): its database, its record of runs, and what it watches.
pub(crate) const CHAOS_CREATE_DATABASE: &str = include_str!("sql/chaos_create_database.sql");
pub(crate) const CHAOS_RUNS_TABLE: &str = include_str!("sql/chaos_runs_table.sql");
pub(crate) const CHAOS_RECORD_RUN: &str = include_str!("sql/chaos_record_run.sql");
pub(crate) const CHAOS_NOW: &str = include_str!("sql/chaos_now.sql");
pub(crate) const CHAOS_PROGRESS: &str = include_str!("sql/chaos_progress.sql");
pub(crate) const CHAOS_STARTED_SINCE: &str = include_str!("sql/chaos_started_since.sql");
pub(crate) const CHAOS_WORKER_OF_PID: &str = include_str!("sql/chaos_worker_of_pid.sql");
pub(crate) const CHAOS_DOING_COUNT: &str = include_str!("sql/chaos_doing_count.sql");
pub(crate) const CHAOS_DOING_OF_WORKER: &str = include_str!("sql/chaos_doing_of_worker.sql");
pub(crate) const CHAOS_STATUSES: &str = include_str!("sql/chaos_statuses.sql");
pub(crate) const CHAOS_TERMINATE: &str = include_str!("sql/chaos_terminate.sql");
pub(crate) const CHAOS_TALLY: &str = include_str!("sql/chaos_tally.sql");
pub(crate) const CHAOS_HELD_BY: &str = include_str!("sql/chaos_held_by.sql");
pub(crate) const CHAOS_RAN_AGAIN: &str = include_str!("sql/chaos_ran_again.sql");
pub(crate) const CHAOS_SERVER_START: &str = include_str!("sql/chaos_server_start.sql");
pub(crate) const CHAOS_WORKER_UP: &str = include_str!("sql/chaos_worker_up.sql");
/// FLEET: the WAL position, read before and after its drain.
pub(crate) const WAL_POSITION: &str = include_str!("sql/wal_position.sql");
