//! The workflow service: finds the ends of workflow nodes that no finish of this
//! process recorded, and advances their workflows (docs/adr/0019-workflows.md).
//!
//! A Rust worker records a node's end in the statement that finishes its job, and
//! advances the workflow at once. A job ended elsewhere (run by a Python worker, cancelled
//! by a user, failed by the rescue) is found here, every `fetch_job_polling_interval`:
//! one `sync_workflows` statement (an index scan of the released nodes), then
//! `advance_workflows` for the workflows it found. So a Python parent releases its
//! children within one interval of a Rust worker's pass.

use std::sync::Arc;
use std::time::Duration;

use super::{Next, Service, Start};
use crate::store::Store;
use crate::worker::Emitter;

/// The workflow service.
#[derive(Debug)]
pub(crate) struct WorkflowSync {
    store: Arc<dyn Store>,
    interval: Duration,
    emitter: Emitter,
}

impl WorkflowSync {
    /// A pass every `interval`.
    pub(crate) fn new(store: Arc<dyn Store>, interval: Duration, emitter: Emitter) -> Self {
        Self {
            store,
            interval,
            emitter,
        }
    }
}

impl Service for WorkflowSync {
    const NAME: &'static str = "workflows";

    fn start(&self) -> Start {
        Start::Now
    }

    async fn run_once(&mut self) -> Next {
        match self.store.sync_workflows().await {
            Ok(0) => {}
            Ok(advanced) => tracing::debug!(advanced, "workflows advanced by the service"),
            Err(error) => {
                self.emitter.database_error("sync_workflows", &error);
                tracing::warn!(%error, "syncing workflows failed");
            }
        }
        Next::After(self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{
        DeferJobParams, FinishJobParams, NodeStatus, OnParentFailure, WorkflowNodeParams,
        WorkflowParams,
    };
    use crate::telemetry::Telemetry;
    use crate::worker::Registration;

    fn node(name: &str, parents: &[&str]) -> WorkflowNodeParams {
        WorkflowNodeParams {
            name: name.to_owned(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            job: DeferJobParams {
                queue_name: "q".to_owned(),
                task_name: "t".to_owned(),
                priority: 0,
                lock: None,
                queueing_lock: None,
                args: serde_json::json!({}),
                scheduled_at: None,
                timeout: None,
                trace_context: None,
                flow: Vec::new(),
            },
        }
    }

    /// A parent's job cancelled by hand (no finish records it): a pass records the node
    /// and cancels its child; a parent finished by a worker released its own child at once.
    #[tokio::test]
    async fn a_pass_records_ends_written_elsewhere_and_advances() {
        let memory = MemoryStore::new();
        let store: Arc<dyn Store> = Arc::new(memory.clone());
        let workflow = WorkflowParams {
            name: "w".to_owned(),
            on_parent_failure: OnParentFailure::Cancel,
            nodes: vec![
                node("a", &[]),
                node("b", &["a"]),
                node("c", &[]),
                node("d", &["c"]),
            ],
        };
        let id = store.defer_workflow(&workflow).await.expect("defer");
        let jobs = |status: crate::store::WorkflowRow| {
            status
                .nodes
                .into_iter()
                .map(|n| (n.name, n.job_id))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let before = jobs(store.get_workflow(id).await.expect("get").expect("exists"));
        let (a, c) = (before["a"].expect("a root"), before["c"].expect("a root"));
        store.cancel_job(a, false, false).await.expect("cancel");
        store
            .finish_jobs(&[FinishJobParams {
                id: c,
                status: crate::job::JobStatus::Succeeded,
                delete_job: false,
                error: None,
                result: None,
            }])
            .await
            .expect("finish");
        let after = jobs(store.get_workflow(id).await.expect("get").expect("exists"));
        assert!(after["d"].is_some(), "released by the finish");
        assert_eq!(after["b"], None);
        assert_eq!(memory.jobs().len(), 3, "a, c and d");

        let registration = Registration::register(store.clone())
            .await
            .expect("register");
        let emitter = Emitter::new(Telemetry::default(), registration);
        let mut service = WorkflowSync::new(store.clone(), Duration::from_secs(5), emitter);
        assert_eq!(
            service.run_once().await,
            Next::After(Duration::from_secs(5))
        );
        let status = store.get_workflow(id).await.expect("get").expect("exists");
        let of = |name: &str| {
            status
                .nodes
                .iter()
                .find(|n| n.name == name)
                .map(|n| n.status)
        };
        assert_eq!(of("a"), Some(NodeStatus::Cancelled));
        assert_eq!(of("b"), Some(NodeStatus::Cancelled));
        assert_eq!(of("c"), Some(NodeStatus::Succeeded));
        assert_eq!(of("d"), Some(NodeStatus::Released));
    }
}
