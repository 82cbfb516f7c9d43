//! Workflows (docs/workflows.md, ADR 19): DAGs of jobs submitted all or nothing, refused
//! at submit when malformed (nothing written); a node runs only after its parents allow
//! it, reads their results, and is cancelled (or run) when one fails; on both stores, in
//! the caller's transaction, past the delete policy, with two workers releasing a fan-in
//! child once; and with the real Python package on the same queue: a Python worker never
//! sees a waiting node, its finished parents release their children, and a 1,000-node
//! random DAG ends with every node as its parents' outcomes say.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use postpone::task::{JobContext, TaskError};
use postpone::worker::{DeleteJobs, WorkerConfig};
use postpone::workflow::{NodeStatus, OnParentFailure, Workflow, WorkflowRow};
use postpone::{App, Error, MemoryStore, Task};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

use crate::harness::{
    Log, TestDb, memory_app_with, pg_app_with, polling_worker, run_python, schema_db, wait_for,
};

const PYTHON_APP: &str = include_str!("python/workflow_app.py");

/// How long a workflow may take to end here.
const DEADLINE: Duration = Duration::from_secs(120);

/// Logs its node, checks that each parent's stored result is the parent's name (logging
/// `mismatch` otherwise), stores its own name, then fails when asked to. Python's
/// `wf.step` (python/workflow_app.py) is its twin, without results.
#[derive(Debug, Serialize, Deserialize)]
struct Step {
    node: String,
    fail: bool,
}

/// The error kind of a [`Step`] attempt that could not read its workflow node.
const READ_FAILED: &str = "ReadFailed";

impl Task for Step {
    fn name() -> std::borrow::Cow<'static, str> {
        "wf.step".into()
    }
    /// An attempt that could not read its parents (a database error: a connection the
    /// loaded server refused) is tried again; a failure asked for is not.
    fn config() -> postpone::TaskConfig {
        postpone::TaskConfig::default().with_retry(
            postpone::retry::RetryStrategy::max_attempts(3).with_retry_on([READ_FAILED]),
        )
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let log = Log::of(&ctx);
        let read_failed =
            |error: &dyn std::fmt::Display| TaskError::new(READ_FAILED, error.to_string());
        if let Some(node) = ctx.workflow_node().await.map_err(|e| read_failed(&e))? {
            for parent in &node.parents {
                if let Some(result) = &parent.result {
                    let name: String = serde_json::from_str(result).map_err(|e| read_failed(&e))?;
                    if name != parent.name {
                        log.push(format!(
                            "mismatch: {} read {name} from {}",
                            self.node, parent.name
                        ));
                    }
                }
                let typed: Option<String> = ctx
                    .parent_result(&parent.name)
                    .await
                    .map_err(|e| read_failed(&e))?;
                if typed.as_deref().is_some_and(|t| t != parent.name) {
                    log.push(format!("mismatch: typed read of {}", parent.name));
                }
            }
        }
        // Logged once the reads succeeded: an attempt tried again is one run.
        log.push(self.node.clone());
        ctx.set_result(&self.node)?;
        if self.fail {
            return Err(TaskError::new(
                "Asked",
                format!("node {} fails, as asked", self.node),
            ));
        }
        Ok(())
    }
}

/// Adds its value to its parents' results (numbers), stores the sum.
#[derive(Debug, Serialize, Deserialize)]
struct Add {
    value: i64,
}

impl Task for Add {
    fn name() -> std::borrow::Cow<'static, str> {
        "wf.add".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let mut sum = self.value;
        if let Some(node) = ctx.workflow_node().await? {
            for parent in &node.parents {
                let value: Option<i64> = ctx.parent_result(&parent.name).await?;
                sum += value.unwrap_or(0);
            }
        }
        ctx.set_result(&sum)
    }
}

fn build(builder: postpone::AppBuilder) -> App {
    builder
        .task::<Step>()
        .task::<Add>()
        .queue_flow_limit("limited", postpone::flow::FlowLimit::concurrency(1))
        .build()
        .expect("test app builds")
}

fn step<'a>(app: &'a App, node: &str, fail: bool) -> postpone::Configured<'a> {
    app.configure(Step {
        node: node.to_owned(),
        fail,
    })
}

