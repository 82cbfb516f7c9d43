//! Workflows in memory: `defer_workflow.sql`, the node ends `finish_jobs.sql` records,
//! `advance_workflows.sql`, `sync_workflows.sql` and the reads, with the same rules (see
//! [`crate::store::workflow`]). One lock holds the whole state, so a node is released
//! once without more ado.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::state::State;
use crate::Result;
use crate::job::JobStatus;
use crate::store::{
    DeferJobParams, NodeParents, NodeStatus, OnParentFailure, ParentOutcome, WorkflowNodeRow,
    WorkflowParams, WorkflowRow,
};

/// A row of `postpone_workflows`, with its nodes.
#[derive(Debug)]
pub(super) struct MemWorkflow {
    name: String,
    on_parent_failure: OnParentFailure,
    created_at: DateTime<Utc>,
    nodes: BTreeMap<String, MemNode>,
}

/// A row of `postpone_workflow_nodes`.
#[derive(Debug)]
struct MemNode {
    parents: Vec<String>,
    status: NodeStatus,
    job_id: Option<i64>,
    result: Option<String>,
    job: DeferJobParams,
    ended_at: Option<DateTime<Utc>>,
}

/// The workflow tables.
#[derive(Debug, Default)]
pub(super) struct Workflows {
    rows: BTreeMap<i64, MemWorkflow>,
    last_id: i64,
    /// `postpone_workflow_nodes_job_id_idx`: a job's node.
    by_job: BTreeMap<i64, (i64, String)>,
}

/// What an operation inserted, for the store's `job_inserted` notifications.
pub(super) type Inserted = Vec<(i64, String)>;

impl State {
    /// `defer_workflow.sql`: the roots as jobs (all or nothing, as `defer_jobs`), then the
    /// workflow and its nodes; its id and the jobs inserted.
    pub(super) fn defer_workflow(
        &mut self,
        workflow: &WorkflowParams,
        now: DateTime<Utc>,
    ) -> Result<(i64, Inserted)> {
        let roots: Vec<&crate::store::WorkflowNodeParams> = workflow
            .nodes
            .iter()
            .filter(|n| n.parents.is_empty())
            .collect();
        let jobs: Vec<DeferJobParams> = roots.iter().map(|n| n.job.clone()).collect();
        // Every other node is checked as a job would be, before anything is written.
        for node in &workflow.nodes {
            super::state::check_defer(&node.job)?;
        }
        let ids = self.insert_jobs(&jobs, now)?;
        let mut job_of: BTreeMap<&str, i64> = BTreeMap::new();
        for (node, id) in roots.iter().zip(&ids) {
            job_of.insert(node.name.as_str(), *id);
        }
        self.workflows.last_id += 1;
        let id = self.workflows.last_id;
        let mut nodes = BTreeMap::new();
        for node in &workflow.nodes {
            let job_id = job_of.get(node.name.as_str()).copied();
            if let Some(job_id) = job_id {
                self.workflows
                    .by_job
                    .insert(job_id, (id, node.name.clone()));
            }
            nodes.insert(
                node.name.clone(),
                MemNode {
                    parents: node.parents.clone(),
                    status: if job_id.is_some() {
                        NodeStatus::Released
                    } else {
                        NodeStatus::Waiting
                    },
                    job_id,
                    result: None,
                    job: node.job.clone(),
                    ended_at: None,
                },
            );
        }
        self.workflows.rows.insert(
            id,
            MemWorkflow {
                name: workflow.name.clone(),
                on_parent_failure: workflow.on_parent_failure,
                created_at: now,
                nodes,
            },
        );
        let inserted = ids
            .into_iter()
            .zip(jobs)
            .map(|(id, job)| (id, job.queue_name))
            .collect();
        Ok((id, inserted))
    }

