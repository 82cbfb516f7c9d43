//! The `postpone` command line, as a library so that your own binary embeds the same CLI
//! with its own tasks (Procrastinate's `procrastinate --app=module.app ...`).
//!
//! The `postpone` binary knows no task: it manages the schema and jobs, and defers tasks by
//! name with `--unknown`. Your binary registers its tasks, so `defer` checks their
//! arguments and `worker` runs them:
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use postpone::{App, Task, task::{JobContext, TaskError}};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add {
//!     a: i64,
//!     b: i64,
//! }
//!
//! impl Task for Add {
//!     fn name() -> std::borrow::Cow<'static, str> {
//!         "tests.add".into()
//!     }
//!     async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
//!         println!("{}", self.a + self.b);
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> ExitCode {
//!     postpone_cli::run(App::builder().task::<Add>())
//! }
//! ```
//!
//! Exit codes: 0 on success, 1 on any error (printed as one line `postpone: error: ...` on
//! stderr) or failed check, 2 for a command line clap refuses.
//! The layout follows ripgrep: [`flags`] holds the raw flags, `commands/` turns them into
//! typed library calls (one file per command group), [`output`] prints the results.

mod commands;
pub mod flags;
mod logging;
#[cfg(feature = "otlp")]
mod otlp;
/// The command line's guides from `docs/`, compiled here so that their examples, which
/// embed this crate, are tested (`cargo test --doc -p postpone-cli`).
pub mod guide {
    #[doc = include_str!("../../docs/cli.md")]
    pub mod cli {}
    #[doc = include_str!("../../docs/migration.md")]
    pub mod migration {}
}
pub mod output;
mod values;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use postpone::connect::ConnectConfig;
use postpone::{App, AppBuilder};

use crate::flags::Flags;
use crate::output::Format;

/// Parses the process arguments, runs the command with the tasks of `builder`, prints the
/// result, and returns the exit code. Call it from `main`.
#[must_use]
pub fn run(builder: AppBuilder) -> ExitCode {
    run_from(builder, std::env::args_os())
}

/// [`run`] with explicit arguments (the first one is the program name).
#[must_use]
pub fn run_from<I, T>(builder: AppBuilder, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let flags = match Flags::try_parse_from(args) {
        Ok(flags) => flags,
        Err(error) => {
            use clap::error::ErrorKind;
            // Help and version go to stdout with 0, as clap prints them; a usage error is
            // one line on stderr, exit 2.
            match error.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = error.print();
                }
                _ => eprintln!("postpone: error: {}", usage_error_line(&error)),
            }
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let _traces = logging::init(flags.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            report(&anyhow::Error::new(error).context("cannot start the tokio runtime"));
            return ExitCode::FAILURE;
        }
    };
    let context = Context {
        builder,
        database_url: flags.database_url,
        poll_only: flags.poll_only,
        format: Format::from_json_flag(flags.json),
    };
    match runtime.block_on(commands::run(flags.command, context)) {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// A clap usage error on one line: its message and hints, without the "try --help" footer.
fn usage_error_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    parts.join(" ")
}

/// Prints an error and its causes as one line on stderr.
fn report(error: &anyhow::Error) {
    let text = format!("{error:#}");
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("postpone: error: {}", line.join(" "));
}

/// What every command gets: the user's app builder, where the database is, the output format.
#[derive(Debug)]
pub(crate) struct Context {
    builder: AppBuilder,
    database_url: Option<String>,
    poll_only: bool,
    format: Format,
}

impl Context {
    /// Builds the app, connecting where `--database-url` / `DATABASE_URL` says when given
    /// (else where the builder says, else libpq's environment, else the local server).
    pub(crate) fn app(self) -> anyhow::Result<(App, Format)> {
        let mut builder = self.builder;
        if let Some(url) = self
            .database_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            builder = builder.connect(ConnectConfig::resolve(Some(url))?);
        }
        if self.poll_only {
            builder = builder.poll_only(true);
        }
        Ok((builder.build()?, self.format))
    }

    /// The app's workers report their events to `subscriber` too.
    pub(crate) fn subscribe(
        mut self,
        subscriber: Arc<dyn postpone::telemetry::Subscriber>,
    ) -> Self {
        self.builder = self.builder.subscribe(subscriber);
        self
    }

    /// The output format.
    pub(crate) fn format(&self) -> Format {
        self.format
    }
}