/// Runs jobs until the workflow has ended: a polling worker on PostgreSQL; on the
/// memory store, one-shot runs (each job's children are released as it finishes).
async fn run_workflow(app: &App, memory: Option<&MemoryStore>, id: i64) -> (WorkflowRow, Arc<Log>) {
    let log = Arc::new(Log::default());
    if let Some(store) = memory {
        for _ in 0..100 {
            store
                .run_all_with(
                    app,
                    WorkerConfig {
                        additional_context: Some(log.clone()),
                        ..WorkerConfig::default()
                    },
                )
                .await
                .expect("run_all");
            if status(app, id).await.is_finished() {
                break;
            }
        }
    } else {
        let handle = app
            .start_worker(polling_worker(&log))
            .await
            .expect("worker starts");
        wait_finished(app, id).await;
        handle.stop();
        handle.join().await.expect("the worker stops");
    }
    (status(app, id).await, log)
}

async fn status(app: &App, id: i64) -> WorkflowRow {
    app.workflow_status(id)
        .await
        .expect("workflow status")
        .expect("the workflow exists")
}

async fn wait_finished(app: &App, id: i64) {
    wait_for(&format!("workflow {id} to end"), DEADLINE, || async {
        status(app, id).await.is_finished()
    })
    .await;
}

fn node_statuses(workflow: &WorkflowRow) -> BTreeMap<String, NodeStatus> {
    workflow
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.status))
        .collect()
}

fn assert_all_succeeded(workflow: &WorkflowRow) {
    assert!(
        workflow
            .nodes
            .iter()
            .all(|n| n.status == NodeStatus::Succeeded),
        "{workflow:?}"
    );
}

fn job_of(workflow: &WorkflowRow, node: &str) -> Option<i64> {
    workflow
        .nodes
        .iter()
        .find(|n| n.name == node)
        .and_then(|n| n.job_id)
}

/// What every bad workflow is refused with: one line naming what and how to fix it.
async fn refusals(app: &App) -> Vec<String> {
    let bad: Vec<Workflow<'_>> = vec![
        Workflow::new("cycle")
            .node("a", step(app, "a", false), &["c"])
            .node("b", step(app, "b", false), &["a"])
            .node("c", step(app, "c", false), &["b"])
            .node("root", step(app, "root", false), &[]),
        Workflow::new("self")
            .node("root", step(app, "root", false), &[])
            .node("loop", step(app, "loop", false), &["root", "loop"]),
        Workflow::new("duplicate")
            .node("a", step(app, "a", false), &[])
            .node("a", step(app, "a2", false), &[]),
        Workflow::new("missing")
            .node("a", step(app, "a", false), &[])
            .node("b", step(app, "b", false), &["a", "x"]),
        Workflow::new("empty"),
        Workflow::new("queueing")
            .node("a", step(app, "a", false), &[])
            .node("b", step(app, "b", false).with_queueing_lock("q"), &["a"]),
    ];
    let mut messages = Vec::new();
    for workflow in bad {
        match app.defer_workflow(workflow).await {
            Err(Error::InvalidInput(message)) => messages.push(message),
            other => panic!("a bad workflow was not refused as invalid input: {other:?}"),
        }
    }
    messages
}

fn check_refusals(messages: &[String]) {
    let expected = [
        ("cycle", "form a cycle (a -> b -> c -> a)"),
        ("self", "form a cycle (loop -> loop)"),
        ("duplicate", "two nodes are named \"a\""),
        (
            "missing",
            "node \"b\" depends on \"x\", which is not a node of this workflow",
        ),
        ("empty", "has no node"),
        ("queueing", "node \"b\" has a queueing lock"),
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:?}");
    for ((name, needle), message) in expected.iter().zip(messages) {
        assert!(
            message.contains(&format!("workflow {name:?}")) && message.contains(needle),
            "{name}: {message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(message.contains(": "), "says how to fix it: {message}");
    }
}

/// Nodes in queue "limited" (at most 1 job running): two roots, and four children of a root
/// elsewhere, released later.
fn limited_workflow(app: &App) -> Workflow<'_> {
    let mut workflow = Workflow::new("limited").node("r", step(app, "r", false), &[]);
    for n in 0..2 {
        let name = format!("l{n}");
        workflow = workflow.node(&name, step(app, &name, false).with_queue("limited"), &[]);
    }
    for n in 0..4 {
        let name = format!("c{n}");
        workflow = workflow.node(&name, step(app, &name, false).with_queue("limited"), &["r"]);
    }
    workflow
}

