#![doc = include_str!("../../README.md")]
#![forbid(unsafe_code)]

pub mod app;
pub mod blueprint;
pub mod builtin;
pub mod connect;
pub mod context;
pub mod defer;
pub mod error;
pub mod flow;
pub mod job;
pub(crate) mod maintenance;
pub mod manager;
pub mod middleware;
pub mod periodic;
pub mod protocol;
pub mod result;
pub mod retry;
pub mod schema;
pub mod store;
pub mod task;
pub mod telemetry;
pub mod testing;
pub(crate) mod trace;
pub mod worker;
pub mod workflow;

pub use app::{App, AppBuilder};
pub use blueprint::Blueprint;
pub use defer::{Configured, JobSpec};
pub use error::{DbError, Error, Result};
pub use job::{Job, JobOptions, JobStatus, RetryDecision};
pub use manager::{JobFilter, JobManager};
pub use periodic::Periodic;
pub use result::{JobHandle, JobOutcome};
pub use schema::ApplyScope;
pub use store::memory::MemoryStore;
pub use task::{Task, TaskConfig, TaskWithOutput};
pub use worker::{WorkerConfig, WorkerHandle};
pub use workflow::{OnParentFailure, Workflow};

/// The guides of the `docs/` folder, compiled here so that their examples are tested
/// (`cargo test --doc`). The command line's guides (`cli`, `migration`) are compiled by
/// `postpone-cli`, whose examples embed it.
pub mod guide {
    #[doc = include_str!("../../docs/tasks.md")]
    pub mod tasks {}
    #[doc = include_str!("../../docs/deferring.md")]
    pub mod deferring {}
    #[doc = include_str!("../../docs/worker.md")]
    pub mod worker {}
    #[doc = include_str!("../../docs/retries.md")]
    pub mod retries {}
    #[doc = include_str!("../../docs/results.md")]
    pub mod results {}
    #[doc = include_str!("../../docs/workflows.md")]
    pub mod workflows {}
    #[doc = include_str!("../../docs/locks.md")]
    pub mod locks {}
    #[doc = include_str!("../../docs/flow-control.md")]
    pub mod flow_control {}
    #[doc = include_str!("../../docs/periodic.md")]
    pub mod periodic {}
    #[doc = include_str!("../../docs/blueprints.md")]
    pub mod blueprints {}
    #[doc = include_str!("../../docs/testing.md")]
    pub mod testing {}
    #[doc = include_str!("../../docs/interop.md")]
    pub mod interop {}
    #[doc = include_str!("../../docs/schema.md")]
    pub mod schema {}
    #[doc = include_str!("../../docs/performance.md")]
    pub mod performance {}
    #[doc = include_str!("../../docs/pgbouncer.md")]
    pub mod pgbouncer {}
    #[doc = include_str!("../../docs/architecture.md")]
    pub mod architecture {}
}