    /// `finish_jobs.sql`'s `nodes`: the ends of these jobs recorded on their released
    /// nodes, with their results; the workflows concerned.
    pub(super) fn record_node_ends(
        &mut self,
        ends: &[(i64, JobStatus, Option<String>)],
        now: DateTime<Utc>,
    ) -> BTreeSet<i64> {
        let mut touched = BTreeSet::new();
        for (job_id, status, result) in ends {
            let Some(status) = NodeStatus::of_job(*status) else {
                continue;
            };
            let Some((workflow_id, name)) = self.workflows.by_job.get(job_id).cloned() else {
                continue;
            };
            let node = self
                .workflows
                .rows
                .get_mut(&workflow_id)
                .and_then(|w| w.nodes.get_mut(&name));
            if let Some(node) = node {
                if node.status == NodeStatus::Released {
                    node.status = status;
                    node.result = result.clone();
                    node.ended_at = Some(now);
                    touched.insert(workflow_id);
                }
            }
        }
        touched
    }

    /// `advance_workflows.sql`: under 'cancel', the waiting nodes below a parent that
    /// ended without success cancelled, transitively; the waiting nodes whose parents
    /// allow it released as jobs. The jobs inserted.
    pub(super) fn advance_workflows(
        &mut self,
        ids: &BTreeSet<i64>,
        now: DateTime<Utc>,
    ) -> Result<Inserted> {
        let mut inserted = Vec::new();
        for id in ids {
            let Some(workflow) = self.workflows.rows.get_mut(id) else {
                continue;
            };
            let policy = workflow.on_parent_failure;
            if policy == OnParentFailure::Cancel {
                // Until nothing changes: a cancelled node dooms its waiting children.
                loop {
                    let doomed: Vec<String> = workflow
                        .nodes
                        .iter()
                        .filter(|(_, node)| node.status == NodeStatus::Waiting)
                        .filter(|(_, node)| {
                            node.parents.iter().any(|p| {
                                workflow.nodes.get(p).is_some_and(|parent| {
                                    parent.status.is_final()
                                        && parent.status != NodeStatus::Succeeded
                                })
                            })
                        })
                        .map(|(name, _)| name.clone())
                        .collect();
                    if doomed.is_empty() {
                        break;
                    }
                    for name in doomed {
                        if let Some(node) = workflow.nodes.get_mut(&name) {
                            node.status = NodeStatus::Cancelled;
                            node.ended_at = Some(now);
                        }
                    }
                }
            }
            let ready: Vec<String> = workflow
                .nodes
                .iter()
                .filter(|(_, node)| node.status == NodeStatus::Waiting)
                .filter(|(_, node)| {
                    node.parents.iter().all(|p| {
                        workflow.nodes.get(p).is_some_and(|parent| match policy {
                            OnParentFailure::Cancel => parent.status == NodeStatus::Succeeded,
                            OnParentFailure::Run => parent.status.is_final(),
                        })
                    })
                })
                .map(|(name, _)| name.clone())
                .collect();
            if ready.is_empty() {
                continue;
            }
            let jobs: Vec<DeferJobParams> = ready
                .iter()
                .filter_map(|name| workflow.nodes.get(name).map(|n| n.job.clone()))
                .collect();
            let job_ids = self.insert_jobs(&jobs, now)?;
            let Some(workflow) = self.workflows.rows.get_mut(id) else {
                continue;
            };
            for ((name, job_id), job) in ready.into_iter().zip(job_ids).zip(jobs) {
                if let Some(node) = workflow.nodes.get_mut(&name) {
                    node.status = NodeStatus::Released;
                    node.job_id = Some(job_id);
                }
                self.workflows.by_job.insert(job_id, (*id, name));
                inserted.push((job_id, job.queue_name));
            }
        }
        Ok(inserted)
    }

