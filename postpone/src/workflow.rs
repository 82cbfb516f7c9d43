//! Workflows: a set of jobs with dependencies (a DAG: chains, fan-out, fan-in),
//! submitted in one statement, all or nothing (docs/workflows.md,
//! docs/adr/0019-workflows.md).
//!
//! A [`Workflow`] names each node, gives it a job ([`App::configure`] with any options)
//! and its parents. It is validated before anything is written: a duplicate node name, a
//! parent outside the workflow, a cycle, a queueing lock on a node with parents, or no
//! node at all is refused with one line naming the node and how to fix it. Submitted
//! ([`App::defer_workflow`], or [`App::defer_workflow_in`] inside the caller's
//! transaction), its roots become jobs at once; every other node waits outside
//! `procrastinate_jobs`, so no worker (a Python one neither) can run it before its
//! parents allow: all succeeded, or (under [`OnParentFailure::Run`]) all ended. A running
//! node reads its parents' results with [`JobContext::parent_result`](crate::context::JobContext::parent_result).
//!
//! ```no_run
//! # use postpone::{App, Task, task::{JobContext, TaskError}};
//! # use postpone::workflow::{OnParentFailure, Workflow};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Fetch { url: String }
//! # impl Task for Fetch { async fn run(self, _: JobContext) -> Result<(), TaskError> { Ok(()) } }
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Merge;
//! # impl Task for Merge { async fn run(self, _: JobContext) -> Result<(), TaskError> { Ok(()) } }
//! # async fn f(app: App) -> postpone::Result<()> {
//! let workflow = Workflow::new("nightly")
//!     .node("a", app.configure(Fetch { url: "https://a.example".into() }), &[])
//!     .node("b", app.configure(Fetch { url: "https://b.example".into() }).with_queue("slow"), &[])
//!     .node("merge", app.configure(Merge), &["a", "b"])
//!     .on_parent_failure(OnParentFailure::Cancel);
//! let id = app.defer_workflow(workflow).await?;
//! let status = app.workflow_status(id).await?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::app::App;
use crate::defer::Configured;
use crate::protocol::check_name;
use crate::store::postgres::Transaction;
use crate::{Error, Result};

pub use crate::store::workflow::{
    NodeParents, NodeStatus, OnParentFailure, ParentOutcome, WorkflowNodeRow, WorkflowRow,
};
use crate::store::{WorkflowNodeParams, WorkflowParams};

/// A workflow being built: named nodes, each a job and its parents' names.
#[derive(Debug)]
#[must_use = "a workflow does nothing until App::defer_workflow is awaited"]
pub struct Workflow<'a> {
    name: String,
    on_parent_failure: OnParentFailure,
    nodes: Vec<(String, Configured<'a>, Vec<String>)>,
}

impl<'a> Workflow<'a> {
    /// An empty workflow named `name` (for people: names need not be unique), whose
    /// parents' failures cancel their dependents.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            on_parent_failure: OnParentFailure::default(),
            nodes: Vec::new(),
        }
    }

    /// Adds a node: `name` (unique in the workflow), the job it runs, and the nodes that
    /// must end first (`&[]`: a root, deferred at once).
    pub fn node(mut self, name: impl Into<String>, job: Configured<'a>, parents: &[&str]) -> Self {
        let parents = parents.iter().map(|p| (*p).to_owned()).collect();
        self.nodes.push((name.into(), job, parents));
        self
    }

    /// What a parent that fails for good (or is cancelled or aborted) does to the nodes
    /// below it: [`OnParentFailure::Cancel`] them (the default), or let them
    /// [`OnParentFailure::Run`].
    pub fn on_parent_failure(mut self, policy: OnParentFailure) -> Self {
        self.on_parent_failure = policy;
        self
    }

    /// Validates the workflow and resolves each node's job.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a workflow without nodes, a duplicate node name, a
    /// parent that is not a node of the workflow, a cycle, a queueing lock on a node with
    /// parents; a node's job errors as [`Configured::into_spec`].
    pub fn into_params(self) -> Result<WorkflowParams> {
        let workflow = self.name;
        check_name("workflow", &workflow)?;
        if self.nodes.is_empty() {
            return Err(Error::InvalidInput(format!(
                "workflow {workflow:?} has no node: add one with Workflow::node"
            )));
        }
        let mut seen = BTreeSet::new();
        for (name, _, _) in &self.nodes {
            check_name(&format!("workflow {workflow:?}: node"), name)?;
            if !seen.insert(name.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "workflow {workflow:?}: two nodes are named {name:?}: give each node a name of its own"
                )));
            }
        }
        for (name, _, parents) in &self.nodes {
            if let Some(missing) = parents.iter().find(|p| !seen.contains(p.as_str())) {
                return Err(Error::InvalidInput(format!(
                    "workflow {workflow:?}: node {name:?} depends on {missing:?}, which is not a node of this workflow: add a node named {missing:?} or remove it from {name:?}'s parents"
                )));
            }
        }
        if let Some(cycle) = find_cycle(&self.nodes) {
            return Err(Error::InvalidInput(format!(
                "workflow {workflow:?}: its dependencies form a cycle ({}): remove one of these dependencies",
                cycle.join(" -> ")
            )));
        }
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (name, job, parents) in self.nodes {
            let job = job.into_spec()?;
            let mut unique = BTreeSet::new();
            let parents: Vec<String> = parents
                .into_iter()
                .filter(|p| unique.insert(p.clone()))
                .collect();
            if job.queueing_lock.is_some() && !parents.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "workflow {workflow:?}: node {name:?} has a queueing lock, which only a node without parents may have (a released job must not collide): remove it, or make the node a root"
                )));
            }
            nodes.push(WorkflowNodeParams { name, parents, job });
        }
        Ok(WorkflowParams {
            name: workflow,
            on_parent_failure: self.on_parent_failure,
            nodes,
        })
    }
}

