//! The `postpone` binary (and the `embedded` example, a user binary with the Rust task
//! `tests.add`) run against real databases: one fresh database per test.
//!
//! Run with: `cargo test -p postpone-cli --test cli` (a PostgreSQL server is found or
//! started by `postpone-testkit`; without one, the tests fail: they never skip).

mod common;

use common::{Output, block_on, run};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A fresh database, dropped when the test ends (even when it fails).
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// An empty database (no schema).
    fn empty() -> Self {
        let (name, url) = common::create_database("postpone_clitest");
        Self { url, name }
    }

    /// A database with the schema, applied by `postpone schema apply`.
    fn with_schema() -> Self {
        let db = Self::empty();
        let out = db.postpone(&["schema", "apply"]);
        assert_eq!(out.code, 0, "schema apply failed: {out:?}");
        db
    }

    fn command(&self, binary: &Path, args: &[&str]) -> Command {
        common::command(binary, &self.url, args)
    }

    /// Runs the `postpone` binary on this database.
    fn postpone(&self, args: &[&str]) -> Output {
        run(self.command(Path::new(env!("CARGO_BIN_EXE_postpone")), args))
    }

    /// Runs the `postpone` binary with extra environment variables.
    fn postpone_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(Path::new(env!("CARGO_BIN_EXE_postpone")), args);
        command.envs(env.iter().copied());
        run(command)
    }

    /// Runs the `embedded` example (a user binary knowing the task `tests.add`).
    fn embedded(&self, args: &[&str]) -> Output {
        run(self.command(embedded_binary(), args))
    }

    fn sql(&self, statements: &str) {
        let url = self.url.clone();
        let statements = statements.to_owned();
        block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client
                .batch_execute(&statements)
                .await
                .expect("run test SQL");
        });
    }

    fn count_jobs(&self) -> i64 {
        self.sql_value("SELECT count(*)::text FROM procrastinate_jobs")
            .parse()
            .expect("a count")
    }

    /// The one text value `query` returns.
    fn sql_value(&self, query: &str) -> String {
        let url = self.url.clone();
        let query = query.to_owned();
        block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client
                .query_one(&query, &[])
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"))
                .get(0)
        })
    }

    /// Defers a job of an unknown task and returns its id.
    fn defer(&self, args: &[&str]) -> i64 {
        let mut all = vec!["--json", "defer", "--unknown"];
        all.extend_from_slice(args);
        let out = self.postpone(&all);
        assert_eq!(out.code, 0, "{out:?}");
        out.json()["id"].as_i64().expect("a job id")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        common::drop_database(&self.name);
    }
}

impl Output {
    /// Asserts a failure reported as exactly one line naming the problem.
    fn assert_one_line_error(&self, needles: &[&str]) {
        assert_ne!(self.code, 0, "expected a failure: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr is not one line: {self:?}");
        assert!(
            lines[0].starts_with("postpone: error: "),
            "stderr: {}",
            lines[0]
        );
        for needle in needles {
            assert!(
                lines[0].contains(needle),
                "stderr lacks {needle:?}: {}",
                lines[0]
            );
        }
    }
}

/// `target/<profile>/examples/embedded`, (re)built once per test run: `cargo test` builds
/// examples, but `cargo test --test cli` does not, and a stale one would lie.
fn embedded_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_postpone"))
            .parent()
            .expect("the binary's directory");
        let target_dir = profile_dir.parent().expect("the target directory");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "postpone-cli",
                "--example",
                "embedded",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build --example embedded");
        assert!(status.success(), "cargo build --example embedded failed");
        profile_dir.join("examples").join("embedded")
    })
}