/// Submits [`limited_workflow`] and runs it to its end: every node succeeds.
async fn run_limited_workflow(app: &App, memory: Option<&MemoryStore>) {
    let id = app
        .defer_workflow(limited_workflow(app))
        .await
        .expect("submitted");
    let (workflow, _) = run_workflow(app, memory, id).await;
    assert_all_succeeded(&workflow);
}

/// Workflow nodes keep their flow limits, roots and released children alike: the jobs of
/// queue "limited" never overlap between their start and their end (as written in the
/// events: the claim counts `doing` jobs), though the worker has 4 slots.
#[tokio::test]
async fn flow_limited_nodes_run_within_their_limits() {
    let (db, app) = pg_app_with(build).await;
    run_limited_workflow(&app, None).await;
    let rows = db
        .client()
        .await
        .query(
            "SELECT job.id, min(event.at) FILTER (WHERE event.type = 'started'),
                    max(event.at) FILTER (WHERE event.type = 'succeeded')
               FROM procrastinate_jobs AS job
               JOIN procrastinate_events AS event ON event.job_id = job.id
              WHERE job.queue_name = 'limited'
              GROUP BY job.id",
            &[],
        )
        .await
        .expect("events");
    let mut spans: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
        rows.iter().map(|row| (row.get(1), row.get(2))).collect();
    assert_eq!(spans.len(), 6);
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two limited jobs ran at once: {pair:?}"
        );
    }

    let (store, app) = memory_app_with(build);
    run_limited_workflow(&app, Some(&store)).await;
}

/// `delete_old_jobs` takes the ended workflows its statuses cover (here, ended before now:
/// 0 hours) with their nodes, and leaves a workflow with a failed node until failed jobs
/// are included, and one still running.
async fn old_workflows_go_with_their_jobs(app: &App, memory: Option<&MemoryStore>) {
    // `a`, then `b`, which fails when asked to.
    let chain = async |name: &str, b_fails: bool| {
        app.defer_workflow(
            Workflow::new(name)
                .node("a", step(app, "a", false), &[])
                .node("b", step(app, "b", b_fails), &["a"]),
        )
        .await
        .expect("submitted")
    };
    let done = chain("done", false).await;
    let failed = chain("failed", true).await;
    let running = app
        .defer_workflow(Workflow::new("running").node(
            "later",
            step(app, "later", false).schedule_in(Duration::from_secs(3600)),
            &[],
        ))
        .await
        .expect("submitted");
    run_workflow(app, memory, done).await;
    run_workflow(app, memory, failed).await;
    let manager = app.job_manager();
    let exists = async |id: i64| app.workflow_status(id).await.expect("status").is_some();
    let mut options = postpone::manager::DeleteOldJobsOptions {
        nb_hours: 0,
        ..postpone::manager::DeleteOldJobsOptions::default()
    };
    manager.delete_old_jobs(&options).await.expect("delete");
    assert!(
        !exists(done).await,
        "an ended workflow of succeeded nodes goes"
    );
    assert!(
        exists(failed).await,
        "failed nodes are kept without include_failed"
    );
    assert!(exists(running).await, "a running workflow stays");
    options.include_failed = true;
    manager.delete_old_jobs(&options).await.expect("delete");
    assert!(
        !exists(failed).await,
        "with include_failed, the failed workflow goes"
    );
    assert!(exists(running).await, "a running workflow stays");
    let listed: Vec<String> = app
        .list_workflows(10)
        .await
        .expect("list")
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(listed, ["running"]);
}

#[tokio::test]
async fn old_workflows_go_with_their_jobs_on_postgres() {
    let (db, app) = pg_app_with(build).await;
    old_workflows_go_with_their_jobs(&app, None).await;
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_workflow_nodes")
            .await,
        1,
        "the deleted workflows' nodes went with them"
    );
}

#[tokio::test]
async fn old_workflows_go_with_their_jobs_in_memory() {
    let (store, app) = memory_app_with(build);
    old_workflows_go_with_their_jobs(&app, Some(&store)).await;
}

#[tokio::test]
async fn bad_workflows_are_refused_at_submit_with_nothing_written() {
    let (db, app) = pg_app_with(build).await;
    check_refusals(&refusals(&app).await);
    for table in [
        "postpone_workflows",
        "postpone_workflow_nodes",
        "procrastinate_jobs",
    ] {
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }

    let (store, app) = memory_app_with(build);
    check_refusals(&refusals(&app).await);
    assert!(store.jobs().is_empty());
    assert!(app.list_workflows(10).await.expect("list").is_empty());
}

