//! A user's binary embedding the `postpone` CLI with tasks made for process-level tests
//! (`postpone-cli/tests/worker_process.rs`): they print what they do on stdout, one line
//! per fact, flushed at once, so that a test reading several workers' outputs can order
//! the facts in time:
//!
//! ```text
//! start <label> <unix_micros> <pid> <job_id>
//! end <label> <unix_micros> <pid> <job_id>
//! fail <label> <unix_micros> <pid> <job_id>
//! dropped <label> <unix_micros> <pid> <job_id>          (a cancelled future was dropped)
//! abort_seen <label> <unix_micros> <pid> <job_id> <Reason>
//! ```
//!
//! Tasks:
//! - `tests.sleep {label, millis}`: start, sleeps, end;
//! - `tests.forever {label}`: start, then waits forever (only an abort ends it);
//! - `tests.fail {label}`: fail, then returns an error; retried twice, 1 s apart;
//! - `tests.poll {label}`: blocking code polling `ctx.should_abort()`, then prints the
//!   abort reason it saw;
//! - `tests.crash {label}`: start, then kills its own worker process on the spot (a poison
//!   job); retried once.
//!
//! Run it with: `cargo run -p postpone-cli --example fleet -- worker --concurrency 3`

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postpone::retry::RetryStrategy;
use postpone::task::{JobContext, TaskError};
use postpone::{App, Task, TaskConfig};
use serde::{Deserialize, Serialize};

/// Prints one fact line and flushes it.
fn say(kind: &str, label: &str, ctx: &JobContext, extra: &str) {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{kind} {label} {micros} {} {}{extra}",
        std::process::id(),
        ctx.job().id
    );
    let _ = out.flush();
}

/// Prints `dropped ...` when dropped: a `tests.forever` future only ends so (an abort).
struct OnDrop {
    label: String,
    ctx: JobContext,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        say("dropped", &self.label, &self.ctx, "");
    }
}

/// Sleeps `millis` milliseconds.
#[derive(Debug, Serialize, Deserialize)]
struct Sleep {
    label: String,
    millis: u64,
}

impl Task for Sleep {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.sleep".into()
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        say("start", &self.label, &ctx, "");
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        say("end", &self.label, &ctx, "");
        Ok(())
    }
}

/// Runs until aborted.
#[derive(Debug, Serialize, Deserialize)]
struct Forever {
    label: String,
}

impl Task for Forever {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.forever".into()
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        say("start", &self.label, &ctx, "");
        let _guard = OnDrop {
            label: self.label,
            ctx,
        };
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Always fails; retried twice, 1 s apart (3 attempts in all).
#[derive(Debug, Serialize, Deserialize)]
struct Fail {
    label: String,
}

impl Task for Fail {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.fail".into()
    }

    fn config() -> TaskConfig {
        TaskConfig::default()
            .with_retry(RetryStrategy::max_attempts(2).with_wait(Duration::from_secs(1)))
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        say("fail", &self.label, &ctx, "");
        Err(TaskError::new(
            "Boom",
            format!("tests.fail {} fails on purpose", self.label),
        ))
    }
}

/// Blocking code that polls `should_abort`, then reports the reason.
#[derive(Debug, Serialize, Deserialize)]
struct Poll {
    label: String,
}

impl Task for Poll {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.poll".into()
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        say("start", &self.label, &ctx, "");
        let reason = tokio::task::spawn_blocking(move || {
            while !ctx.should_abort() {
                std::thread::sleep(Duration::from_millis(10));
            }
            let reason = ctx.abort_reason();
            let name = reason.map_or_else(|| "None".to_owned(), |r| format!("{r:?}"));
            say("abort_seen", &self.label, &ctx, &format!(" {name}"));
            reason
        })
        .await
        .map_err(|e| TaskError::msg(format!("the blocking loop failed: {e}")))?;
        Err(TaskError::new("Aborted", format!("stopped: {reason:?}")))
    }
}

/// Kills its worker process as soon as it starts, as a poison job does; retried once.
#[derive(Debug, Serialize, Deserialize)]
struct Crash {
    label: String,
}

impl Task for Crash {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.crash".into()
    }

    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(RetryStrategy::max_attempts(1))
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        say("start", &self.label, &ctx, "");
        std::process::abort();
    }
}

fn main() -> ExitCode {
    postpone_cli::run(
        App::builder()
            .task::<Sleep>()
            .task::<Forever>()
            .task::<Fail>()
            .task::<Poll>()
            .task::<Crash>(),
    )
}
