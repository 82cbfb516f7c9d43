//! `postpone shell` (Procrastinate's admin shell) run as a binary against real databases,
//! one fresh database per test: one-shot commands, sessions piped through stdin, bad input,
//! and cancel/abort/retry changing jobs as the job manager does.
//!
//! Run with: `cargo test -p postpone-cli --test shell` (a PostgreSQL server is found or
//! started by `postpone-testkit`; without one, the tests fail: they never skip).

mod common;

use common::{Output, block_on};

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// A fresh database with the schema, dropped when the test ends (even when it fails).
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    fn new() -> Self {
        let (name, url) = common::create_database("postpone_shelltest");
        let db = Self { url, name };
        let out = db.postpone(&["schema", "apply"]);
        assert_eq!(out.code, 0, "schema apply failed: {out:?}");
        db
    }

    fn command(&self, args: &[&str]) -> Command {
        common::command(Path::new(env!("CARGO_BIN_EXE_postpone")), &self.url, args)
    }

    /// Runs `postpone ARGS` with stdin closed (not a terminal: an empty session).
    fn postpone(&self, args: &[&str]) -> Output {
        self.postpone_stdin(args, "")
    }

    /// Runs `postpone ARGS` with `input` on stdin.
    fn postpone_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut command = self.command(args);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
        let mut stdin = child.stdin.take().expect("a stdin pipe");
        let input = input.to_owned();
        let writer = std::thread::spawn(move || {
            // The shell may stop reading at `exit`: a closed pipe is fine.
            let _ = stdin.write_all(input.as_bytes());
        });
        let output = child.wait_with_output().expect("the shell's output");
        writer.join().expect("the stdin writer");
        output.into()
    }

    /// `postpone shell ARGS` (one-shot).
    fn shell(&self, args: &[&str]) -> Output {
        let mut all = vec!["shell"];
        all.extend_from_slice(args);
        self.postpone(&all)
    }

    /// `postpone shell` with a session on stdin.
    fn session(&self, input: &str) -> Output {
        self.postpone_stdin(&["shell"], input)
    }

    fn client(&self) -> tokio_postgres::Client {
        let url = self.url.clone();
        block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client
        })
    }

    fn sql(&self, statements: &str) {
        let client = self.client();
        block_on(client.batch_execute(statements)).expect("run test SQL");
    }

    /// A job's (status, abort_requested, attempts) as stored.
    fn job_row(&self, id: i64) -> (String, bool, i32) {
        let client = self.client();
        let row = block_on(client.query_one(
            "SELECT status::text, abort_requested, attempts FROM procrastinate_jobs WHERE id = $1",
            &[&id],
        ))
        .expect("the job's row");
        (row.get(0), row.get(1), row.get(2))
    }

    /// Defers a job of an unknown task and returns its id.
    fn defer(&self, args: &[&str]) -> i64 {
        let mut all = vec!["--json", "defer", "--unknown"];
        all.extend_from_slice(args);
        let out = self.postpone(&all);
        assert_eq!(out.code, 0, "{out:?}");
        out.json()["id"].as_i64().expect("a job id")
    }

    /// Moves a job to `status` through `doing` (as a worker would).
    fn set_status(&self, id: i64, status: &str) {
        self.sql(&format!(
            "UPDATE procrastinate_jobs SET status = 'doing', attempts = 1 WHERE id = {id};"
        ));
        if status != "doing" {
            self.sql(&format!(
                "UPDATE procrastinate_jobs SET status = '{status}' WHERE id = {id};"
            ));
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        common::drop_database(&self.name);
    }
}

impl Output {
    fn assert_ok(&self) {
        assert_eq!(self.code, 0, "{self:?}");
        assert_eq!(self.stderr, "", "{self:?}");
    }

    /// A one-shot failure: exit 1, nothing on stdout, one `postpone: error:` line.
    fn assert_one_line_error(&self, needles: &[&str]) {
        assert_eq!(self.code, 1, "expected exit 1: {self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr is not one line: {self:?}");
        assert!(lines[0].starts_with("postpone: error: "), "{self:?}");
        for needle in needles {
            assert!(
                lines[0].contains(needle),
                "stderr lacks {needle:?}: {self:?}"
            );
        }
    }
}