/// a -> (b, c) -> d, each adding its value to its parents' results.
async fn diamond(app: &App, memory: Option<&MemoryStore>) {
    let workflow = Workflow::new("diamond")
        .node("a", app.configure(Add { value: 1 }), &[])
        .node("b", app.configure(Add { value: 10 }), &["a"])
        .node("c", app.configure(Add { value: 100 }), &["a"])
        .node("d", app.configure(Add { value: 1000 }), &["b", "c"]);
    let id = app.defer_workflow(workflow).await.expect("submitted");
    let submitted = status(app, id).await;
    assert_eq!(submitted.count(NodeStatus::Released), 1, "the root only");
    assert_eq!(submitted.count(NodeStatus::Waiting), 3);
    assert_eq!(
        app.job_manager()
            .list_jobs(&Default::default())
            .await
            .expect("jobs")
            .len(),
        1
    );

    let (workflow, _) = run_workflow(app, memory, id).await;
    assert_all_succeeded(&workflow);
    let d = job_of(&workflow, "d").expect("d ran");
    // d = 1000 + (10 + 1) + (100 + 1)
    assert_eq!(app.job_result::<i64>(d).await.expect("result"), Some(1112));
    let listed = app.list_workflows(10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].count(NodeStatus::Succeeded), 4);
}

#[tokio::test]
async fn a_diamond_runs_in_order_and_children_read_their_parents_results() {
    let (_db, app) = pg_app_with(build).await;
    diamond(&app, None).await;
    let (store, app) = memory_app_with(build);
    diamond(&app, Some(&store)).await;
}

/// a fails; b below it, c below b; e beside them. Under 'cancel' b and c never get a job;
/// under 'run' they run, b without a's result.
async fn failure(app: &App, memory: Option<&MemoryStore>, policy: OnParentFailure) {
    let workflow = Workflow::new("failure")
        .node("a", step(app, "a", true), &[])
        .node("b", step(app, "b", false), &["a"])
        .node("c", step(app, "c", false), &["b"])
        .node("e", step(app, "e", false), &[])
        .node("f", step(app, "f", false), &["e"])
        .on_parent_failure(policy);
    let id = app.defer_workflow(workflow).await.expect("submitted");
    let (workflow, log) = run_workflow(app, memory, id).await;
    assert_eq!(workflow.on_parent_failure, policy);
    let statuses = node_statuses(&workflow);
    let ran: BTreeSet<String> = log.events().into_iter().collect();
    match policy {
        OnParentFailure::Cancel => {
            assert_eq!(statuses["b"], NodeStatus::Cancelled);
            assert_eq!(statuses["c"], NodeStatus::Cancelled);
            assert_eq!(job_of(&workflow, "b"), None, "never a job");
            assert_eq!(job_of(&workflow, "c"), None, "never a job");
            assert_eq!(ran, ["a", "e", "f"].map(String::from).into());
        }
        OnParentFailure::Run => {
            assert_eq!(statuses["b"], NodeStatus::Succeeded);
            assert_eq!(statuses["c"], NodeStatus::Succeeded);
            assert_eq!(ran, ["a", "b", "c", "e", "f"].map(String::from).into());
        }
    }
    assert_eq!(statuses["a"], NodeStatus::Failed);
    assert_eq!(statuses["f"], NodeStatus::Succeeded);
    assert!(!ran.iter().any(|e| e.starts_with("mismatch")), "{ran:?}");
}

#[tokio::test]
async fn a_failed_parent_cancels_its_dependents_or_lets_them_run() {
    for policy in [OnParentFailure::Cancel, OnParentFailure::Run] {
        let (_db, app) = pg_app_with(build).await;
        failure(&app, None, policy).await;
        let (store, app) = memory_app_with(build);
        failure(&app, Some(&store), policy).await;
    }
}

/// A user cancels a released node's job before it runs: the workflow service's pass
/// records it cancelled and cancels the node below it; the other branch runs.
async fn cancelled_by_hand(app: &App, memory: Option<&MemoryStore>) {
    let workflow = Workflow::new("cancelled")
        .node("a", step(app, "a", false), &[])
        .node("b", step(app, "b", false), &["a"])
        .node("e", step(app, "e", false), &[]);
    let id = app.defer_workflow(workflow).await.expect("submitted");
    let a = job_of(&status(app, id).await, "a").expect("a root has a job");
    let manager = app.job_manager();
    assert!(
        manager
            .cancel_job_by_id(a, false, false)
            .await
            .expect("cancel")
    );
    app.store().sync_workflows().await.expect("sync");
    let (workflow, log) = run_workflow(app, memory, id).await;
    let statuses = node_statuses(&workflow);
    assert_eq!(statuses["a"], NodeStatus::Cancelled);
    assert_eq!(statuses["b"], NodeStatus::Cancelled);
    assert_eq!(statuses["e"], NodeStatus::Succeeded);
    assert_eq!(log.events(), ["e"]);
}

