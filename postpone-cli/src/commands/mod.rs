//! One file per command group: each turns its raw flags into typed library calls and
//! prints the result. Adding a command (`worker`, `shell`, `demo`, `bench`) is one variant
//! in [`crate::flags::Command`], one file here, and one arm in [`run`].

#[cfg(feature = "dev-tools")]
mod bench;
#[cfg(feature = "dev-tools")]
mod chaos;
mod dashboard;
mod defer;
#[cfg(feature = "dev-tools")]
mod demo;
mod healthchecks;
mod jobs;
mod queues;
mod schema;
mod shell;
mod worker;
mod workflows;

use std::process::ExitCode;

use postpone::manager::CountBy;

use crate::Context;
use crate::flags::Command;

/// Runs one command; `Err` is printed as one line and exits 1, `Ok(code)` exits with it
/// (a failed check exits 1 after printing its own report).
pub(crate) async fn run(command: Command, context: Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Schema(command) => schema::run(command, context).await,
        Command::Defer(flags) => defer::run(flags, context).await,
        Command::Healthchecks => healthchecks::run(context).await,
        Command::Jobs(command) => jobs::run(command, context).await,
        Command::Workflows(command) => workflows::run(command, context).await,
        Command::Queues(flags) => queues::run(flags, context).await,
        Command::Tasks(flags) => jobs::counts(CountBy::Task, flags, context).await,
        Command::Locks(flags) => jobs::counts(CountBy::Lock, flags, context).await,
        Command::Retry(flags) => jobs::retry(flags, context).await,
        Command::Cancel(flags) => jobs::cancel(flags, context).await,
        Command::Abort(flags) => jobs::abort(flags, context).await,
        Command::Worker(flags) => worker::run(flags, context).await,
        #[cfg(feature = "dev-tools")]
        Command::Demo(flags) => demo::run(flags, context).await,
        #[cfg(feature = "dev-tools")]
        Command::Bench(flags) => bench::run(flags, context).await,
        #[cfg(feature = "dev-tools")]
        Command::BenchWorker(flags) => bench::worker(flags, context).await,
        #[cfg(feature = "dev-tools")]
        Command::Chaos(flags) => chaos::run(flags, context).await,
        #[cfg(feature = "dev-tools")]
        Command::ChaosWorker(flags) => chaos::worker(flags, context).await,
        Command::Dashboard(flags) => dashboard::run(flags, context).await,
        Command::Shell(flags) => shell::run(flags, context).await,
    }
}

/// Connects one client where the app connects, for the schema and health commands.
pub(crate) async fn connect(app: &postpone::App) -> anyhow::Result<tokio_postgres::Client> {
    let config = app.connect_config().ok_or_else(|| {
        anyhow::anyhow!("this app has no PostgreSQL database (it was built with another store)")
    })?;
    Ok(config.connect().await?)
}
