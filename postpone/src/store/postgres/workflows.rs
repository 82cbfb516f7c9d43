//! Workflows on PostgreSQL (`postpone_workflows`, `postpone_workflow_nodes`, schema
//! migration 0009; docs/adr/0019-workflows.md): the insert (also in the caller's
//! transaction, `tx.rs`), the advance after finishes, the service's pass, the reads.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{PgStore, db, flow_json, queries, timeout_ms};
use crate::Result;
use crate::store::{
    NodeParents, NodeStatus, OnParentFailure, ParentOutcome, WorkflowNodeRow, WorkflowParams,
    WorkflowRow,
};

/// The columns of `defer_workflow`, one array each (`$3` to `$13`), after its name and
/// policy.
pub(crate) struct WorkflowColumns {
    pub(crate) name: String,
    pub(crate) on_parent_failure: &'static str,
    pub(crate) names: Vec<String>,
    /// Each node's parents as a JSON array of names.
    pub(crate) parents: Vec<String>,
    pub(crate) queue_names: Vec<String>,
    pub(crate) task_names: Vec<String>,
    pub(crate) priorities: Vec<i32>,
    pub(crate) locks: Vec<Option<String>>,
    pub(crate) queueing_locks: Vec<Option<String>>,
    pub(crate) args: Vec<String>,
    pub(crate) scheduled_ats: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    pub(crate) timeouts_ms: Vec<Option<i64>>,
    /// Each node's flow-control buckets, a JSON array (`None`: none).
    pub(crate) flows: Vec<Option<String>>,
}

impl WorkflowColumns {
    pub(crate) fn new(workflow: &WorkflowParams) -> Self {
        let nodes = &workflow.nodes;
        Self {
            name: workflow.name.clone(),
            on_parent_failure: workflow.on_parent_failure.as_str(),
            names: nodes.iter().map(|n| n.name.clone()).collect(),
            parents: nodes
                .iter()
                .map(|n| serde_json::Value::from(n.parents.clone()).to_string())
                .collect(),
            queue_names: nodes.iter().map(|n| n.job.queue_name.clone()).collect(),
            task_names: nodes.iter().map(|n| n.job.task_name.clone()).collect(),
            priorities: nodes.iter().map(|n| n.job.priority).collect(),
            locks: nodes.iter().map(|n| n.job.lock.clone()).collect(),
            queueing_locks: nodes.iter().map(|n| n.job.queueing_lock.clone()).collect(),
            args: nodes.iter().map(|n| n.job.args.to_string()).collect(),
            scheduled_ats: nodes.iter().map(|n| n.job.scheduled_at).collect(),
            timeouts_ms: nodes
                .iter()
                .map(|n| n.job.timeout.map(timeout_ms))
                .collect(),
            flows: nodes.iter().map(|n| flow_json(&n.job.flow)).collect(),
        }
    }

    /// `$1` to `$13`.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 13] {
        [
            &self.name,
            &self.on_parent_failure,
            &self.names,
            &self.parents,
            &self.queue_names,
            &self.task_names,
            &self.priorities,
            &self.locks,
            &self.queueing_locks,
            &self.args,
            &self.scheduled_ats,
            &self.timeouts_ms,
            &self.flows,
        ]
    }
}

/// Runs `defer_workflow` on any tokio-postgres client or transaction; the workflow's id.
pub(crate) async fn defer_workflow_on<C, S>(
    client: &C,
    statement: &S,
    columns: &WorkflowColumns,
) -> Result<i64>
where
    C: tokio_postgres::GenericClient + Sync,
    S: tokio_postgres::ToStatement + Send + Sync + ?Sized,
{
    let row = client
        .query_one(statement, &columns.params())
        .await
        .map_err(db)?;
    row.try_get(0).map_err(db)
}

