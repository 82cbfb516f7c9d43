//! `postpone shell`: Procrastinate's admin shell (`procrastinate shell`) over the
//! library's `JobManager`, with its command names, `key=value` filters and output lines.
//!
//! Three ways in: `postpone shell list_jobs status=failed` runs one command (an error exits
//! 1); `postpone shell` on a terminal is an interactive session (rustyline: in-memory
//! history, tab completion of commands, filter keys and statuses, Ctrl-D to leave); with
//! stdin not a terminal, every line of stdin is one command (errors are reported and the
//! session goes on, then it exits 1 if any command failed).

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use postpone::RetryDecision;
use postpone::manager::{CountBy, JobManager};
use postpone::store::JobCounts;
use postpone::{App, Job, JobFilter, JobStatus};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Editor, Helper};

use crate::flags::ShellFlags;
use crate::output::{self, Format};
use crate::{Context, values};

const INTRO: &str = "Welcome to the postpone shell. Type help or ? to list commands.";
const PROMPT: &str = "postpone> ";

/// One shell command: its name, what it takes, and its help.
struct CommandSpec {
    name: &'static str,
    usage: &'static str,
    summary: &'static str,
    /// The filter keys it accepts (empty for commands that take a job id or nothing).
    filters: &'static [&'static str],
    example: &'static str,
}

/// The filters of `list_jobs`.
const JOB_FILTERS: &[&str] = &[
    "id",
    "queue",
    "task",
    "status",
    "lock",
    "queueing_lock",
    "worker",
];
/// The filters of `list_queues`, `list_tasks` and `list_locks`.
const COUNT_FILTERS: &[&str] = &["queue", "task", "status", "lock"];

const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "list_jobs",
        usage: "list_jobs [id=ID] [queue=QUEUE] [task=TASK] [status=STATUS] [lock=LOCK] [queueing_lock=QUEUEING_LOCK] [worker=WORKER_ID] [details]",
        summary: "List jobs, filtered by id, queue, task, status, lock, queueing lock or worker; `details` shows the whole row.",
        filters: JOB_FILTERS,
        example: "list_jobs queue=default task=sums status=failed details",
    },
    CommandSpec {
        name: "list_queues",
        usage: "list_queues [queue=QUEUE] [task=TASK] [status=STATUS] [lock=LOCK]",
        summary: "List queues with their number of jobs per status.",
        filters: COUNT_FILTERS,
        example: "list_queues task=sums status=failed",
    },
    CommandSpec {
        name: "list_tasks",
        usage: "list_tasks [queue=QUEUE] [task=TASK] [status=STATUS] [lock=LOCK]",
        summary: "List tasks with their number of jobs per status.",
        filters: COUNT_FILTERS,
        example: "list_tasks queue=default status=failed",
    },
    CommandSpec {
        name: "list_locks",
        usage: "list_locks [queue=QUEUE] [task=TASK] [status=STATUS] [lock=LOCK]",
        summary: "List locks with their number of jobs per status.",
        filters: COUNT_FILTERS,
        example: "list_locks queue=default status=todo",
    },
    CommandSpec {
        name: "show_job",
        usage: "show_job JOB_ID",
        summary: "Show one job: its fields, why each attempt that did not succeed ended, its rescues.",
        filters: &[],
        example: "show_job 2",
    },
    CommandSpec {
        name: "list_workflows",
        usage: "list_workflows [LIMIT]",
        summary: "List the newest workflows (50 unless LIMIT says), with their nodes counted per status.",
        filters: &[],
        example: "list_workflows 10",
    },
    CommandSpec {
        name: "show_workflow",
        usage: "show_workflow WORKFLOW_ID",
        summary: "Show one workflow: each node with its status, job and parents.",
        filters: &[],
        example: "show_workflow 1",
    },
    CommandSpec {
        name: "retry",
        usage: "retry JOB_ID",
        summary: "Retry a failed or stalled (doing) job now: its status goes back to todo.",
        filters: &[],
        example: "retry 2",
    },
    CommandSpec {
        name: "cancel",
        usage: "cancel JOB_ID",
        summary: "Cancel a job that has not started (todo -> cancelled).",
        filters: &[],
        example: "cancel 3",
    },
    CommandSpec {
        name: "abort",
        usage: "abort JOB_ID",
        summary: "Abort a job: cancel it if it waits, ask its worker to stop it if it runs.",
        filters: &[],
        example: "abort 4",
    },
    CommandSpec {
        name: "pause",
        usage: "pause QUEUE",
        summary: "Pause a queue: Postpone workers take none of its jobs until it is resumed (Python workers do not know about pauses).",
        filters: &[],
        example: "pause emails",
    },
    CommandSpec {
        name: "resume",
        usage: "resume QUEUE",
        summary: "Resume a paused queue: workers take its jobs again at once.",
        filters: &[],
        example: "resume emails",
    },
    CommandSpec {
        name: "help",
        usage: "help [COMMAND]",
        summary: "List the commands, or show one command's usage (also `?`).",
        filters: &[],
        example: "help list_jobs",
    },
    CommandSpec {
        name: "exit",
        usage: "exit",
        summary: "Leave the shell (also `quit`, or Ctrl-D).",
        filters: &[],
        example: "exit",
    },
];

