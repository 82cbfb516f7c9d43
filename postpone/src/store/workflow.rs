//! What the store takes and gives for workflows (`postpone_workflows`,
//! `postpone_workflow_nodes`, schema migration 0009; docs/adr/0019-workflows.md): the
//! workflow to insert, its status, a node's parents' outcomes. Plain data, shared by both
//! stores.
//!
//! The rules both stores keep (`advance_workflows.sql` and the memory store's
//! `advance`):
//! - a node waits outside `procrastinate_jobs` until it is released: its job is inserted
//!   then, and only then can a worker (a Python one too) fetch it;
//! - under [`OnParentFailure::Cancel`] a node is released when every parent
//!   [`NodeStatus::Succeeded`], and cancelled (with every waiting node below it) as soon
//!   as one parent ends otherwise; under [`OnParentFailure::Run`] it is released once
//!   every parent has ended, however;
//! - a node is released once, whoever advances the workflow (two workers finishing two
//!   parents at once included).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::DeferJobParams;
use crate::job::JobStatus;
use crate::{Error, Result};

/// What a parent that ends without success (failed, cancelled, aborted) does to the
/// nodes below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnParentFailure {
    /// Its dependents are cancelled, transitively, without ever running (the default).
    #[default]
    Cancel,
    /// Its dependents run anyway, once all their parents have ended.
    Run,
}

impl OnParentFailure {
    /// The name stored in `postpone_workflows.on_parent_failure`: `cancel` or `run`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Run => "run",
        }
    }
}

impl fmt::Display for OnParentFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnParentFailure {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cancel" => Ok(Self::Cancel),
            "run" => Ok(Self::Run),
            other => Err(Error::InvalidInput(format!(
                "unknown on_parent_failure {other:?}: expected cancel or run"
            ))),
        }
    }
}

/// Where a workflow node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Its parents have not allowed it to run yet: it has no job.
    Waiting,
    /// Its job exists (todo or doing).
    Released,
    /// Its job succeeded.
    Succeeded,
    /// Its job failed for good.
    Failed,
    /// Its job was cancelled, or (without a job) a parent's failure cancelled it.
    Cancelled,
    /// Its job was aborted.
    Aborted,
}

impl NodeStatus {
    /// Every status.
    pub const ALL: [Self; 6] = [
        Self::Waiting,
        Self::Released,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Aborted,
    ];

    /// The name stored in `postpone_workflow_nodes.status`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Released => "released",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Aborted => "aborted",
        }
    }

    /// True once the node has ended (it never changes again).
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Aborted
        )
    }

    /// The node status a job's final status records; `None` for a job still running.
    #[must_use]
    pub const fn of_job(status: JobStatus) -> Option<Self> {
        match status {
            JobStatus::Succeeded => Some(Self::Succeeded),
            JobStatus::Failed => Some(Self::Failed),
            JobStatus::Cancelled => Some(Self::Cancelled),
            JobStatus::Aborted => Some(Self::Aborted),
            JobStatus::Todo | JobStatus::Doing | JobStatus::Aborting => None,
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown workflow node status {s:?}: expected one of waiting, released, succeeded, failed, cancelled, aborted"
                ))
            })
    }
}

/// One node of a workflow to insert: its name, its parents' names, its job.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowNodeParams {
    /// Unique in its workflow.
    pub name: String,
    /// The nodes that must end first, by name (none: a root, inserted as a job at once).
    pub parents: Vec<String>,
    /// The job it becomes.
    pub job: DeferJobParams,
}

/// A validated workflow to insert (made by `Workflow`, which checks it): names unique,
/// parents inside it, no cycle, at least one node.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowParams {
    /// Its name, for people.
    pub name: String,
    /// What a parent's failure does.
    pub on_parent_failure: OnParentFailure,
    /// Its nodes.
    pub nodes: Vec<WorkflowNodeParams>,
}

/// A workflow, as [`crate::store::Store::get_workflow`] and `list_workflows` read it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkflowRow {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// What a parent's failure does.
    pub on_parent_failure: OnParentFailure,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// Its nodes, by name (empty in lists).
    pub nodes: Vec<WorkflowNodeRow>,
    /// How many nodes it has, per status.
    pub counts: std::collections::BTreeMap<NodeStatus, i64>,
}

impl WorkflowRow {
    /// True once every node has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.counts
            .iter()
            .all(|(status, n)| status.is_final() || *n == 0)
    }

    /// How many nodes are in `status`.
    #[must_use]
    pub fn count(&self, status: NodeStatus) -> i64 {
        self.counts.get(&status).copied().unwrap_or(0)
    }
}

/// One node of a workflow, as it stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkflowNodeRow {
    /// Its name.
    pub name: String,
    /// Its parents' names.
    pub parents: Vec<String>,
    /// Where it stands.
    pub status: NodeStatus,
    /// Its job, once released (it may have been deleted since).
    pub job_id: Option<i64>,
    /// Its task.
    pub task_name: String,
    /// When its end was recorded.
    pub ended_at: Option<DateTime<Utc>>,
}

/// One parent of a running node, with its outcome and its result (a copy kept with the
/// node, so still there when the delete policy removed the parent's job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentOutcome {
    /// The parent's node name.
    pub name: String,
    /// How it ended (or stands).
    pub status: NodeStatus,
    /// The parent's job.
    pub job_id: Option<i64>,
    /// Its result as JSON text, when its task set one.
    pub result: Option<String>,
}

/// A workflow job's node and its parents' outcomes
/// ([`crate::store::Store::list_parent_outcomes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeParents {
    /// The workflow.
    pub workflow_id: i64,
    /// The job's node name.
    pub name: String,
    /// Its parents, by name (none for a root).
    pub parents: Vec<ParentOutcome>,
}