fn workflow_row(row: &Row) -> Result<WorkflowRow> {
    let policy: String = row.try_get("on_parent_failure").map_err(db)?;
    Ok(WorkflowRow {
        id: row.try_get("id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        on_parent_failure: policy.parse::<OnParentFailure>()?,
        created_at: row.try_get("created_at").map_err(db)?,
        nodes: Vec::new(),
        counts: BTreeMap::new(),
    })
}

impl PgStore {
    /// `defer_workflow`.
    pub(super) async fn workflows_defer(&self, workflow: &WorkflowParams) -> Result<i64> {
        // Before the roots can run: this store's finishes record them from now on.
        self.nodes_may_run.store(true, Ordering::Relaxed);
        let columns = WorkflowColumns::new(workflow);
        let rows = self
            .query(queries::DEFER_WORKFLOW, &columns.params())
            .await?;
        let id = match rows.first() {
            Some(row) => row.try_get(0).map_err(db)?,
            None => {
                return Err(crate::Error::InvalidInput(
                    "the database returned no id for the workflow".to_owned(),
                ));
            }
        };
        tracing::debug!(
            workflow_id = id,
            nodes = workflow.nodes.len(),
            "workflow deferred"
        );
        Ok(id)
    }

    /// `advance_workflows` for these workflows (none: nothing sent), looking at the
    /// children of the nodes `ended` only.
    pub(super) async fn workflows_advance(&self, ids: &[i64], ended: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let rows = self
            .query(queries::ADVANCE_WORKFLOWS, &[&ids, &ended])
            .await?;
        if let Some(row) = rows.first() {
            let cancelled: i64 = row.try_get("cancelled").map_err(db)?;
            let released: i64 = row.try_get("released").map_err(db)?;
            tracing::debug!(workflows = ?ids, cancelled, released, "workflows advanced");
        }
        Ok(())
    }

    /// `sync_workflows`, `advance_workflows` for what it found, then `any_running_nodes`,
    /// kept for the finish statements' choice.
    pub(super) async fn workflows_sync(&self) -> Result<u64> {
        let advanced = self.workflows_sync_once().await?;
        // Read after the advance, so that the nodes it released count. A node released
        // after this read by another process (its workflow's notification missed, or a
        // Python parent's end) and finished without the node statement is recorded by
        // the next pass.
        let running = self.query(queries::ANY_RUNNING_NODES, &[]).await?;
        let running = match running.first() {
            Some(row) => row.try_get::<_, bool>(0).map_err(db)?,
            None => true,
        };
        self.nodes_may_run.store(running, Ordering::Relaxed);
        Ok(advanced)
    }

    /// `sync_workflows`, then `advance_workflows` for what it found.
    async fn workflows_sync_once(&self) -> Result<u64> {
        let rows = self.query(queries::SYNC_WORKFLOWS, &[]).await?;
        let mut ids = std::collections::BTreeSet::new();
        let mut ended = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.insert(row.try_get::<_, i64>("workflow_id").map_err(db)?);
            ended.push(row.try_get::<_, String>("name").map_err(db)?);
        }
        let ids: Vec<i64> = ids.into_iter().collect();
        self.workflows_advance(&ids, &ended).await?;
        Ok(ids.len() as u64)
    }

    /// `get_workflow` and `list_workflow_nodes`.
    pub(super) async fn workflows_get(&self, id: i64) -> Result<Option<WorkflowRow>> {
        let rows = self.query(queries::GET_WORKFLOW, &[&id]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let mut workflow = workflow_row(row)?;
        for row in self.query(queries::LIST_WORKFLOW_NODES, &[&id]).await? {
            let status: String = row.try_get("status").map_err(db)?;
            let status = status.parse::<NodeStatus>()?;
            *workflow.counts.entry(status).or_default() += 1;
            workflow.nodes.push(WorkflowNodeRow {
                name: row.try_get("name").map_err(db)?,
                parents: row.try_get("parents").map_err(db)?,
                status,
                job_id: row.try_get("job_id").map_err(db)?,
                task_name: row.try_get("task_name").map_err(db)?,
                ended_at: row.try_get("ended_at").map_err(db)?,
            });
        }
        Ok(Some(workflow))
    }

    /// `list_workflows`.
    pub(super) async fn workflows_list(&self, limit: i64) -> Result<Vec<WorkflowRow>> {
        let rows = self.query(queries::LIST_WORKFLOWS, &[&limit]).await?;
        rows.iter()
            .map(|row| {
                let mut workflow = workflow_row(row)?;
                let counts: Option<String> = row.try_get("counts").map_err(db)?;
                let counts: BTreeMap<String, i64> = match counts {
                    Some(text) => serde_json::from_str(&text).map_err(|e| {
                        crate::Error::InvalidInput(format!(
                            "workflow {}: unreadable node counts: {e}",
                            workflow.id
                        ))
                    })?,
                    None => BTreeMap::new(),
                };
                for (status, n) in counts {
                    workflow.counts.insert(status.parse()?, n);
                }
                Ok(workflow)
            })
            .collect()
    }

    /// `list_parent_outcomes`.
    pub(super) async fn workflows_parent_outcomes(
        &self,
        job_id: i64,
    ) -> Result<Option<NodeParents>> {
        let rows = self
            .query(queries::LIST_PARENT_OUTCOMES, &[&job_id])
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut node = NodeParents {
            workflow_id: first.try_get("workflow_id").map_err(db)?,
            name: first.try_get("node_name").map_err(db)?,
            parents: Vec::new(),
        };
        for row in &rows {
            let Some(name) = row
                .try_get::<_, Option<String>>("parent_name")
                .map_err(db)?
            else {
                continue;
            };
            let status: String = row.try_get("parent_status").map_err(db)?;
            node.parents.push(ParentOutcome {
                name,
                status: status.parse()?,
                job_id: row.try_get("parent_job_id").map_err(db)?,
                result: row.try_get("parent_result").map_err(db)?,
            });
        }
        Ok(Some(node))
    }
}