/// Names completed at the start of a line (`quit` is an alias of `exit`).
fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .map(|c| c.name)
        .chain(std::iter::once("quit"))
}

fn spec(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// What to do after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// A parsed line.
#[derive(Debug, PartialEq)]
enum Parsed {
    Empty,
    Help(Option<String>),
    Exit,
    ListJobs { filter: JobFilter, details: bool },
    Count { by: CountBy, filter: JobFilter },
    ShowJob(i64),
    ListWorkflows(i64),
    ShowWorkflow(i64),
    Retry(i64),
    Cancel(i64),
    Abort(i64),
    Pause(String),
    Resume(String),
}

/// Parses one line: the command name, then its arguments separated by spaces.
fn parse(line: &str) -> anyhow::Result<Parsed> {
    let mut words = line.split_whitespace();
    let Some(name) = words.next() else {
        return Ok(Parsed::Empty);
    };
    if name.starts_with('#') {
        return Ok(Parsed::Empty);
    }
    let args: Vec<&str> = words.collect();
    Ok(match name {
        "help" | "?" => match args.as_slice() {
            [] => Parsed::Help(None),
            [command] => Parsed::Help(Some((*command).to_owned())),
            _ => bail!("help takes at most one command name: help [COMMAND]"),
        },
        "exit" | "quit" | "EOF" => no_args(name, &args, Parsed::Exit)?,
        "list_jobs" => {
            let (filter, details) = parse_filters(name, &args, JOB_FILTERS, true)?;
            Parsed::ListJobs { filter, details }
        }
        "list_queues" | "list_tasks" | "list_locks" => {
            let by = match name {
                "list_queues" => CountBy::Queue,
                "list_tasks" => CountBy::Task,
                _ => CountBy::Lock,
            };
            let (filter, _) = parse_filters(name, &args, COUNT_FILTERS, false)?;
            Parsed::Count { by, filter }
        }
        "show_job" => Parsed::ShowJob(job_id_arg(name, &args)?),
        "list_workflows" => match args.as_slice() {
            [] => Parsed::ListWorkflows(50),
            [limit] => Parsed::ListWorkflows(limit.parse().map_err(|_| {
                anyhow!("list_workflows: limit {limit:?} is not a number: list_workflows [LIMIT]")
            })?),
            _ => bail!("list_workflows takes at most one limit: list_workflows [LIMIT]"),
        },
        "show_workflow" => match args.as_slice() {
            [id] => Parsed::ShowWorkflow(id.parse().map_err(|_| {
                anyhow!(
                    "show_workflow: workflow id {id:?} is not a number: show_workflow WORKFLOW_ID"
                )
            })?),
            _ => bail!("show_workflow takes one workflow id: show_workflow WORKFLOW_ID"),
        },
        "retry" => Parsed::Retry(job_id_arg(name, &args)?),
        "cancel" => Parsed::Cancel(job_id_arg(name, &args)?),
        "abort" => Parsed::Abort(job_id_arg(name, &args)?),
        "pause" => Parsed::Pause(queue_arg(name, &args)?),
        "resume" => Parsed::Resume(queue_arg(name, &args)?),
        other => bail!("unknown command {other:?}: type `help` for the list of commands"),
    })
}

fn no_args(name: &str, args: &[&str], parsed: Parsed) -> anyhow::Result<Parsed> {
    if args.is_empty() {
        Ok(parsed)
    } else {
        bail!("{name} takes no argument, got {:?}", args.join(" "))
    }
}

/// `key=value` filters; `details` too when `details_allowed`.
fn parse_filters(
    command: &str,
    args: &[&str],
    accepted: &[&str],
    details_allowed: bool,
) -> anyhow::Result<(JobFilter, bool)> {
    let mut filter = JobFilter::default();
    let mut details = false;
    let mut seen: Vec<&str> = Vec::new();
    let accepted_list = || {
        let mut list = accepted.join(", ");
        if details_allowed {
            list.push_str(" (and `details`)");
        }
        list
    };
    for arg in args {
        if details_allowed && *arg == "details" {
            details = true;
            continue;
        }
        let Some((key, value)) = arg.split_once('=') else {
            bail!(
                "{command}: {arg:?} is not a filter: write key=value (e.g. queue=default); accepted keys: {}",
                accepted_list()
            );
        };
        if !accepted.contains(&key) {
            bail!(
                "{command}: unknown filter {key:?}; accepted: {}",
                accepted_list()
            );
        }
        if value.is_empty() {
            bail!("{command}: filter {key}= has no value: write {key}=VALUE");
        }
        if seen.contains(&key) {
            bail!("{command}: filter {key} is given twice");
        }
        seen.push(key);
        match key {
            "id" => filter.id = Some(number(key, value)?),
            "queue" => filter.queue_name = Some(value.to_owned()),
            "task" => filter.task_name = Some(value.to_owned()),
            "status" => filter.status = values::parse_status(Some(value))?,
            "lock" => filter.lock = Some(value.to_owned()),
            "queueing_lock" => filter.queueing_lock = Some(value.to_owned()),
            "worker" => filter.worker_id = Some(number(key, value)?),
            _ => unreachable!("every accepted key is handled"),
        }
    }
    Ok((filter, details))
}

fn number(key: &str, value: &str) -> anyhow::Result<i64> {
    value
        .parse()
        .map_err(|_| anyhow!("{key}={value} is not a number: write e.g. {key}=12"))
}

/// The one job id of `retry`, `cancel` and `abort`.
fn job_id_arg(command: &str, args: &[&str]) -> anyhow::Result<i64> {
    match args {
        [] => bail!("{command} needs a job id: {command} JOB_ID"),
        [id] => id
            .parse()
            .map_err(|_| anyhow!("{command}: job id {id:?} is not a number: {command} JOB_ID")),
        _ => bail!(
            "{command} takes one job id, got {:?}: {command} JOB_ID",
            args.join(" ")
        ),
    }
}

/// The one queue name of `pause` and `resume`.
fn queue_arg(command: &str, args: &[&str]) -> anyhow::Result<String> {
    match args {
        [] => bail!("{command} needs a queue name: {command} QUEUE"),
        [queue] => Ok((*queue).to_owned()),
        _ => bail!(
            "{command} takes one queue name, got {:?}: {command} QUEUE",
            args.join(" ")
        ),
    }
}

/// Procrastinate's `print_job` line: `#12 tests.add on default - [succeeded]`, and with
/// `details` the rest of the row in parentheses.
fn job_line(job: &Job, details: bool) -> String {
    let mut line = format!(
        "#{} {} on {} - [{}]",
        job.id, job.task_name, job.queue_name, job.status
    );
    if details {
        let none = || "None".to_owned();
        line.push_str(&format!(
            " (attempts={}, priority={}, scheduled_at={}, args={}, lock={}, queueing_lock={}, worker={}, abort_requested={})",
            job.attempts,
            job.priority,
            job.scheduled_at.map_or_else(none, |at| at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            job.args,
            job.lock.clone().unwrap_or_else(none),
            job.queueing_lock.clone().unwrap_or_else(none),
            job.worker_id.map_or_else(none, |w| w.to_string()),
            job.abort_requested,
        ));
    }
    line
}

/// Procrastinate's count line: `default: 3 jobs (todo: 1, doing: 0, ..., aborted: 0)`.
fn count_line(row: &JobCounts) -> String {
    let stats: Vec<String> = output::COUNTED_STATUSES
        .iter()
        .map(|status| format!("{status}: {}", row.count(*status)))
        .collect();
    format!(
        "{}: {} jobs ({})",
        row.name,
        row.jobs_count,
        stats.join(", ")
    )
}

fn help_text(command: Option<&str>) -> anyhow::Result<String> {
    let Some(name) = command else {
        let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut text = String::from("Commands (filters are key=value; `help COMMAND` for more):\n");
        for c in COMMANDS {
            text.push_str(&format!("  {:width$}  {}\n", c.name, c.summary));
        }
        return Ok(text);
    };
    let name = if name == "quit" || name == "?" {
        if name == "quit" { "exit" } else { "help" }
    } else {
        name
    };
    let Some(c) = spec(name) else {
        bail!(
            "no help for unknown command {name:?}: the commands are {}",
            COMMANDS
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut text = format!("{}\nUsage: {}\n", c.summary, c.usage);
    if !c.filters.is_empty() {
        text.push_str(&format!("Filters: {}\n", c.filters.join(", ")));
    }
    if c.filters.contains(&"status") {
        text.push_str(&format!(
            "Statuses: {}\n",
            JobStatus::ALL.map(JobStatus::as_str).join(", ")
        ));
    }
    text.push_str(&format!("Example: {}\n", c.example));
    Ok(text)
}

/// The session: the app (kept alive for its connection pool) and its job manager.
struct Shell {
    app: App,
    manager: JobManager,
    format: Format,
}

impl Shell {
    /// Runs one line and prints its result on stdout.
    async fn execute(&self, line: &str) -> anyhow::Result<Flow> {
        match parse(line)? {
            Parsed::Empty => {}
            Parsed::Exit => return Ok(Flow::Exit),
            Parsed::Help(command) => output::print(&help_text(command.as_deref())?)?,
            Parsed::ListJobs { filter, details } => {
                let jobs = self.manager.list_jobs(&filter).await?;
                if self.format.is_json() {
                    output::print_json(&jobs)?;
                } else if jobs.is_empty() {
                    output::print("(no jobs)\n")?;
                } else {
                    let mut text = String::new();
                    for job in &jobs {
                        text.push_str(&job_line(job, details));
                        text.push('\n');
                    }
                    output::print(&text)?;
                }
            }
            Parsed::Count {
                by: CountBy::Queue,
                filter,
            } => {
                let rows = super::queues::overview(&self.manager, &filter).await?;
                if self.format.is_json() {
                    output::print_json(&output::queues_json(&rows))?;
                } else if rows.is_empty() {
                    output::print("(no queues with jobs)\n")?;
                } else {
                    let mut text = String::new();
                    for row in &rows {
                        text.push_str(&count_line(&row.counts));
                        if let Some(at) = row.paused_at {
                            text.push_str(&format!(
                                " [paused since {}]",
                                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ));
                        }
                        text.push('\n');
                    }
                    if rows.iter().any(|r| r.paused_at.is_some()) {
                        text.push_str(super::queues::PYTHON_NOTE);
                        text.push('\n');
                    }
                    output::print(&text)?;
                }
            }
            Parsed::Pause(queue) => self.set_paused(&queue, true).await?,
            Parsed::Resume(queue) => self.set_paused(&queue, false).await?,
            Parsed::Count { by, filter } => {
                let counts = self.manager.count_jobs(by, &filter).await?;
                if self.format.is_json() {
                    output::print_json(&output::counts_json(&counts))?;
                } else if counts.is_empty() {
                    output::print(&format!("(no {}s with jobs)\n", by.noun()))?;
                } else {
                    let mut text = String::new();
                    for row in &counts {
                        text.push_str(&count_line(row));
                        text.push('\n');
                    }
                    output::print(&text)?;
                }
            }
            Parsed::ShowJob(id) => {
                let details = super::jobs::JobDetails::load(&self.manager, id).await?;
                if self.format.is_json() {
                    output::print_json(&details.json()?)?;
                } else {
                    output::print(&details.text())?;
                }
            }
            Parsed::ListWorkflows(limit) => {
                super::workflows::print_list(&self.app, limit, self.format).await?;
            }
            Parsed::ShowWorkflow(id) => {
                super::workflows::print_show(&self.app, id, self.format).await?;
            }
            Parsed::Retry(id) => {
                self.manager
                    .retry_job_by_id(id, RetryDecision::default())
                    .await?;
                self.print_job(id).await?;
            }
            Parsed::Cancel(id) => {
                if !self.manager.cancel_job_by_id(id, false, false).await? {
                    let status = self.manager.get_job_status(id).await?;
                    let hint = if status == JobStatus::Doing {
                        format!(": it is running; use `abort {id}` to stop it")
                    } else {
                        " (only a todo job can be cancelled)".to_owned()
                    };
                    bail!("job {id} cannot be cancelled: its status is {status}{hint}");
                }
                self.print_job(id).await?;
            }
            Parsed::Abort(id) => {
                if !self.manager.cancel_job_by_id(id, true, false).await? {
                    let status = self.manager.get_job_status(id).await?;
                    bail!(
                        "job {id} cannot be aborted: its status is {status} (only todo and doing jobs can)"
                    );
                }
                let job = self.manager.get_job(id).await?;
                if self.format.is_json() {
                    output::print_json(&job)?;
                } else {
                    let mut line = job_line(&job, false);
                    if job.abort_requested && job.status == JobStatus::Doing {
                        line.push_str(" (abort requested: its worker will stop it)");
                    }
                    line.push('\n');
                    output::print(&line)?;
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Pauses or resumes a queue and says what changed.
    async fn set_paused(&self, queue: &str, pause: bool) -> anyhow::Result<()> {
        let changed = if pause {
            self.manager.pause_queue(queue).await?
        } else {
            self.manager.resume_queue(queue).await?
        };
        if self.format.is_json() {
            return output::print_json(&serde_json::json!({
                "queue": queue, "paused": pause, "changed": changed,
            }));
        }
        let what = match (pause, changed) {
            (true, true) => "paused",
            (true, false) => "was paused already",
            (false, true) => "resumed",
            (false, false) => "was not paused",
        };
        output::print(&format!("queue {queue:?} {what}\n"))
    }

    /// Prints a job as it is now (after retry or cancel), as Procrastinate's shell does.
    async fn print_job(&self, id: i64) -> anyhow::Result<()> {
        let job = self.manager.get_job(id).await?;
        if self.format.is_json() {
            output::print_json(&job)
        } else {
            output::print(&format!("{}\n", job_line(&job, false)))
        }
    }
}

/// Prints a session error as one line on stderr.
fn report(error: &anyhow::Error) {
    let text = format!("{error:#}");
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("error: {}", parts.join(" "));
}

pub(crate) async fn run(flags: ShellFlags, context: Context) -> anyhow::Result<ExitCode> {
    // Bad one-shot input is refused before connecting.
    if !flags.command.is_empty() {
        parse(&flags.command.join(" "))?;
    }
    let (app, format) = context.app()?;
    let shell = Shell {
        manager: app.job_manager(),
        app,
        format,
    };
    if !flags.command.is_empty() {
        shell.execute(&flags.command.join(" ")).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if std::io::stdin().is_terminal() {
        interactive(&shell).await
    } else {
        piped(&shell).await
    }
}

/// One command per line of stdin; every line runs, and the exit code is 1 if any failed.
async fn piped(shell: &Shell) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut lines = std::io::stdin().lock().lines();
    loop {
        let line = tokio::task::block_in_place(|| lines.next());
        let Some(line) = line else { break };
        let line = line.map_err(|error| anyhow!("cannot read stdin: {error}"))?;
        match shell.execute(&line).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(error) => {
                failed = true;
                report(&error);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn interactive(shell: &Shell) -> anyhow::Result<ExitCode> {
    let config = Config::builder()
        .auto_add_history(true)
        .history_ignore_dups(true)?
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper));
    output::print(&format!("{INTRO}\n"))?;
    loop {
        match tokio::task::block_in_place(|| editor.readline(PROMPT)) {
            Ok(line) => match shell.execute(&line).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Exit) => break,
                Err(error) => report(&error),
            },
            // Ctrl-C drops the line being typed, as in a Unix shell.
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => {
                output::print("\n")?;
                break;
            }
            Err(error) => return Err(anyhow!("cannot read the command line: {error}")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Tab completion: command names first, then filter keys (`queue=`) and statuses.
#[derive(Debug)]
struct ShellHelper;

impl ShellHelper {
    fn candidates(line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
        let word = &before[start..];
        let previous: Vec<&str> = before[..start].split_whitespace().collect();
        let matching = |options: &mut dyn Iterator<Item = String>| -> Vec<String> {
            options.filter(|o| o.starts_with(word)).collect()
        };
        let Some(command) = previous.first() else {
            return (
                start,
                matching(&mut command_names().map(|n| format!("{n} "))),
            );
        };
        if *command == "help" || *command == "?" {
            if previous.len() > 1 {
                return (start, Vec::new());
            }
            return (start, matching(&mut command_names().map(str::to_owned)));
        }
        let Some(spec) = spec(command) else {
            return (start, Vec::new());
        };
        if spec.filters.is_empty() {
            return (start, Vec::new());
        }
        if let Some(value) = word.strip_prefix("status=") {
            let statuses = JobStatus::ALL
                .into_iter()
                .map(JobStatus::as_str)
                .filter(|s| s.starts_with(value))
                .map(|s| format!("{s} "))
                .collect();
            return (start + "status=".len(), statuses);
        }
        if word.contains('=') {
            return (start, Vec::new());
        }
        let used: Vec<&str> = previous
            .iter()
            .filter_map(|w| w.split_once('=').map(|(k, _)| k))
            .collect();
        let mut options = spec
            .filters
            .iter()
            .filter(|k| !used.contains(k))
            .map(|k| format!("{k}="))
            .chain(
                (spec.name == "list_jobs" && !previous.contains(&"details"))
                    .then(|| "details ".to_owned()),
            );
        (start, matching(&mut options))
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, candidates) = Self::candidates(line, pos);
        Ok((
            start,
            candidates
                .into_iter()
                .map(|c| Pair {
                    display: c.trim_end().to_owned(),
                    replacement: c,
                })
                .collect(),
        ))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_and_details() {
        let parsed = parse("list_jobs queue=q status=failed id=3 worker=7 details").unwrap();
        assert_eq!(
            parsed,
            Parsed::ListJobs {
                filter: JobFilter {
                    id: Some(3),
                    queue_name: Some("q".into()),
                    status: Some(JobStatus::Failed),
                    worker_id: Some(7),
                    ..JobFilter::default()
                },
                details: true,
            }
        );
        assert_eq!(parse("   ").unwrap(), Parsed::Empty);
        assert_eq!(parse("retry 12").unwrap(), Parsed::Retry(12));
        assert_eq!(parse("show_job 12").unwrap(), Parsed::ShowJob(12));
        assert_eq!(parse("quit").unwrap(), Parsed::Exit);
        assert_eq!(
            parse("pause emails").unwrap(),
            Parsed::Pause("emails".into())
        );
        assert_eq!(
            parse("resume emails").unwrap(),
            Parsed::Resume("emails".into())
        );
        assert_eq!(parse("show_workflow 3").unwrap(), Parsed::ShowWorkflow(3));
        assert_eq!(parse("list_workflows").unwrap(), Parsed::ListWorkflows(50));
        assert_eq!(parse("list_workflows 5").unwrap(), Parsed::ListWorkflows(5));
    }

    #[test]
    fn refuses_bad_input_with_one_line() {
        for (line, needle) in [
            ("frobnicate", "unknown command \"frobnicate\""),
            ("list_jobs colour=red", "accepted: id, queue"),
            ("list_queues queue", "write key=value"),
            ("list_queues details", "write key=value"),
            ("list_jobs id=abc", "id=abc is not a number"),
            ("list_jobs status=lost", "unknown job status \"lost\""),
            ("retry x", "job id \"x\" is not a number"),
            ("cancel", "needs a job id"),
            ("abort 1 2", "takes one job id"),
            ("list_jobs queue=", "has no value"),
            ("pause", "needs a queue name"),
            ("resume a b", "takes one queue name"),
            ("show_workflow", "takes one workflow id"),
            ("show_workflow x", "workflow id \"x\" is not a number"),
            ("list_workflows 1 2", "at most one limit"),
        ] {
            let error = format!("{:#}", parse(line).unwrap_err());
            assert!(error.contains(needle), "{line}: {error}");
            assert_eq!(error.lines().count(), 1, "{line}: {error}");
        }
    }

    #[test]
    fn completes_commands_filters_and_statuses() {
        let complete = |line: &str| ShellHelper::candidates(line, line.len());
        assert_eq!(
            complete("list_"),
            (
                0,
                vec![
                    "list_jobs ".into(),
                    "list_queues ".into(),
                    "list_tasks ".into(),
                    "list_locks ".into(),
                    "list_workflows ".into(),
                ]
            )
        );
        assert_eq!(complete("re"), (0, vec!["retry ".into(), "resume ".into()]));
        assert_eq!(
            complete("list_jobs q"),
            (10, vec!["queue=".into(), "queueing_lock=".into()])
        );
        assert_eq!(
            complete("list_jobs queue=x qu"),
            (18, vec!["queueing_lock=".into()])
        );
        assert_eq!(complete("list_jobs de"), (10, vec!["details ".into()]));
        assert_eq!(
            complete("list_tasks status=fa"),
            (18, vec!["failed ".into()])
        );
        assert_eq!(complete("help ab"), (5, vec!["abort".into()]));
        assert_eq!(complete("retry 1"), (6, Vec::<String>::new()));
    }

    #[test]
    fn help_names_every_command() {
        let text = help_text(None).unwrap();
        for c in COMMANDS {
            assert!(text.contains(c.name), "{text}");
        }
        assert!(
            help_text(Some("list_jobs"))
                .unwrap()
                .contains("queueing_lock")
        );
        assert!(help_text(Some("nope")).is_err());
    }
}