/// A cycle among the nodes, as the names along it (first repeated last), if any: a
/// depth-first search from each node over its parents.
fn find_cycle(nodes: &[(String, Configured<'_>, Vec<String>)]) -> Option<Vec<String>> {
    let parents: HashMap<&str, &[String]> = nodes
        .iter()
        .map(|(name, _, parents)| (name.as_str(), parents.as_slice()))
        .collect();
    // 1: on the current path, 2: done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    for (start, _, _) in nodes {
        if state.contains_key(start.as_str()) {
            continue;
        }
        // The path, each node with the index of its next parent to visit.
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        state.insert(start.as_str(), 1);
        while let Some((node, next)) = path.last_mut() {
            let node_parents = parents.get(*node).copied().unwrap_or(&[]);
            if let Some(parent) = node_parents.get(*next) {
                *next += 1;
                match state.get(parent.as_str()) {
                    Some(1) => {
                        let from = path
                            .iter()
                            .position(|(n, _)| *n == parent.as_str())
                            .unwrap_or(0);
                        // Parents point up: read the path backwards for "runs before".
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(n, _)| (*n).to_owned()).collect();
                        cycle.push(parent.clone());
                        cycle.reverse();
                        return Some(cycle);
                    }
                    Some(_) => {}
                    None => {
                        state.insert(parent.as_str(), 1);
                        path.push((parent.as_str(), 0));
                    }
                }
            } else {
                state.insert(*node, 2);
                path.pop();
            }
        }
    }
    None
}

impl App {
    /// Submits a workflow in one statement, all or nothing: its roots are deferred, its
    /// other nodes wait for their parents. Its id.
    ///
    /// # Errors
    /// As [`Workflow::into_params`], before anything is written;
    /// [`Error::AlreadyEnqueued`] when a root's queueing lock is taken; a database error.
    pub async fn defer_workflow(&self, workflow: Workflow<'_>) -> Result<i64> {
        let params = workflow.into_params()?;
        self.store().defer_workflow(&params).await
    }

    /// Submits a workflow inside the caller's transaction: its roots' jobs are visible,
    /// and announced, only when it commits; a rollback leaves no trace of it.
    ///
    /// # Errors
    /// As [`App::defer_workflow`].
    pub async fn defer_workflow_in<Tx: Transaction>(
        &self,
        tx: &mut Tx,
        workflow: Workflow<'_>,
    ) -> Result<i64> {
        let params = workflow.into_params()?;
        tx.defer_workflow(&params).await
    }

    /// A workflow with each node's status and job, by node name; `None` when there is no
    /// such workflow.
    ///
    /// # Errors
    /// A database error.
    pub async fn workflow_status(&self, id: i64) -> Result<Option<WorkflowRow>> {
        self.store().get_workflow(id).await
    }

    /// The newest workflows, at most `limit`, newest first, with their nodes counted per
    /// status.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_workflows(&self, limit: i64) -> Result<Vec<WorkflowRow>> {
        self.store().list_workflows(limit).await
    }
}

/// Nodes counted per status, for a summary line (`a: 3 succeeded, 1 waiting`).
#[must_use]
pub fn summary(counts: &BTreeMap<NodeStatus, i64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    if parts.is_empty() {
        "no node".to_owned()
    } else {
        parts.join(", ")
    }
}