#[tokio::test]
async fn a_cancelled_job_cancels_its_nodes_dependents() {
    let (_db, app) = pg_app_with(build).await;
    cancelled_by_hand(&app, None).await;
    let (store, app) = memory_app_with(build);
    cancelled_by_hand(&app, Some(&store)).await;
}

#[tokio::test]
async fn parent_results_outlive_the_delete_policy() {
    let (db, app) = pg_app_with(build).await;
    let workflow = Workflow::new("deleted")
        .node("a", app.configure(Add { value: 5 }), &[])
        .node("b", app.configure(Add { value: 1 }), &["a"])
        .node("c", app.configure(Add { value: 0 }), &["b"]);
    let id = app.defer_workflow(workflow).await.expect("submitted");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(WorkerConfig {
            delete_jobs: DeleteJobs::Always,
            ..polling_worker(&log)
        })
        .await
        .expect("worker starts");
    wait_finished(&app, id).await;
    handle.stop();
    handle.join().await.expect("the worker stops");
    let workflow = status(&app, id).await;
    assert_all_succeeded(&workflow);
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_jobs").await,
        0,
        "all deleted"
    );
    // c read b's copy (6), which read a's (5).
    let stored: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT result::text FROM postpone_workflow_nodes ORDER BY name",
            &[],
        )
        .await
        .expect("node results")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, ["5", "6", "6"]);
}

/// The workflow the transaction tests defer: `b` adds 2 to `a`'s 1; `a` has a timeout of its
/// own and `b` a flow-limited queue, so every column the drivers bind is in use.
fn tx_workflow(app: &App) -> Workflow<'_> {
    Workflow::new("tx")
        .node(
            "a",
            app.configure(Add { value: 1 })
                .with_timeout(Duration::from_secs(30)),
            &[],
        )
        .node(
            "b",
            app.configure(Add { value: 2 }).with_queue("limited"),
            &["a"],
        )
}