/// Jobs in several states: returns (succeeded, failed, todo, doing, cancelled) ids.
fn populated() -> (TestDb, [i64; 5]) {
    let db = TestDb::new();
    let succeeded = db.defer(&["tests.add", r#"{"a": 1, "b": 2}"#]);
    db.set_status(succeeded, "succeeded");
    let failed = db.defer(&["sums", "--queue", "q2", "--lock", "l1"]);
    db.set_status(failed, "failed");
    let todo = db.defer(&["tests.add", "--queueing-lock", "ql", "--priority", "5"]);
    let doing = db.defer(&["sums", "--queue", "q2", "--lock", "l1"]);
    db.set_status(doing, "doing");
    let cancelled = db.defer(&["tests.add"]);
    let out = db.postpone(&["cancel", &cancelled.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    (db, [succeeded, failed, todo, doing, cancelled])
}

#[test]
fn one_shot_lists_like_procrastinate() {
    let (db, [succeeded, failed, todo, doing, cancelled]) = populated();

    let out = db.shell(&["list_jobs"]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!(
            "#{succeeded} tests.add on default - [succeeded]\n\
             #{failed} sums on q2 - [failed]\n\
             #{todo} tests.add on default - [todo]\n\
             #{doing} sums on q2 - [doing]\n\
             #{cancelled} tests.add on default - [cancelled]\n"
        )
    );

    let out = db.shell(&["list_jobs", "queue=q2", "status=failed"]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("#{failed} sums on q2 - [failed]\n"));
    // The command as one argument works the same.
    let out = db.shell(&["list_jobs queue=q2 status=failed"]);
    assert_eq!(out.stdout, format!("#{failed} sums on q2 - [failed]\n"));

    let out = db.shell(&["list_jobs", "task=tests.add", "lock=nope"]);
    out.assert_ok();
    assert_eq!(out.stdout, "(no jobs)\n");
    let out = db.shell(&["list_jobs", "queueing_lock=ql"]);
    assert_eq!(
        out.stdout,
        format!("#{todo} tests.add on default - [todo]\n")
    );
    let out = db.shell(&["list_jobs", "lock=l1", "status=doing"]);
    assert_eq!(out.stdout, format!("#{doing} sums on q2 - [doing]\n"));

    let out = db.shell(&["list_jobs", &format!("id={succeeded}"), "details"]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!(
            "#{succeeded} tests.add on default - [succeeded] (attempts=1, priority=0, \
             scheduled_at=None, args={{\"a\":1,\"b\":2}}, lock=None, queueing_lock=None, \
             worker=None, abort_requested=false)\n"
        )
    );
    let out = db.shell(&["list_jobs", &format!("id={todo}"), "details"]);
    assert!(
        out.stdout.contains("priority=5") && out.stdout.contains("queueing_lock=ql"),
        "{out:?}"
    );

    let out = db.shell(&["list_queues"]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        "default: 3 jobs (todo: 1, doing: 0, succeeded: 1, failed: 0, cancelled: 1, aborted: 0)\n\
         q2: 2 jobs (todo: 0, doing: 1, succeeded: 0, failed: 1, cancelled: 0, aborted: 0)\n"
    );
    let out = db.shell(&["list_tasks", "status=failed"]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        "sums: 1 jobs (todo: 0, doing: 0, succeeded: 0, failed: 1, cancelled: 0, aborted: 0)\n"
    );
    let out = db.shell(&["list_tasks", "queue=default"]);
    assert_eq!(
        out.stdout,
        "tests.add: 3 jobs (todo: 1, doing: 0, succeeded: 1, failed: 0, cancelled: 1, aborted: 0)\n"
    );
    let out = db.shell(&["list_locks"]);
    out.assert_ok();
    assert!(
        out.stdout.contains(
            "l1: 2 jobs (todo: 0, doing: 1, succeeded: 0, failed: 1, cancelled: 0, aborted: 0)"
        ),
        "{out:?}"
    );
    let out = db.shell(&["list_queues", "queue=none"]);
    assert_eq!(out.stdout, "(no queues with jobs)\n");

    // --json gives the manager's rows.
    let out = db.postpone(&["--json", "shell", "list_jobs", "status=todo"]);
    out.assert_ok();
    assert_eq!(out.json()[0]["id"], todo);
    assert_eq!(out.json()[0]["queueing_lock"], "ql");
    let out = db.postpone(&["--json", "shell", "list_queues", "queue=q2"]);
    assert_eq!(out.json()[0]["jobs_count"], 2);
}

#[test]
fn help_one_shot() {
    let db = TestDb::new();
    let out = db.shell(&["help"]);
    out.assert_ok();
    for name in [
        "list_jobs",
        "list_queues",
        "list_tasks",
        "list_locks",
        "retry",
        "cancel",
        "abort",
        "exit",
    ] {
        assert!(out.stdout.contains(name), "{name}: {out:?}");
    }
    let out = db.shell(&["help", "list_jobs"]);
    out.assert_ok();
    assert!(
        out.stdout.contains("Usage: list_jobs [id=ID]") && out.stdout.contains("queueing_lock"),
        "{out:?}"
    );
    let out = db.shell(&["?", "retry"]);
    assert!(out.stdout.contains("Usage: retry JOB_ID"), "{out:?}");
    db.shell(&["help", "nope"])
        .assert_one_line_error(&["unknown command \"nope\"", "list_jobs"]);
}

#[test]
fn pause_and_resume_a_queue_and_list_queues_shows_it() {
    let (db, _) = populated();
    let out = db.session(
        "pause q2\npause q2\npause idle\nlist_queues\nresume q2\nresume q2\nlist_queues queue=q2\n",
    );
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "queue \"q2\" paused",
            "queue \"q2\" was paused already",
            "queue \"idle\" paused"
        ],
        "{out:?}"
    );
    // A paused queue without jobs is listed too, and the Python caveat is said.
    let listed = &out.stdout;
    assert!(
        listed.contains("idle: 0 jobs (todo: 0, doing: 0, succeeded: 0, failed: 0, cancelled: 0, aborted: 0) [paused since "),
        "{out:?}"
    );
    assert!(listed.contains("q2: 2 jobs (todo: 0, doing: 1, succeeded: 0, failed: 1, cancelled: 0, aborted: 0) [paused since "), "{out:?}");
    assert!(
        listed.contains("Python (Procrastinate) workers do not know about pauses"),
        "{out:?}"
    );
    assert!(
        out.stdout.ends_with(
            "queue \"q2\" resumed\n\
             queue \"q2\" was not paused\n\
             q2: 2 jobs (todo: 0, doing: 1, succeeded: 0, failed: 1, cancelled: 0, aborted: 0)\n"
        ),
        "{out:?}"
    );
    let out = db.postpone(&["shell", "pause", &"q".repeat(41)]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("bytes long"), "{out:?}");
}

#[test]
fn piped_session_runs_each_line() {
    let (db, [_, failed, todo, ..]) = populated();
    let out = db.session(&format!(
        "help\n\
         \n\
         # a comment\n\
         list_jobs status=todo\n\
         list_queues queue=q2\n\
         retry {failed}\n\
         list_jobs id={failed}\n"
    ));
    out.assert_ok();
    assert!(out.stdout.starts_with("Commands"), "{out:?}");
    assert!(
        out.stdout.ends_with(&format!(
            "#{todo} tests.add on default - [todo]\n\
             q2: 2 jobs (todo: 0, doing: 1, succeeded: 0, failed: 1, cancelled: 0, aborted: 0)\n\
             #{failed} sums on q2 - [todo]\n\
             #{failed} sums on q2 - [todo]\n"
        )),
        "{out:?}"
    );
    // No prompt and no welcome when stdin is not a terminal.
    assert!(!out.stdout.contains("postpone>"), "{out:?}");
    assert!(!out.stdout.contains("Welcome"), "{out:?}");

    // `exit` (or `quit`) ends the session: later lines do not run.
    let out = db.session(&format!("cancel {todo}\nquit\ncancel 999999\n"));
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("#{todo} tests.add on default - [cancelled]\n")
    );
    let out = db.session("exit\nlist_jobs\n");
    out.assert_ok();
    assert_eq!(out.stdout, "");
    // End of input ends it too.
    db.session("").assert_ok();
}

#[test]
fn bad_input_one_shot_exits_1_with_one_line() {
    let (db, _) = populated();
    let cases: &[(&[&str], &[&str])] = &[
        (&["frobnicate"], &["unknown command \"frobnicate\"", "help"]),
        (
            &["list_jobs", "colour=red"],
            &[
                "unknown filter \"colour\"",
                "id, queue, task, status, lock, queueing_lock, worker",
            ],
        ),
        (
            &["list_queues", "details"],
            &["\"details\" is not a filter", "queue, task, status, lock"],
        ),
        (
            &["list_jobs", "queue"],
            &["\"queue\" is not a filter", "key=value"],
        ),
        (&["list_jobs", "id=abc"], &["id=abc is not a number"]),
        (&["list_jobs", "worker=w1"], &["worker=w1 is not a number"]),
        (
            &["list_jobs", "status=lost"],
            &["unknown job status \"lost\"", "todo, doing, succeeded"],
        ),
        (
            &["list_tasks", "status=nope"],
            &["unknown job status \"nope\""],
        ),
        (&["retry", "abc"], &["job id \"abc\" is not a number"]),
        (&["cancel", "1x"], &["job id \"1x\" is not a number"]),
        (&["abort"], &["abort needs a job id"]),
        (&["retry", "1", "2"], &["retry takes one job id"]),
        (&["retry", "999999"], &["999999", "not found"]),
        (&["cancel", "999999"], &["999999", "not found"]),
        (&["abort", "999999"], &["999999", "not found"]),
    ];
    for (args, needles) in cases {
        db.shell(args).assert_one_line_error(needles);
    }
}

#[test]
fn bad_input_in_a_session_is_one_line_and_the_session_goes_on() {
    let (db, [_, _, todo, ..]) = populated();
    let bad = [
        ("frobnicate", "unknown command \"frobnicate\""),
        ("list_jobs colour=red", "unknown filter \"colour\""),
        ("list_jobs queue", "\"queue\" is not a filter"),
        ("list_jobs id=abc", "id=abc is not a number"),
        ("list_jobs status=lost", "unknown job status \"lost\""),
        ("retry abc", "job id \"abc\" is not a number"),
        ("cancel 999999", "not found"),
    ];
    let mut input = String::new();
    for (line, _) in bad {
        input.push_str(line);
        input.push('\n');
    }
    input.push_str("list_jobs status=todo\n");
    let out = db.session(&input);
    // Every line ran; the session reports the failures with its exit code.
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("#{todo} tests.add on default - [todo]\n")
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), bad.len(), "{out:?}");
    for (line, (input, needle)) in lines.iter().zip(bad) {
        assert!(line.starts_with("error: "), "{input}: {line}");
        assert!(line.contains(needle), "{input}: {line}");
    }
}