#[test]
fn schema_apply_is_idempotent_and_check_names_differences() {
    let db = TestDb::empty();
    let out = db.postpone(&["schema", "apply"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("applied 0001_pre_procrastinate_3_10"),
        "{out:?}"
    );
    let out = db.postpone(&["schema", "apply"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("already up to date"), "{out:?}");
    let out = db.postpone(&["schema", "apply", "--pre"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.postpone(&["--json", "schema", "apply"]);
    assert_eq!(out.json()["applied"], serde_json::json!([]), "{out:?}");

    let out = db.postpone(&["schema", "check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("up to date (migration {})", latest_migration())),
        "{out:?}"
    );
    assert!(out.stderr.is_empty(), "{out:?}");

    db.sql("DROP INDEX procrastinate_jobs_queueing_lock_idx_v1");
    let out = db.postpone(&["schema", "check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("procrastinate_jobs_queueing_lock_idx_v1"),
        "{out:?}"
    );
    let out = db.postpone(&["--json", "schema", "check"]);
    assert_eq!(out.code, 1, "{out:?}");
    let report = out.json();
    assert_eq!(report["up_to_date"], false);
    assert_eq!(report["differences"][0]["kind"], "missing", "{report}");
}

#[test]
fn schema_read_and_migrations_path_need_no_database() {
    let unreachable = [("DATABASE_URL", "postgres://x@127.0.0.1:1/x")];
    let db = TestDb::empty();
    let out = db.postpone_env(&["schema", "read"], &unreachable);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("procrastinate_jobs"));
    assert!(out.stdout.trim_end().ends_with("COMMIT;"));

    let out = db.postpone_env(&["schema", "migrations-path"], &unreachable);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(Path::new(out.stdout.trim()).is_dir(), "{out:?}");

    let dir = std::env::temp_dir().join(format!("postpone-cli-migrations-{}", std::process::id()));
    let dir_text = dir.display().to_string();
    let out = db.postpone(&["schema", "migrations-path", "--write", &dir_text]);
    assert_eq!(out.code, 0, "{out:?}");
    let written = out.stdout.lines().next().expect("one written file");
    assert!(
        written.ends_with("0001_pre_procrastinate_3_10.sql"),
        "{out:?}"
    );
    assert!(Path::new(written).is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn defer_then_list_jobs_queues_tasks_and_locks() {
    let db = TestDb::with_schema();
    let out = db.embedded(&["defer", "tests.add", r#"{"a": 1, "b": 2}"#, "--lock", "L1"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("deferred job "), "{out:?}");
    assert!(out.stdout.contains("tests.add"), "{out:?}");
    let out = db.embedded(&[
        "--json",
        "defer",
        "tests.add",
        r#"{"a": 3, "b": 4}"#,
        "-q",
        "math",
        "-p",
        "5",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let deferred = out.json();
    let id = deferred["id"].as_i64().expect("an id");
    assert_eq!(deferred["queue_name"], "math");
    assert_eq!(deferred["priority"], 5);
    db.defer(&["python.task", "--in", "5m"]);

    let out = db.postpone(&["jobs", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert!(lines[0].starts_with("id  queue"), "{out:?}");
    assert!(
        lines[1].contains("tests.add") && lines[1].contains("L1"),
        "{out:?}"
    );

    let out = db.postpone(&["--json", "jobs", "list", "--queue", "math"]);
    let jobs = out.json();
    let jobs = jobs.as_array().expect("an array");
    assert_eq!(jobs.len(), 1, "{out:?}");
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["args"], serde_json::json!({"a": 3, "b": 4}));
    assert_eq!(jobs[0]["status"], "todo");

    let out = db.postpone(&["jobs", "list", "--details", "--task", "python.task"]);
    assert!(out.stdout.contains("abort_requested"), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 2, "{out:?}");
    let out = db.postpone(&["jobs", "list", "--status", "bogus"]);
    out.assert_one_line_error(&["unknown job status \"bogus\""]);

    let out = db.postpone(&["--json", "queues"]);
    let queues = out.json();
    let default = queues
        .as_array()
        .expect("an array")
        .iter()
        .find(|q| q["name"] == "default")
        .expect("the default queue");
    assert_eq!(default["jobs_count"], 2, "{queues}");
    assert_eq!(default["todo"], 2, "{queues}");
    assert_eq!(default["failed"], 0, "{queues}");
    let out = db.postpone(&["queues"]);
    assert!(
        out.stdout
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            == [
                "queue",
                "paused",
                "jobs",
                "todo",
                "doing",
                "succeeded",
                "failed",
                "cancelled",
                "aborted"
            ],
        "{out:?}"
    );
    let out = db.postpone(&["--json", "tasks", "--queue", "math"]);
    assert_eq!(out.json()[0]["name"], "tests.add", "{out:?}");
    assert_eq!(out.json()[0]["jobs_count"], 1, "{out:?}");
    let out = db.postpone(&["--json", "locks"]);
    assert_eq!(out.json().as_array().map(Vec::len), Some(1), "{out:?}");
    assert_eq!(out.json()[0]["name"], "L1", "{out:?}");
    let out = db.postpone(&["tasks", "--status", "failed"]);
    assert_eq!(out.stdout, "(no tasks with jobs)\n", "{out:?}");
}

#[test]
fn cancel_abort_and_retry_outcomes() {
    let db = TestDb::with_schema();
    let todo = db.defer(&["t"]);
    let out = db.postpone(&["cancel", &todo.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, format!("job {todo} cancelled\n"));
    let out = db.postpone(&["cancel", &todo.to_string()]);
    out.assert_one_line_error(&[&format!("job {todo} cannot be cancelled"), "cancelled"]);

    let deleted = db.defer(&["t"]);
    let out = db.postpone(&["cancel", "--delete", &deleted.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.postpone(&["--json", "jobs", "list", "--id", &deleted.to_string()]);
    assert_eq!(out.json(), serde_json::json!([]));
    db.postpone(&["cancel", "999999"])
        .assert_one_line_error(&["job 999999 not found"]);

    let waiting = db.defer(&["t"]);
    let out = db.postpone(&["abort", &waiting.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("cancelled"), "{out:?}");

    let running = db.defer(&["t"]);
    db.sql(&format!(
        "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = {running}"
    ));
    db.postpone(&["cancel", &running.to_string()])
        .assert_one_line_error(&["postpone abort"]);
    let out = db.postpone(&["--json", "abort", &running.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["outcome"], "abort_requested");
    let out = db.postpone(&["--json", "jobs", "list", "--id", &running.to_string()]);
    assert_eq!(out.json()[0]["abort_requested"], true);

    let failed = db.defer(&["t"]);
    db.postpone(&["retry", &failed.to_string()])
        .assert_one_line_error(&[&format!("job {failed} cannot be retried"), "todo"]);
    db.sql(&format!(
        "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = {failed};
         UPDATE procrastinate_jobs SET status = 'failed' WHERE id = {failed};"
    ));
    let out = db.postpone(&[
        "retry",
        &failed.to_string(),
        "--queue",
        "again",
        "--in",
        "1h",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("retried"), "{out:?}");
    let out = db.postpone(&["--json", "jobs", "list", "--id", &failed.to_string()]);
    let job = &out.json()[0];
    assert_eq!(job["status"], "todo", "{job}");
    assert_eq!(job["queue_name"], "again", "{job}");
    assert!(job["scheduled_at"].is_string(), "{job}");

    let out = db.postpone(&["--json", "jobs", "stalled"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.postpone(&["jobs", "delete-old", "--hours", "1", "--include-cancelled"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("deleted 0 jobs"), "{out:?}");
}

#[test]
fn queues_pause_and_resume() {
    let db = TestDb::with_schema();
    db.defer(&["t", "--queue", "emails"]);
    let out = db.postpone(&["queues", "pause", "emails"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("paused queue \"emails\""), "{out:?}");
    assert!(
        out.stdout.contains("postpone queues resume emails"),
        "{out:?}"
    );
    let out = db.postpone(&["queues", "pause", "emails"]);
    assert_eq!(
        out.stdout, "queue \"emails\" was paused already\n",
        "{out:?}"
    );
    // A queue with no job yet can be paused, and is listed.
    let out = db.postpone(&["--json", "queues", "pause", "later"]);
    assert_eq!(
        out.json(),
        serde_json::json!({"queue": "later", "paused": true, "changed": true})
    );
    let out = db.postpone(&["--json", "queues"]);
    let queues = out.json();
    let names: Vec<(&str, bool, i64)> = queues
        .as_array()
        .expect("an array")
        .iter()
        .map(|q| {
            (
                q["name"].as_str().expect("name"),
                q["paused"].as_bool().expect("paused"),
                q["jobs_count"].as_i64().expect("count"),
            )
        })
        .collect();
    assert_eq!(names, [("emails", true, 1), ("later", true, 0)], "{queues}");
    assert!(queues[0]["paused_at"].is_string(), "{queues}");
    let out = db.postpone(&["queues"]);
    assert!(
        out.stdout
            .contains("Python (Procrastinate) workers do not know about pauses"),
        "{out:?}"
    );
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("emails"))
        .expect("the emails row");
    assert!(row.contains("since "), "{row}");
    // Filtered by status, a paused queue without such jobs is not listed.
    let out = db.postpone(&["--json", "queues", "--status", "todo"]);
    assert_eq!(out.json().as_array().map(Vec::len), Some(1), "{out:?}");

    let out = db.postpone(&["queues", "resume", "emails"]);
    assert_eq!(
        out.stdout,
        "resumed queue \"emails\": workers take its jobs again\n"
    );
    let out = db.postpone(&["queues", "resume", "emails"]);
    assert_eq!(out.stdout, "queue \"emails\" was not paused\n");
    assert_eq!(db.postpone(&["queues", "resume", "later"]).code, 0);
    let out = db.postpone(&["queues"]);
    assert!(
        !out.stdout.contains("Python"),
        "no pause, no caveat: {out:?}"
    );

    db.postpone(&["queues", "pause", &"q".repeat(41)])
        .assert_one_line_error(&["bytes long", "63 bytes"]);
    db.postpone(&["queues", "pause", ""])
        .assert_one_line_error(&["queue name is empty"]);
    // A filter with an action is a usage error.
    let out = db.postpone(&["queues", "--status", "todo", "pause", "x"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        db.sql_value("SELECT count(*)::text FROM postpone_queue_pauses"),
        "0"
    );
}

/// A failed attempt's reason, recorded by the worker with the outcome, is what `jobs show`
/// and the shell's `show_job` tell a person (and its JSON a program); a job that never
/// failed has none, and an id that does not exist is one line.
#[test]
fn jobs_show_says_why_an_attempt_failed() {
    let db = TestDb::with_schema();
    let id = db.defer(&["nope.task", "{\"x\": 1}"]);
    let ok = db.defer(&["other.task"]);
    db.sql(&format!(
        "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = {ok}"
    ));
    let out = db.postpone(&["worker", "--one-shot"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.postpone(&["jobs", "show", &id.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    for needle in [
        "status           failed",
        "args             {\"x\":1}",
        "failed attempts:\n  attempt 1 at ",
        "TaskNotFound: no task named \"nope.task\" is registered in this worker",
        "rescues: none",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in {}", out.stdout);
    }
    let out = db.postpone(&["--json", "jobs", "show", &id.to_string()]);
    let json = out.json();
    assert_eq!(json["id"].as_i64(), Some(id));
    assert_eq!(json["errors"][0]["kind"], "TaskNotFound");
    assert_eq!(json["errors"][0]["attempt"], 1);
    assert!(json["errors"][0]["worker_id"].as_i64().is_some(), "{json}");
    let out = db.postpone(&["jobs", "show", &ok.to_string()]);
    assert!(
        out.stdout.contains("failed attempts: none recorded"),
        "{}",
        out.stdout
    );
    let out = db.postpone(&["shell", "show_job", &id.to_string()]);
    assert!(out.stdout.contains("TaskNotFound"), "{out:?}");
    db.postpone(&["jobs", "show", "999999"])
        .assert_one_line_error(&["job 999999 not found"]);
}

/// `jobs result ID` prints what a job's task returned (the embedded binary's `tests.add`
/// stores its sum), `jobs show` shows it too; a job without one (not ended, failed, no
/// result set) and an id that does not exist are one line each, exit 1.
#[test]
fn jobs_result_prints_what_the_task_returned() {
    let db = TestDb::with_schema();
    let out = db.embedded(&["--json", "defer", "tests.add", r#"{"a": 40, "b": 2}"#]);
    assert_eq!(out.code, 0, "{out:?}");
    let add = out.json()["id"].as_i64().expect("a job id");
    let waiting = db.defer(&["nope.task"]);
    let out = db.postpone(&["jobs", "result", &add.to_string()]);
    out.assert_one_line_error(&[&format!(
        "job {add} has no result yet: its status is todo; try again once it has ended"
    )]);
    let out = db.embedded(&["worker", "--one-shot"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.postpone(&["jobs", "result", &add.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "42\n");
    let out = db.postpone(&["--json", "jobs", "result", &add.to_string()]);
    let json = out.json();
    assert_eq!(json["result"], 42, "{json}");
    assert_eq!(json["job_id"].as_i64(), Some(add));
    assert_eq!(json["attempt"], 1);
    let out = db.postpone(&["jobs", "show", &add.to_string()]);
    assert!(out.stdout.contains("result (attempt 1): 42"), "{out:?}");
    let out = db.postpone(&["--json", "jobs", "show", &add.to_string()]);
    assert_eq!(out.json()["result"], 42, "{out:?}");
    // The unknown task failed: its error is the reason.
    db.postpone(&["jobs", "result", &waiting.to_string()])
        .assert_one_line_error(&[&format!(
            "job {waiting} has no result: it ended failed (attempt 1: TaskNotFound: no task named \"nope.task\""
        )]);
    let out = db.postpone(&["jobs", "show", &waiting.to_string()]);
    assert!(out.stdout.contains("result: none stored"), "{out:?}");
    // Succeeded without a stored result (ended by hand here, as by a Python worker).
    let python = db.defer(&["python.task"]);
    db.sql(&format!(
        "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = {python}"
    ));
    db.postpone(&["jobs", "result", &python.to_string()])
        .assert_one_line_error(&[&format!(
            "job {python} succeeded but stored no result: its task set none"
        )]);
    db.postpone(&["jobs", "result", "999999"])
        .assert_one_line_error(&["job 999999 not found"]);
    let out = db.postpone(&["jobs", "result", "x"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("invalid value 'x'"), "{out:?}");
}

#[test]
fn ignore_already_enqueued_on_a_queueing_lock_collision() {
    let db = TestDb::with_schema();
    db.defer(&["t", "--queueing-lock", "only-one"]);
    let out = db.postpone(&["defer", "--unknown", "t", "--queueing-lock", "only-one"]);
    out.assert_one_line_error(&["queueing lock \"only-one\""]);
    let out = db.postpone(&[
        "defer",
        "--unknown",
        "t",
        "--queueing-lock",
        "only-one",
        "-i",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("not deferred"), "{out:?}");
    let out = db.postpone(&[
        "--json",
        "defer",
        "--unknown",
        "t",
        "--queueing-lock",
        "only-one",
        "-i",
    ]);
    assert_eq!(out.json()["already_enqueued"], true, "{out:?}");
    assert_eq!(db.count_jobs(), 1);
}

#[test]
fn bad_defer_input_is_one_line_and_writes_nothing() {
    let db = TestDb::with_schema();
    let long = "x".repeat(129);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["defer", "tests.add", r#"{"a": 1,"#],
            vec!["not valid JSON", "line 1 column"],
        ),
        (
            vec!["defer", "tests.add", "[1, 2]"],
            vec!["not a JSON object"],
        ),
        (
            vec!["defer", "tests.add", r#"{"a": "one", "b": 2}"#],
            vec!["tests.add", "do not fit"],
        ),
        (
            vec!["defer", "tests.add", r#"{"a": 1}"#],
            vec!["missing field `b`"],
        ),
        (
            vec!["defer", "nope.task"],
            vec![
                "unknown task \"nope.task\"",
                "pass --unknown",
                "known tasks: tests.add",
            ],
        ),
        (
            vec!["defer", "tests.add", r#"{"a":1,"b":2}"#, "--at", "tomorrow"],
            vec!["--at", "2026-11-28T12:00:00+00:00"],
        ),
        (
            vec![
                "defer",
                "tests.add",
                r#"{"a":1,"b":2}"#,
                "--at",
                "2026-11-28T12:00:00",
            ],
            vec!["no time zone"],
        ),
        (
            vec!["defer", "tests.add", r#"{"a":1,"b":2}"#, "--in", "soon"],
            vec!["--in", "90s"],
        ),
        (
            vec!["defer", "tests.add", r#"{"a":1,"b":2}"#, "--timeout", "0"],
            vec!["--timeout", "above 0"],
        ),
        (
            vec!["defer", "tests.add", r#"{"a":1,"b":2}"#, "--timeout", "31d"],
            vec!["--timeout", "30 days"],
        ),
        (
            vec!["defer", "tests.add", r#"{"a":1,"b":2}"#, "-q", &long],
            vec!["queue", "128"],
        ),
        (vec!["defer", "--unknown", &long], vec!["task", "128"]),
    ];
    for (args, needles) in cases {
        let out = db.embedded(&args);
        out.assert_one_line_error(&needles);
    }
    // The plain binary has no Rust task.
    db.postpone(&["defer", "tests.add"])
        .assert_one_line_error(&["pass --unknown", "no Rust tasks"]);
    // clap refuses --at with --in (a usage error: exit 2).
    let out = db.embedded(&[
        "defer",
        "tests.add",
        r#"{"a":1,"b":2}"#,
        "--at",
        "2026-11-28T12:00:00Z",
        "--in",
        "5",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("cannot be used with"), "{out:?}");
    assert_eq!(db.count_jobs(), 0);

    // Known task with fitting args: accepted, and --at with a zone is honoured.
    let out = db.embedded(&[
        "--json",
        "defer",
        "tests.add",
        r#"{"a":1,"b":2}"#,
        "--at",
        "2026-11-28T12:00:00+01:00",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json()["scheduled_at"],
        "2026-11-28T11:00:00Z",
        "{out:?}"
    );
    // A timeout is stored with the job.
    let out = db.embedded(&[
        "--json",
        "defer",
        "tests.add",
        r#"{"a":1,"b":2}"#,
        "--timeout",
        "90s",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["timeout_seconds"], 90.0, "{out:?}");
    let id = out.json()["id"].as_i64().expect("id");
    assert_eq!(
        db.sql_value(&format!(
            "SELECT timeout_ms::text FROM postpone_job_timeouts WHERE job_id = {id}"
        )),
        "90000"
    );
}

#[test]
fn a_database_without_the_schema_is_refused_with_the_fix() {
    let db = TestDb::empty();
    db.postpone(&["defer", "--unknown", "t"])
        .assert_one_line_error(&["run `postpone schema apply`"]);
    db.postpone(&["healthchecks"])
        .assert_one_line_error(&["run `postpone schema apply`"]);
    db.postpone(&["jobs", "list"])
        .assert_one_line_error(&["postpone schema apply"]);
    let out = db.postpone(&["schema", "check"]);
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn healthchecks_say_where_and_which_version() {
    let db = TestDb::with_schema();
    let out = db.postpone(&["healthchecks"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Database connection: OK"), "{out:?}");
    assert!(
        out.stdout.contains(&format!("dbname={}", db.name)),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains(&format!("Schema: OK (migration {})", latest_migration())),
        "{out:?}"
    );
    let out = db.postpone(&["--json", "healthchecks"]);
    assert_eq!(
        out.json()["schema"]["version"],
        latest_migration(),
        "{out:?}"
    );
}

#[test]
fn an_unreachable_database_is_one_line_naming_where() {
    let db = TestDb::empty();
    let unreachable = [("DATABASE_URL", "postgres://x@127.0.0.1:1/x")];
    for args in [
        &["healthchecks"][..],
        &["defer", "--unknown", "t"],
        &["jobs", "list"],
        &["schema", "apply"],
        &["queues"],
    ] {
        db.postpone_env(args, &unreachable)
            .assert_one_line_error(&["host=127.0.0.1", "port=1"]);
    }
}

#[test]
fn environment_variables_and_database_url_anywhere() {
    let db = TestDb::with_schema();
    let out = db.postpone_env(
        &["--json", "defer", "t"],
        &[
            ("POSTPONE_DEFER_QUEUE", "from_env"),
            ("POSTPONE_DEFER_UNKNOWN", "1"),
            ("POSTPONE_DEFER_PRIORITY", "-3"),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["queue_name"], "from_env", "{out:?}");
    assert_eq!(out.json()["priority"], -3, "{out:?}");
    let out = db.postpone_env(&["jobs", "list"], &[("POSTPONE_JSON", "true")]);
    assert_eq!(out.json()[0]["queue_name"], "from_env", "{out:?}");
    let out = db.postpone_env(&["defer", "t"], &[("POSTPONE_DEFER_UNKNOWN", "false")]);
    out.assert_one_line_error(&["pass --unknown"]);

    // --database-url before and after the subcommand, with DATABASE_URL pointing nowhere.
    let nowhere = [("DATABASE_URL", "postgres://x@127.0.0.1:1/x")];
    let url = db.url.as_str();
    let out = db.postpone_env(&["--database-url", url, "--json", "jobs", "list"], &nowhere);
    assert_eq!(out.json().as_array().map(Vec::len), Some(1), "{out:?}");
    let out = db.postpone_env(&["jobs", "list", "--json", "--database-url", url], &nowhere);
    assert_eq!(out.json().as_array().map(Vec::len), Some(1), "{out:?}");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let db = TestDb::empty();
    let out = db.postpone(&["frobnicate"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = db.postpone(&["--help"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("defer"), "{out:?}");
    let out = db.postpone(&["jobs", "delete-old"]);
    assert_eq!(out.code, 2, "{out:?}");
}

/// The newest migration this build applies.
fn latest_migration() -> &'static str {
    postpone::schema::migrations()
        .last()
        .expect("at least one migration")
        .version
}

#[test]
fn worker_refuses_a_metrics_address_it_cannot_serve_before_it_starts() {
    let db = TestDb::with_schema();
    db.sql("INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES ('default', 'tests.add', '{\"a\": 1, \"b\": 2}')");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let taken = taken.local_addr().expect("address").to_string();
    for (address, needle) in [
        ("nonsense", "\"nonsense\" is not host:port"),
        ("127.0.0.1:70000", "is not host:port"),
        (taken.as_str(), "cannot serve metrics on"),
    ] {
        let out = db.embedded(&["worker", "--one-shot", "--metrics-addr", address]);
        assert_eq!(out.code, 1, "{address}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{address}: {out:?}");
        assert!(out.stderr.contains(needle), "{address}: {out:?}");
        // Nothing ran: the job is still waiting, and no worker registered.
        assert_eq!(
            db.sql_value("SELECT status::text FROM procrastinate_jobs"),
            "todo"
        );
        assert_eq!(
            db.sql_value("SELECT count(*)::text FROM procrastinate_workers"),
            "0"
        );
    }
}

#[test]
fn spans_go_over_otlp_when_the_otel_variables_say_where() {
    let db = TestDb::with_schema();
    let receiver = postpone_testkit::OtlpReceiver::start();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_SERVICE_NAME", "postpone-otlp-test"),
    ];
    let mut defer = db.command(
        embedded_binary(),
        &["defer", "tests.add", r#"{"a": 1, "b": 2}"#],
    );
    defer.envs(otel);
    let out = run(defer);
    assert_eq!(out.code, 0, "{out:?}");
    // The defer span's context is kept beside the job, not in its args.
    assert_eq!(
        db.sql_value("SELECT count(*)::text FROM postpone_job_traces"),
        "1"
    );
    assert_eq!(
        db.sql_value("SELECT args::text FROM procrastinate_jobs"),
        r#"{"a": 1, "b": 2}"#
    );
    let mut worker = db.command(embedded_binary(), &["worker", "--one-shot"]);
    worker.envs(otel);
    let out = run(worker);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        db.sql_value("SELECT status::text FROM procrastinate_jobs"),
        "succeeded"
    );
    // Each process flushed its spans before it exited.
    let received = receiver.requests();
    assert!(
        received.iter().all(|r| r.path == "/v1/traces"),
        "{:?}",
        received.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // Decoded by the generated OTLP types: every request is a valid export request.
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message as _;
    let mut spans = Vec::new();
    for r in &received {
        let request = ExportTraceServiceRequest::decode(r.body.as_slice()).expect("OTLP protobuf");
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.expect("a resource");
            assert!(
                resource.attributes.iter().any(|kv| kv.key == "service.name"
                    && kv.value.as_ref().and_then(|v| v.value.clone())
                        == Some(Value::StringValue("postpone-otlp-test".to_owned()))),
                "{resource:?}"
            );
            for scope_spans in resource_spans.scope_spans {
                spans.extend(scope_spans.spans);
            }
        }
    }
    let named = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no {name} span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref().and_then(|v| v.value.clone()))
    };
    named("postpone.claim");
    named("postpone.complete");
    let (defer, job) = (named("postpone.defer"), named("postpone.job"));
    assert_eq!(
        attribute(job, "task"),
        Some(Value::StringValue("tests.add".to_owned()))
    );
    assert_eq!(
        attribute(job, "outcome"),
        Some(Value::StringValue("succeeded".to_owned()))
    );
    assert!(job.end_time_unix_nano >= job.start_time_unix_nano && job.start_time_unix_nano > 0);
    // The job's span runs in a trace of its own, linked to the span that deferred it.
    assert_ne!(job.trace_id, defer.trace_id);
    assert_eq!(job.links.len(), 1, "{job:?}");
    assert_eq!(
        (&job.links[0].trace_id, &job.links[0].span_id),
        (&defer.trace_id, &defer.span_id)
    );
}

#[test]
fn without_otel_variables_nothing_is_kept_beside_the_job() {
    let db = TestDb::with_schema();
    let out = db.embedded(&["defer", "tests.add", r#"{"a": 1, "b": 2}"#]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        db.sql_value("SELECT count(*)::text FROM postpone_job_traces"),
        "0"
    );
}

/// `workflows list` and `workflows show ID` (and the shell's `show_workflow`) print a
/// workflow's nodes with their statuses and jobs; an unknown id is one line, exit 1.
#[test]
fn workflows_list_and_show_print_the_nodes() {
    let db = TestDb::with_schema();
    db.sql(
        "INSERT INTO postpone_workflows (id, name, on_parent_failure) VALUES (7, 'etl', 'cancel');
         INSERT INTO postpone_workflow_nodes (workflow_id, name, parents, status, job_id, queue_name, task_name, priority, args)
         VALUES (7, 'extract', '{}', 'succeeded', 41, 'default', 'etl.extract', 0, '{}'),
                (7, 'load', '{extract}', 'waiting', NULL, 'default', 'etl.load', 0, '{}');",
    );
    let out = db.postpone(&["workflows", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("etl"), "{out:?}");
    assert!(out.stdout.contains("1 waiting, 1 succeeded"), "{out:?}");
    let out = db.postpone(&["workflows", "show", "7"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("workflow 7 \"etl\": running"),
        "{out:?}"
    );
    let load = out
        .stdout
        .lines()
        .find(|l| l.starts_with("load"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        load.contains("waiting") && load.contains("extract"),
        "{out:?}"
    );
    let out = db.postpone(&["--json", "workflows", "show", "7"]);
    let json = out.json();
    assert_eq!(json["nodes"][0]["job_id"], 41, "{json}");
    assert_eq!(json["finished"], false, "{json}");
    let out = db.postpone(&["shell", "show_workflow", "7"]);
    assert!(out.stdout.contains("etl.load"), "{out:?}");
    db.postpone(&["workflows", "show", "8"])
        .assert_one_line_error(&["no workflow 8: list them with `postpone workflows list`"]);
}