/// After the rollback of the transaction that deferred workflow `id`: nothing of it is left.
async fn assert_rolled_back(db: &TestDb, app: &App, id: i64) {
    assert_eq!(app.workflow_status(id).await.expect("status"), None);
    for table in ["postpone_workflow_nodes", "procrastinate_jobs"] {
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}

/// After the commit: workflow `id` runs to its end, `b` reading `a`'s result, `a` with its
/// timeout.
async fn assert_committed_runs(db: &TestDb, app: &App, id: i64) {
    assert_eq!(
        db.count("SELECT timeout_ms FROM postpone_job_timeouts")
            .await,
        30_000
    );
    let (workflow, _) = run_workflow(app, None, id).await;
    let b = job_of(&workflow, "b").expect("b ran");
    assert_eq!(app.job_result::<i64>(b).await.expect("result"), Some(3));
}

/// Defers [`tx_workflow`] in a transaction `$begin` opens and rolls it back: nothing is
/// left; then in another, invisible until it commits, then run to its end.
macro_rules! rolled_back_then_committed {
    ($db:expr, $app:expr, $begin:expr) => {{
        let mut tx = $begin;
        let id = $app
            .defer_workflow_in(&mut tx, tx_workflow(&$app))
            .await
            .expect("in tx");
        tx.rollback().await.expect("rollback");
        assert_rolled_back(&$db, &$app, id).await;
        let mut tx = $begin;
        let id = $app
            .defer_workflow_in(&mut tx, tx_workflow(&$app))
            .await
            .expect("in tx");
        assert_eq!(
            $app.workflow_status(id).await.expect("status"),
            None,
            "invisible before the commit"
        );
        tx.commit().await.expect("commit");
        assert_committed_runs(&$db, &$app, id).await;
    }};
}

/// In the caller's tokio-postgres transaction.
#[tokio::test]
async fn a_workflow_deferred_in_a_transaction_exists_only_once_it_commits() {
    let (db, app) = pg_app_with(build).await;
    let mut client = db.client().await;
    rolled_back_then_committed!(db, app, client.transaction().await.expect("begin"));
}

/// In a transaction on the app's own deadpool pool (prepared statements cached per
/// connection).
#[tokio::test]
async fn a_workflow_deferred_in_a_deadpool_transaction_exists_only_once_it_commits() {
    let (db, app) = pg_app_with(build).await;
    let pool = app.pg().expect("the app runs on PostgreSQL");
    let mut client = pool.get().await.expect("pooled connection");
    rolled_back_then_committed!(db, app, client.transaction().await.expect("begin"));
}

/// In an sqlx transaction.
#[cfg(feature = "sqlx")]
#[tokio::test]
async fn a_workflow_deferred_in_an_sqlx_transaction_exists_only_once_it_commits() {
    let (db, app) = pg_app_with(build).await;
    let pool = crate::defer::sqlx_pool(&db).await;
    rolled_back_then_committed!(db, app, pool.begin().await.expect("begin"));
}

/// A worker whose pass saw no workflow running finishes jobs without the workflow tables;
/// a workflow another app defers then is recorded at once all the same, told by the
/// workflow's notification (the worker's next pass is an hour away).
#[tokio::test]
async fn a_worker_idle_of_workflows_records_the_nodes_of_one_deferred_elsewhere() {
    let db = schema_db().await;
    let connect = postpone::connect::ConnectConfig::parse(&db.url).expect("url");
    let store = postpone::store::postgres::PgStore::new(connect, 4).expect("store");
    let worker_app = build(App::builder().store(Arc::new(store.clone())));
    let log = Arc::new(Log::default());
    let worker = worker_app
        .start_worker(WorkerConfig {
            fetch_job_polling_interval: Duration::from_secs(3600),
            ..polling_worker(&log)
        })
        .await
        .expect("worker starts");
    wait_for("the worker's pass to see no workflow", DEADLINE, || async {
        !store.records_workflow_nodes()
    })
    .await;

    let other = build(App::builder().database_url(&db.url).expect("url"));
    let chain = Workflow::new("chain")
        .node("a", step(&other, "a", false), &[])
        .node("b", step(&other, "b", false), &["a"])
        .node("c", step(&other, "c", false), &["b"]);
    let id = other.defer_workflow(chain).await.expect("submitted");
    wait_finished(&other, id).await;
    worker.stop();
    worker.join().await.expect("the worker stops");

    let statuses = node_statuses(&status(&other, id).await);
    for node in ["a", "b", "c"] {
        assert_eq!(statuses[node], NodeStatus::Succeeded, "{node}");
    }
    assert_eq!(log.events(), ["a", "b", "c"]);
    assert!(store.records_workflow_nodes());
}

#[tokio::test]
async fn two_workers_release_a_fan_in_child_once() {
    let (db, app) = pg_app_with(build).await;
    let other = build(App::builder().database_url(&db.url).expect("url"));
    let parents: Vec<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    let names: Vec<&str> = parents.iter().map(String::as_str).collect();
    let mut workflow = Workflow::new("fan-in");
    for name in &names {
        workflow = workflow.node(*name, step(&app, name, false), &[]);
    }
    let workflow = workflow.node("child", step(&app, "child", false), &names);
    let id = app.defer_workflow(workflow).await.expect("submitted");
    let log = Arc::new(Log::default());
    let first = app.start_worker(polling_worker(&log)).await.expect("first");
    let second = other
        .start_worker(polling_worker(&log))
        .await
        .expect("second");
    wait_finished(&app, id).await;
    for handle in [first, second] {
        handle.stop();
        handle.join().await.expect("the worker stops");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_jobs WHERE args->>'node' = 'child'")
            .await,
        1,
        "one job for the child"
    );
    let ran = log.events();
    assert_eq!(ran.iter().filter(|e| *e == "child").count(), 1);
    assert_eq!(ran.len(), 41, "{ran:?}");
}

const WF_RUNS: &str = "CREATE TABLE wf_runs (job_id bigint, node text, who text, at timestamptz DEFAULT clock_timestamp())";

/// The Python worker, run until the queue `wf` is idle.
async fn python_until_idle(db: &TestDb) {
    let out = run_python(db, &format!("{PYTHON_APP}\nrun_until_idle('wf')\n")).await;
    assert_eq!(out.lines().last(), Some("idle"), "{out}");
}

async fn python_runs(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT node FROM wf_runs WHERE who = 'python' ORDER BY at",
            &[],
        )
        .await
        .expect("wf_runs")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_python_worker_never_runs_a_waiting_node_and_its_parents_release_children() {
    let (db, app) = pg_app_with(build).await;
    let client = db.client().await;
    client.batch_execute(WF_RUNS).await.expect("wf_runs");
    fn on_wf<'a>(app: &'a App, node: &str, fail: bool) -> postpone::Configured<'a> {
        step(app, node, fail).with_queue("wf")
    }
    let workflow = Workflow::new("python")
        .node("a", on_wf(&app, "a", false), &[])
        .node("b", on_wf(&app, "b", false), &["a"])
        .node("bad", on_wf(&app, "bad", true), &[])
        .node("after-bad", on_wf(&app, "after-bad", false), &["bad"]);
    let id = app.defer_workflow(workflow).await.expect("submitted");

    // The Python worker runs what is in procrastinate_jobs: the roots, nothing else.
    python_until_idle(&db).await;
    assert_eq!(python_runs(&client).await, ["a", "bad"]);
    assert_eq!(db.count("SELECT count(*) FROM procrastinate_jobs").await, 2);
    let before = status(&app, id).await;
    assert_eq!(before.count(NodeStatus::Released), 2, "no Rust pass yet");
    assert_eq!(before.count(NodeStatus::Waiting), 2);

    // The workflow service's pass (a Rust worker runs it every polling interval).
    assert_eq!(app.store().sync_workflows().await.expect("sync"), 1);
    let after = node_statuses(&status(&app, id).await);
    assert_eq!(after["a"], NodeStatus::Succeeded);
    assert_eq!(after["bad"], NodeStatus::Failed);
    assert_eq!(after["b"], NodeStatus::Released);
    assert_eq!(after["after-bad"], NodeStatus::Cancelled);

    python_until_idle(&db).await;
    assert_eq!(python_runs(&client).await, ["a", "bad", "b"]);
    app.store().sync_workflows().await.expect("sync");
    let workflow = status(&app, id).await;
    assert!(workflow.is_finished());
    assert_eq!(node_statuses(&workflow)["b"], NodeStatus::Succeeded);
    assert_eq!(job_of(&workflow, "after-bad"), None);
    // b was deferred after a's end was written.
    let (a, b) = (job_of(&workflow, "a"), job_of(&workflow, "b"));
    let ordered = client
        .query_one(
            "SELECT (SELECT min(id) FROM procrastinate_events WHERE job_id = $2)
                  > (SELECT max(id) FROM procrastinate_events WHERE job_id = $1)",
            &[&a, &b],
        )
        .await
        .expect("events")
        .get::<_, bool>(0);
    assert!(ordered);
}