    /// `sync_workflows.sql`: the released nodes whose job ended (or is gone: cancelled)
    /// recorded; the workflows to advance (those, and those with a waiting node whose
    /// parents have all ended).
    pub(super) fn sync_workflows(&mut self, now: DateTime<Utc>) -> BTreeSet<i64> {
        let mut ends = Vec::new();
        for node in self
            .workflows
            .rows
            .values()
            .flat_map(|w| w.nodes.values())
            .filter(|n| n.status == NodeStatus::Released)
        {
            let Some(job_id) = node.job_id else { continue };
            match self.jobs.get(&job_id) {
                None => ends.push((job_id, JobStatus::Cancelled, None)),
                Some(job) if job.status.is_final() => ends.push((
                    job_id,
                    job.status,
                    self.results.get(&job_id).map(|r| r.json.clone()),
                )),
                Some(_) => {}
            }
        }
        let mut ids = self.record_node_ends(&ends, now);
        for (id, workflow) in &self.workflows.rows {
            let stuck = workflow.nodes.values().any(|node| {
                node.status == NodeStatus::Waiting
                    && node.parents.iter().all(|p| {
                        workflow
                            .nodes
                            .get(p)
                            .is_some_and(|parent| parent.status.is_final())
                    })
            });
            if stuck {
                ids.insert(*id);
            }
        }
        ids
    }

    /// `get_workflow.sql` and `list_workflow_nodes.sql`.
    pub(super) fn get_workflow(&self, id: i64) -> Option<WorkflowRow> {
        let workflow = self.workflows.rows.get(&id)?;
        let mut row = workflow_row(id, workflow);
        row.nodes = workflow
            .nodes
            .iter()
            .map(|(name, node)| WorkflowNodeRow {
                name: name.clone(),
                parents: node.parents.clone(),
                status: node.status,
                job_id: node.job_id,
                task_name: node.job.task_name.clone(),
                ended_at: node.ended_at,
            })
            .collect();
        Some(row)
    }

    /// `delete_old_jobs.sql`'s workflows: those whose every node ended in one of
    /// `statuses` (and is of `queue`, when given) before `threshold` go, with their nodes.
    pub(super) fn delete_ended_workflows(
        &mut self,
        statuses: &[crate::job::JobStatus],
        queue: Option<&str>,
        threshold: DateTime<Utc>,
    ) {
        let ended = |node: &MemNode| {
            statuses.iter().any(|s| s.as_str() == node.status.as_str())
                && queue.is_none_or(|q| node.job.queue_name == q)
                && node.ended_at.is_some_and(|at| at < threshold)
        };
        let workflows = &mut self.workflows;
        workflows
            .rows
            .retain(|_, workflow| !workflow.nodes.values().all(ended));
        let rows = &workflows.rows;
        workflows
            .by_job
            .retain(|_, (workflow_id, _)| rows.contains_key(workflow_id));
    }

    /// `list_workflows.sql`.
    pub(super) fn list_workflows(&self, limit: usize) -> Vec<WorkflowRow> {
        self.workflows
            .rows
            .iter()
            .rev()
            .take(limit)
            .map(|(id, workflow)| workflow_row(*id, workflow))
            .collect()
    }

    /// `list_parent_outcomes.sql`.
    pub(super) fn parent_outcomes(&self, job_id: i64) -> Option<NodeParents> {
        let (workflow_id, name) = self.workflows.by_job.get(&job_id)?;
        let workflow = self.workflows.rows.get(workflow_id)?;
        let node = workflow.nodes.get(name)?;
        let mut parents: Vec<ParentOutcome> = node
            .parents
            .iter()
            .filter_map(|p| {
                workflow.nodes.get(p).map(|parent| ParentOutcome {
                    name: p.clone(),
                    status: parent.status,
                    job_id: parent.job_id,
                    result: parent.result.clone(),
                })
            })
            .collect();
        parents.sort_by(|a, b| a.name.cmp(&b.name));
        Some(NodeParents {
            workflow_id: *workflow_id,
            name: name.clone(),
            parents,
        })
    }
}

/// A workflow's row with its nodes counted, not listed.
fn workflow_row(id: i64, workflow: &MemWorkflow) -> WorkflowRow {
    let mut counts = BTreeMap::new();
    for node in workflow.nodes.values() {
        *counts.entry(node.status).or_default() += 1;
    }
    WorkflowRow {
        id,
        name: workflow.name.clone(),
        on_parent_failure: workflow.on_parent_failure,
        created_at: workflow.created_at,
        nodes: Vec::new(),
        counts,
    }
}