#[test]
fn cancel_abort_and_retry_change_jobs_as_the_manager_does() {
    let (db, [succeeded, failed, todo, doing, cancelled]) = populated();

    // cancel: todo -> cancelled.
    let out = db.shell(&["cancel", &todo.to_string()]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("#{todo} tests.add on default - [cancelled]\n")
    );
    assert_eq!(db.job_row(todo), ("cancelled".into(), false, 0));
    db.shell(&["cancel", &todo.to_string()])
        .assert_one_line_error(&[&format!("job {todo} cannot be cancelled"), "cancelled"]);
    // A running job is not cancelled: abort is the way.
    db.shell(&["cancel", &doing.to_string()])
        .assert_one_line_error(&["it is running", &format!("abort {doing}")]);
    assert_eq!(db.job_row(doing), ("doing".into(), false, 1));

    // abort: a waiting job is cancelled, a running one asked to stop.
    let waiting = db.defer(&["t"]);
    let out = db.shell(&["abort", &waiting.to_string()]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("#{waiting} t on default - [cancelled]\n")
    );
    // (procrastinate_cancel_job_v1 with abort also sets abort_requested on it.)
    assert_eq!(db.job_row(waiting), ("cancelled".into(), true, 0));
    let out = db.shell(&["abort", &doing.to_string()]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("#{doing} sums on q2 - [doing] (abort requested: its worker will stop it)\n")
    );
    assert_eq!(db.job_row(doing), ("doing".into(), true, 1));
    db.shell(&["abort", &succeeded.to_string()])
        .assert_one_line_error(&[&format!("job {succeeded} cannot be aborted"), "succeeded"]);
    db.shell(&["abort", &cancelled.to_string()])
        .assert_one_line_error(&["cannot be aborted", "cancelled"]);

    // retry: failed -> todo, now; other statuses are refused.
    let out = db.shell(&["retry", &failed.to_string()]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("#{failed} sums on q2 - [todo]\n"));
    // (procrastinate_retry_job counts the failed run as an attempt.)
    assert_eq!(db.job_row(failed), ("todo".into(), false, 2));
    let client = db.client();
    let due: bool = block_on(client.query_one(
        "SELECT scheduled_at <= now() + interval '1 second' FROM procrastinate_jobs WHERE id = $1",
        &[&failed],
    ))
    .expect("the retried job")
    .get(0);
    assert!(due, "a retried job is due now");
    db.shell(&["retry", &succeeded.to_string()])
        .assert_one_line_error(&[&format!("{succeeded}"), "succeeded"]);
    assert_eq!(db.job_row(succeeded).0, "succeeded");

    // The same through a session, with --json.
    let again = db.defer(&["t"]);
    db.set_status(again, "failed");
    let out = db.postpone_stdin(&["--json", "shell"], &format!("retry {again}\n"));
    out.assert_ok();
    assert_eq!(out.json()["status"], "todo");
    assert_eq!(out.json()["id"], again);
}