/// A Python worker running until its stdin closes (workflow_app.py's `serve`).
struct PythonWorker {
    child: Child,
}

impl PythonWorker {
    async fn spawn(db: &TestDb) -> Self {
        let python = tokio::task::spawn_blocking(postpone_testkit::python)
            .await
            .expect("the Python lookup task panicked")
            .unwrap_or_else(|error| panic!("{error}"));
        let child = Command::new(&python)
            .arg("-c")
            .arg(format!("{PYTHON_APP}\nserve('wf', 4)\n"))
            .env("DATABASE_URL", &db.url)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
        Self { child }
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let output = tokio::time::timeout(Duration::from_secs(30), self.child.wait_with_output())
            .await
            .expect("the Python worker stops within 30 s")
            .expect("waiting for the Python worker");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.lines().last() == Some("stopped"),
            "the Python worker failed ({})\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

/// xorshift64*: a seeded, deterministic sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The DAG: node i's parents among the 40 nodes before it (0 to 3 of them), one node in
/// twelve failing.
fn random_dag(seed: u64, size: usize) -> Vec<(String, Vec<usize>, bool)> {
    let mut rng = Rng(seed);
    (0..size)
        .map(|i| {
            let k = if i == 0 { 0 } else { rng.below(4) };
            let mut parents = BTreeSet::new();
            for _ in 0..k {
                let back = 1 + rng.below(40.min(i as u64)) as usize;
                parents.insert(i - back);
            }
            let fail = rng.below(12) == 0;
            (format!("n{i:04}"), parents.into_iter().collect(), fail)
        })
        .collect()
}

#[tokio::test]
async fn a_random_dag_of_1000_nodes_ends_as_its_parents_outcomes_say_with_python_on_the_queue() {
    let (db, app) = pg_app_with(build).await;
    let client = db.client().await;
    client.batch_execute(WF_RUNS).await.expect("wf_runs");
    let dag = random_dag(0x5eed_0015, 1000);

    // The Python worker first, listening, so that it takes part from the roots on.
    let python = PythonWorker::spawn(&db).await;
    wait_for("the Python worker to register", DEADLINE, || async {
        db.count("SELECT count(*) FROM procrastinate_workers").await > 0
    })
    .await;

    let mut workflow = Workflow::new("random");
    for (name, parents, fail) in &dag {
        let parents: Vec<&str> = parents.iter().map(|p| dag[*p].0.as_str()).collect();
        workflow = workflow.node(
            name.as_str(),
            step(&app, name, *fail).with_queue("wf"),
            &parents,
        );
    }
    let id = app.defer_workflow(workflow).await.expect("submitted");
    let log = Arc::new(Log::default());
    let rust = app
        .start_worker(polling_worker(&log).with_queues(["wf"]))
        .await
        .expect("worker starts");
    wait_finished(&app, id).await;
    rust.stop();
    rust.join().await.expect("the worker stops");
    python.stop().await;

    // What each node must be: a failing parent (or one cancelled) cancels it.
    let mut expected: Vec<NodeStatus> = Vec::with_capacity(dag.len());
    for (_, parents, fail) in &dag {
        let allowed = parents
            .iter()
            .all(|p| expected[*p] == NodeStatus::Succeeded);
        expected.push(match (allowed, fail) {
            (false, _) => NodeStatus::Cancelled,
            (true, true) => NodeStatus::Failed,
            (true, false) => NodeStatus::Succeeded,
        });
    }
    let workflow = status(&app, id).await;
    let statuses = node_statuses(&workflow);
    let jobs: BTreeMap<String, Option<i64>> = workflow
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.job_id))
        .collect();
    // Each job's status and its first and last event ids.
    let rows = client
        .query(
            "SELECT job.id, job.status::text, min(event.id), max(event.id)
               FROM procrastinate_jobs AS job
               JOIN procrastinate_events AS event ON event.job_id = job.id
              GROUP BY job.id",
            &[],
        )
        .await
        .expect("jobs");
    let events: BTreeMap<i64, (String, i64, i64)> = rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
        .collect();
    let mut ran: Vec<String> = log.events();
    assert!(
        !ran.iter().any(|e| e.starts_with("mismatch")),
        "results: {ran:?}"
    );
    let python_ran = python_runs(&client).await;
    ran.extend(python_ran.iter().cloned());
    let mut runs: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &ran {
        *runs.entry(node.as_str()).or_default() += 1;
    }
    for (i, (name, parents, _)) in dag.iter().enumerate() {
        let job = jobs[name];
        if statuses[name] != expected[i] {
            // Why its attempts failed (none recorded: Python ran it; see its stderr).
            let errors = app
                .job_manager()
                .list_job_errors(&job.into_iter().collect::<Vec<_>>())
                .await
                .expect("errors");
            panic!(
                "node {name} (job {job:?}, parents {parents:?}) ended {:?}, not {:?}; its errors: {errors:?}",
                statuses[name], expected[i]
            );
        }
        if expected[i] == NodeStatus::Cancelled {
            assert_eq!(job, None, "{name} was cancelled: it never had a job");
            assert_eq!(runs.get(name.as_str()), None, "{name} never ran");
            continue;
        }
        let job = job.unwrap_or_else(|| panic!("{name} had a job"));
        let (status, first, _) = &events[&job];
        assert_eq!(status, expected[i].as_str(), "{name}'s job");
        assert_eq!(runs.get(name.as_str()), Some(&1), "{name} ran once");
        for parent in parents {
            let parent_job = jobs[&dag[*parent].0].expect("a parent of a released node had a job");
            let (_, _, parent_last) = &events[&parent_job];
            assert!(
                first > parent_last,
                "{name} was deferred (event {first}) after its parent {} ended (event {parent_last})",
                dag[*parent].0
            );
        }
    }
    let counts: BTreeSet<NodeStatus> = expected.iter().copied().collect();
    assert_eq!(
        counts.len(),
        3,
        "the DAG has successes, failures and cancellations"
    );
    assert!(!python_ran.is_empty(), "the Python worker ran nodes");
    assert!(!log.events().is_empty(), "the Rust worker ran nodes");
}
