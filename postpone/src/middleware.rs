//! Middleware: code around every attempt of a task (Procrastinate's task and worker
//! middleware), for logging, metrics, tracing spans or timeouts.
//!
//! A middleware receives the [`JobContext`] and the attempt as a future (`next`); it may
//! act before and after awaiting it, change its result, or not await it at all. Worker
//! middleware ([`crate::WorkerConfig::middleware`]) wraps task middleware
//! ([`crate::TaskConfig::with_middleware`]), which wraps the task itself; the first one
//! in a list is the outermost.
//!
//! ```
//! use postpone::middleware::{Middleware, Next};
//! use postpone::task::{JobContext, TaskError};
//! use std::sync::Arc;
//!
//! let timing: Arc<dyn Middleware> = Arc::new(|ctx: JobContext, next: Next| async move {
//!     let started = std::time::Instant::now();
//!     let result = next.await;
//!     tracing::info!(job_id = ctx.job().id, elapsed = ?started.elapsed(), ok = result.is_ok());
//!     result
//! });
//! ```

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::context::JobContext;
use crate::task::TaskError;

/// The rest of the attempt: inner middleware, then the task.
pub type Next = BoxFuture<'static, Result<(), TaskError>>;

/// Code around an attempt.
pub trait Middleware: Send + Sync + 'static {
    /// Runs the attempt (`next`), with whatever this middleware adds.
    fn call(&self, ctx: JobContext, next: Next) -> Next;
}

impl<F, Fut> Middleware for F
where
    F: Fn(JobContext, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    fn call(&self, ctx: JobContext, next: Next) -> Next {
        Box::pin(self(ctx, next))
    }
}

/// Wraps `inner` in `layers`, the first layer outermost.
pub(crate) fn wrap(layers: &[Arc<dyn Middleware>], ctx: &JobContext, inner: Next) -> Next {
    layers
        .iter()
        .rev()
        .fold(inner, |next, layer| layer.call(ctx.clone(), next))
}
