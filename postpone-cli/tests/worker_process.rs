//! Real worker processes (the `fleet` example: the CLI embedded with test tasks) against
//! real databases, one fresh database per test: queues, priorities, locks across two
//! processes, queueing locks, retries, aborts, signals, deletion policies, a killed
//! worker, and refused options.
//!
//! Every worker is a child process killed when its test ends, even on a panic. Tests wait
//! for conditions (database rows, output lines) up to a deadline; they never sleep and
//! hope, and assert no durations, only orderings (the tasks print microsecond timestamps,
//! see `examples/fleet.rs`).
//!
//! Run with: `cargo test -p postpone-cli --test worker_process`

mod common;

use common::{Output, block_on, server};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

fn now_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since.as_micros()).expect("micros fit")
}

/// Polls `condition` until it holds; fails the test with `what` at the deadline.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh database with the schema (applied by `postpone schema apply`), dropped at the end.
struct TestDb {
    name: String,
    url: String,
    client: tokio_postgres::Client,
}

impl TestDb {
    fn new() -> Self {
        let (name, url) = common::create_database("postpone_workertest");
        let client = block_on(server().connect(&name)).unwrap_or_else(|error| panic!("{error}"));
        let db = Self { url, name, client };
        let out = db.postpone(&["schema", "apply"]);
        assert_eq!(out.code, 0, "schema apply failed: {out:?}");
        db
    }

    fn command(&self, binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = common::command(binary, &self.url, args);
        command.envs(env.iter().copied());
        command
    }

    /// Runs the `postpone` binary to its end (with the deadline).
    fn postpone(&self, args: &[&str]) -> Output {
        let binary = Path::new(env!("CARGO_BIN_EXE_postpone"));
        Worker::spawn(self.command(binary, args, &[])).finish()
    }

    /// Runs the `fleet` binary to its end (with the deadline).
    fn fleet(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Worker::spawn(self.command(fleet_binary(), args, env)).finish()
    }

    /// Starts `fleet` in the background (killed when the returned guard drops).
    fn worker(&self, args: &[&str], env: &[(&str, &str)]) -> Worker {
        Worker::spawn(self.command(fleet_binary(), args, env))
    }

    /// `fleet defer TASK JSON EXTRA...`, which must succeed; the job's id.
    fn defer(&self, task: &str, json: &str, extra: &[&str]) -> i64 {
        let out = self.try_defer(task, json, extra);
        assert_eq!(out.code, 0, "{out:?}");
        out.json()["id"].as_i64().expect("a job id")
    }

    fn try_defer(&self, task: &str, json: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--json", "defer", task, json];
        args.extend_from_slice(extra);
        self.fleet(&args, &[])
    }

    fn sql(&self, statements: &str) {
        block_on(self.client.batch_execute(statements)).expect("run test SQL");
    }

    fn rows(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        block_on(self.client.query(sql, &[])).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn count(&self, sql: &str) -> i64 {
        self.rows(sql)[0].get(0)
    }

    fn status(&self, id: i64) -> String {
        let rows = self.rows(&format!(
            "SELECT status::text FROM procrastinate_jobs WHERE id = {id}"
        ));
        rows.first()
            .map_or_else(|| "(deleted)".to_owned(), |r| r.get(0))
    }

    fn wait_status(&self, id: i64, status: &str) {
        wait_until(&format!("job {id} {status}"), || self.status(id) == status);
    }

    fn workers(&self) -> i64 {
        self.count("SELECT count(*) FROM procrastinate_workers")
    }

    /// Sessions of this database whose last statement was a LISTEN (a worker's notifier).
    fn listeners(&self) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND query ILIKE 'LISTEN%'",
            self.name
        ))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        common::drop_database(&self.name);
    }
}

impl Output {
    /// A refusal: non-zero exit, exactly one error line, naming `option` (written with
    /// dashes or underscores).
    fn assert_refused(&self, option: &str) {
        assert_ne!(self.code, 0, "expected a refusal: {self:?}");
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "not one error line: {self:?}");
        let normalized = errors[0].replace('_', "-");
        assert!(
            normalized.contains(&option.replace('_', "-")),
            "the error does not name {option}: {self:?}"
        );
        assert!(self.stdout.is_empty(), "{self:?}");
    }
}

/// `target/<profile>/examples/fleet`, (re)built once per test run (`cargo test --test X`
/// does not build examples, and a stale one would lie).
fn fleet_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_postpone"))
            .parent()
            .expect("the binary's directory");
        let target_dir = profile_dir.parent().expect("the target directory");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let mut build = Command::new(cargo);
        build
            .args(words("build --quiet -p postpone-cli --example fleet"))
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build --example fleet");
        assert!(status.success(), "cargo build --example fleet failed");
        profile_dir.join("examples").join("fleet")
    })
}

/// A child process whose stdout and stderr are collected as they come; killed on drop.
struct Worker {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            let mut text = into.lock().unwrap_or_else(|p| p.into_inner());
            text.push_str(&line);
            text.push('\n');
        }
    })
}

impl Worker {
    fn spawn(mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), stdout.clone()),
            collect(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Self {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Waits for the exit (with the deadline) and for all output; the exit code, -1 when
    /// killed by a signal.
    fn wait_exit(&mut self) -> i32 {
        let mut status = None;
        wait_until(&format!("process {} exits", self.pid()), || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status.and_then(|s| s.code()).unwrap_or(-1)
    }

    fn finish(mut self) -> Output {
        let code = self.wait_exit();
        let (stdout, stderr) = (self.stdout(), self.stderr());
        Output {
            code,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn facts(&self) -> Vec<Fact> {
        self.stdout().lines().filter_map(Fact::parse).collect()
    }

    /// Waits for the task line `<kind> <label> ...`.
    fn wait_fact(&self, kind: &str, label: &str) -> Fact {
        let mut found = None;
        wait_until(&format!("{kind} {label} from {}", self.pid()), || {
            found = self
                .facts()
                .into_iter()
                .find(|f| f.kind == kind && f.label == label);
            found.is_some()
        });
        found.expect("found")
    }

    fn wait_stderr(&self, needle: &str) {
        wait_until(&format!("{needle:?} on stderr of {}", self.pid()), || {
            self.stderr().contains(needle)
        });
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- worker {} stdout:\n{}--- stderr:\n{}",
                self.child.id(),
                self.stdout(),
                self.stderr()
            );
        }
    }
}

/// One line printed by a `fleet` task: `kind label micros pid job_id [extra]`.
#[derive(Debug, Clone)]
struct Fact {
    kind: String,
    label: String,
    micros: i64,
    pid: u32,
    job_id: i64,
    extra: String,
}

impl Fact {
    fn parse(line: &str) -> Option<Self> {
        let mut parts = line.split(' ');
        Some(Self {
            kind: parts.next()?.to_owned(),
            label: parts.next()?.to_owned(),
            micros: parts.next()?.parse().ok()?,
            pid: parts.next()?.parse().ok()?,
            job_id: parts.next()?.parse().ok()?,
            extra: parts.collect::<Vec<_>>().join(" "),
        })
    }
}

fn sleep_args(label: &str, millis: u64) -> String {
    format!(r#"{{"label": "{label}", "millis": {millis}}}"#)
}

/// `"worker --one-shot"` -> `["worker", "--one-shot"]`.
fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

fn label_args(label: &str) -> String {
    format!(r#"{{"label": "{label}"}}"#)
}

#[test]
fn queues_filter_and_priority_order_in_one_shot_mode() {
    let db = TestDb::new();
    let jobs = [
        ("a1", "a", "0"),
        ("a2", "a", "5"),
        ("c1", "c", "5"),
        ("b1", "b", "10"),
        ("c2", "c", "0"),
    ];
    let ids: BTreeMap<&str, i64> = jobs
        .iter()
        .map(|(label, queue, priority)| {
            let args = sleep_args(label, 0);
            let extra = ["--queue", queue, "--priority", priority];
            (*label, db.defer("tests.sleep", &args, &extra))
        })
        .collect();
    let out = db.fleet(
        &words("worker --queues a,c --one-shot --concurrency 1"),
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let facts: Vec<Fact> = out.stdout.lines().filter_map(Fact::parse).collect();
    // Priority DESC, then id ASC; queue b untouched.
    let started: Vec<&str> = facts
        .iter()
        .filter(|f| f.kind == "start")
        .map(|f| f.label.as_str())
        .collect();
    assert_eq!(started, ["a2", "c1", "a1", "c2"], "{out:?}");
    for label in ["a1", "a2", "c1", "c2"] {
        assert_eq!(db.status(ids[label]), "succeeded");
    }
    assert_eq!(db.status(ids["b1"]), "todo");
    assert_eq!(db.workers(), 0, "the worker unregistered");

    // One-shot with nothing left on its queues exits by itself at once.
    let out = db.fleet(
        &words("worker --queues a,c --one-shot --concurrency 1"),
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(db.status(ids["b1"]), "todo");
    assert_eq!(db.workers(), 0);
}

#[test]
fn locks_hold_across_two_worker_processes() {
    let db = TestDb::new();
    let args = words("worker --concurrency 3 --fetch-job-polling-interval 0.1");
    let mut first = db.worker(&args, &[]);
    let mut second = db.worker(&args, &[]);
    wait_until("both workers registered", || db.workers() == 2);
    // 4 locks x 5 jobs of 30 ms, ids interleaved across locks, inserted at once.
    let (locks, per_lock) = (4, 5);
    let mut values = Vec::new();
    for i in 0..per_lock {
        for l in 0..locks {
            let args = sleep_args(&format!("L{l}-{i}"), 30);
            values.push(format!("('default', 'tests.sleep', 'lock{l}', '{args}')"));
        }
    }
    db.sql(&format!(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args) VALUES {}",
        values.join(", ")
    ));
    let total = i64::from(locks * per_lock);
    wait_until("every job succeeded", || {
        db.count("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'") == total
    });
    first.signal("TERM");
    second.signal("TERM");
    assert_eq!(first.wait_exit(), 0);
    assert_eq!(second.wait_exit(), 0);

    let facts: Vec<Fact> = first.facts().into_iter().chain(second.facts()).collect();
    let mut runs: BTreeMap<String, BTreeMap<i64, (i64, i64)>> = BTreeMap::new();
    for start in facts.iter().filter(|f| f.kind == "start") {
        let ends: Vec<&Fact> = facts
            .iter()
            .filter(|f| f.kind == "end" && f.job_id == start.job_id)
            .collect();
        assert_eq!(ends.len(), 1, "job {} ended once: {facts:?}", start.job_id);
        assert_eq!(ends[0].pid, start.pid);
        let lock = start.label.split('-').next().expect("a lock").to_owned();
        let previous = runs
            .entry(lock)
            .or_default()
            .insert(start.job_id, (start.micros, ends[0].micros));
        assert!(previous.is_none(), "job {} ran twice", start.job_id);
    }
    assert_eq!(
        runs.values().map(BTreeMap::len).sum::<usize>(),
        20,
        "{facts:?}"
    );
    for (lock, jobs) in &runs {
        // By id, each job of a lock starts after the previous one ended.
        let spans: Vec<(i64, i64)> = jobs.values().copied().collect();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{lock}: overlap or out of id order: {jobs:?}"
            );
        }
    }
    let pids: BTreeSet<u32> = facts.iter().map(|f| f.pid).collect();
    assert_eq!(pids.len(), 2, "both processes ran jobs: {facts:?}");
    assert_eq!(db.workers(), 0);
}

#[test]
fn a_queueing_lock_refuses_a_second_waiting_job_until_the_first_starts() {
    let db = TestDb::new();
    let lock = ["--queueing-lock", "ql"];
    let first = db.defer("tests.forever", &label_args("q1"), &lock);
    let out = db.try_defer("tests.forever", &label_args("q2"), &lock);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("\"ql\""), "{out:?}");
    assert_eq!(db.count("SELECT count(*) FROM procrastinate_jobs"), 1);

    let worker = db.worker(&["worker"], &[]);
    worker.wait_fact("start", "q1");
    assert_eq!(db.status(first), "doing");
    let second = db.defer("tests.forever", &label_args("q2"), &lock);
    assert_eq!(db.status(second), "todo");
    let out = db.try_defer("tests.forever", &label_args("q3"), &lock);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(db.count("SELECT count(*) FROM procrastinate_jobs"), 2);
}

#[test]
fn a_failing_job_is_retried_after_its_wait() {
    let db = TestDb::new();
    let worker = db.worker(&["worker", "--fetch-job-polling-interval", "0.1"], &[]);
    let id = db.defer("tests.fail", &label_args("f"), &[]);
    db.wait_status(id, "failed");
    assert_eq!(
        db.count(&format!(
            "SELECT attempts::bigint FROM procrastinate_jobs WHERE id = {id}"
        )),
        3
    );
    let fails: Vec<Fact> = worker
        .facts()
        .into_iter()
        .filter(|f| f.kind == "fail")
        .collect();
    assert_eq!(fails.len(), 3, "{fails:?}");

    let events: Vec<(String, i64)> = db
        .rows(&format!(
            "SELECT type::text, at FROM procrastinate_events WHERE job_id = {id} ORDER BY id"
        ))
        .iter()
        .map(|r| {
            let at: chrono::DateTime<chrono::Utc> = r.get(1);
            (r.get::<_, String>(0), at.timestamp_micros())
        })
        .collect();
    let of = |kind: &str| -> Vec<i64> {
        events
            .iter()
            .filter(|(t, _)| t == kind)
            .map(|(_, at)| *at)
            .collect()
    };
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("deferred"));
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("failed"));
    let (started, scheduled) = (of("started"), of("scheduled"));
    assert_eq!(started.len(), 3, "{events:?}");
    assert_eq!(of("deferred_for_retry").len(), 2, "{events:?}");
    assert_eq!(scheduled.len(), 2, "{events:?}");
    for retry in 0..2 {
        // Scheduled at least the wait (1 s) after the failure, and not started before.
        assert!(
            scheduled[retry] >= fails[retry].micros + 1_000_000,
            "retry {retry} scheduled too early: {events:?} {fails:?}"
        );
        assert!(
            started[retry + 1] >= scheduled[retry],
            "retry {retry} started before its time: {events:?}"
        );
        assert!(fails[retry + 1].micros >= fails[retry].micros + 1_000_000);
    }
}

/// Aborts a running `tests.forever` with `postpone abort`: the job ends `aborted` and
/// the worker goes on.
fn abort_a_running_job(worker_args: &[&str], listen: bool) {
    let db = TestDb::new();
    let mut worker = db.worker(worker_args, &[]);
    if listen {
        wait_until("the worker listens", || db.listeners() == 1);
    }
    let id = db.defer("tests.forever", &label_args("f"), &[]);
    worker.wait_fact("start", "f");
    if !listen {
        assert_eq!(db.listeners(), 0, "no LISTEN with --listen-notify off");
    }
    let out = db.postpone(&["--json", "abort", &id.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["outcome"], "abort_requested", "{out:?}");
    db.wait_status(id, "aborted");
    worker.wait_fact("dropped", "f");
    // The worker is still there and takes the next job.
    let next = db.defer("tests.sleep", &sleep_args("next", 0), &[]);
    db.wait_status(next, "succeeded");
    assert!(!worker.exited());
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(), 0);
}

#[test]
fn abort_reaches_a_running_job_through_notify() {
    // Abort polling once a day: only the notification can deliver the request in time.
    abort_a_running_job(&["worker", "--abort-job-polling-interval", "1d"], true);
}

#[test]
fn abort_reaches_a_running_job_by_polling() {
    let args = "worker --listen-notify off --abort-job-polling-interval 0.2 \
                --fetch-job-polling-interval 0.2";
    abort_a_running_job(&words(args), false);
}

#[test]
fn sigterm_lets_the_running_job_finish_then_exits() {
    let db = TestDb::new();
    let mut worker = db.worker(&["worker"], &[]);
    let id = db.defer("tests.sleep", &sleep_args("s", 1000), &[]);
    let start = worker.wait_fact("start", "s");
    let worker_id = db.count(&format!(
        "SELECT worker_id FROM procrastinate_jobs WHERE id = {id}"
    ));
    let signalled = now_micros();
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(), 0, "{}", worker.stderr());
    let end = worker.wait_fact("end", "s");
    assert!(
        start.micros < signalled && signalled < end.micros,
        "the signal came while the job ran"
    );
    assert_eq!(db.status(id), "succeeded");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM procrastinate_workers WHERE id = {worker_id}"
        )),
        0,
        "the worker unregistered"
    );
}

#[test]
fn graceful_timeout_aborts_a_polling_job_with_reason_shutdown() {
    let db = TestDb::new();
    let mut worker = db.worker(&words("worker --shutdown-graceful-timeout 0.3"), &[]);
    let id = db.defer("tests.poll", &label_args("p"), &[]);
    worker.wait_fact("start", "p");
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(), 0, "{}", worker.stderr());
    let seen = worker.wait_fact("abort_seen", "p");
    assert_eq!(seen.extra, "Shutdown");
    assert_eq!(db.status(id), "aborted");
    assert_eq!(db.workers(), 0);
}

#[test]
fn a_second_sigint_aborts_the_running_job() {
    let db = TestDb::new();
    let mut worker = db.worker(&["--log-level", "info", "worker"], &[]);
    let id = db.defer("tests.forever", &label_args("f"), &[]);
    worker.wait_fact("start", "f");
    worker.signal("INT");
    worker.wait_stderr("stop requested");
    assert_eq!(db.status(id), "doing", "the first signal waits for the job");
    assert!(!worker.exited());
    worker.signal("INT");
    assert_eq!(worker.wait_exit(), 0, "{}", worker.stderr());
    worker.wait_fact("dropped", "f");
    assert_eq!(db.status(id), "aborted");
    assert_eq!(db.workers(), 0);
}

#[test]
fn delete_jobs_policies() {
    let db = TestDb::new();
    let expected = [
        ("never", "succeeded", "failed"),
        ("successful", "(deleted)", "failed"),
        ("always", "(deleted)", "(deleted)"),
    ];
    for (policy, after_success, after_failure) in expected {
        let ok = db.defer("tests.sleep", &sleep_args(policy, 0), &["--queue", policy]);
        // An unknown task fails at once (tests.fail would be retried).
        let failed = db.defer("tests.nope", "{}", &["--queue", policy, "--unknown"]);
        let args = format!("worker --one-shot --queues {policy} --delete-jobs {policy}");
        let out = db.fleet(&words(&args), &[]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(db.status(ok), after_success, "{policy}");
        assert_eq!(db.status(failed), after_failure, "{policy}");
    }
}

#[test]
fn a_killed_worker_leaves_its_job_stalled_and_is_pruned_by_the_next() {
    let db = TestDb::new();
    let args = words("worker --heartbeat-interval 0.2 --stalled-worker-timeout 1");
    let mut worker = db.worker(&args, &[]);
    let id = db.defer("tests.forever", &label_args("k"), &[]);
    worker.wait_fact("start", "k");
    let job_worker = |db: &TestDb| -> Option<i64> {
        db.rows(&format!(
            "SELECT worker_id FROM procrastinate_jobs WHERE id = {id}"
        ))[0]
            .get(0)
    };
    let dead = job_worker(&db).expect("a running job has its worker");
    worker.signal("KILL");
    assert_eq!(worker.wait_exit(), -1);
    // Nothing lost: the job stays doing, with the dead worker's id.
    assert_eq!(db.status(id), "doing");
    assert_eq!(job_worker(&db), Some(dead));

    let stalled = || -> Vec<i64> {
        let out = db.postpone(&words("--json jobs stalled --seconds-since-heartbeat 1"));
        assert_eq!(out.code, 0, "{out:?}");
        let jobs = out.json();
        let jobs = jobs.as_array().expect("a JSON array");
        jobs.iter().filter_map(|j| j["id"].as_i64()).collect()
    };
    wait_until("the job is listed as stalled", || stalled() == [id]);
    // Procrastinate (Python) sees the same stalled job.
    assert_eq!(python_stalled_jobs(&db), [id]);

    // Without the rescue, as a Procrastinate worker, the next worker only prunes it.
    let mut next_args = args.clone();
    next_args.push("--no-rescue");
    let _next = db.worker(&next_args, &[]);
    let gone = format!("SELECT count(*) FROM procrastinate_workers WHERE id = {dead}");
    wait_until("the dead worker is pruned", || db.count(&gone) == 0);
    assert_eq!(job_worker(&db), None);
    assert_eq!(db.status(id), "doing");
    assert_eq!(stalled(), [id]);
}

/// The ids Procrastinate 3.10's own `get_stalled_jobs(seconds_since_heartbeat=1)` lists.
fn python_stalled_jobs(db: &TestDb) -> Vec<i64> {
    let python = postpone_testkit::python().unwrap_or_else(|e| panic!("{e}"));
    let script = "import asyncio, os, procrastinate\n\
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ['DATABASE_URL']))\n\
        async def main():\n\
        \x20   async with app.open_async():\n\
        \x20       jobs = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=1)\n\
        \x20       print(' '.join(str(job.id) for job in jobs))\n\
        asyncio.run(main())\n";
    let out = Command::new(python)
        .args(["-c", script])
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|id| id.parse().expect("a job id"))
        .collect()
}

#[test]
fn bad_worker_options_are_refused_before_anything_starts() {
    let db = TestDb::new();
    let cases = [
        ("--concurrency 0", "concurrency"),
        ("--concurrency -1", "--concurrency"),
        ("--concurrency=-1", "--concurrency"),
        (
            "--fetch-job-polling-interval 0",
            "fetch_job_polling_interval",
        ),
        ("--heartbeat-interval 100d", "heartbeat_interval"),
        (
            "--heartbeat-interval 10 --stalled-worker-timeout 10",
            "stalled_worker_timeout",
        ),
        ("--delete-jobs sometimes", "--delete-jobs"),
        ("--task-timeout 0", "--task-timeout"),
        ("--task-timeout 31d", "30 days"),
        (&format!("--queues {}", "q".repeat(129)), "queue name"),
    ];
    for (options, named) in cases {
        let args = format!("worker {options}");
        db.fleet(&words(&args), &[]).assert_refused(named);
        assert_eq!(db.workers(), 0, "{options:?}");
    }
}

#[test]
fn a_task_timeout_fails_the_job_and_a_defer_calls_timeout_wins() {
    let db = TestDb::new();
    let cut = db.defer("tests.sleep", &sleep_args("cut", 60_000), &[]);
    // Its own timeout is longer than the worker's: it runs to its end.
    let whole = db.defer(
        "tests.sleep",
        &sleep_args("whole", 500),
        &["--timeout", "1m"],
    );
    let out = db.fleet(
        &words("--log-level info worker --one-shot"),
        &[("POSTPONE_WORKER_TASK_TIMEOUT", "300ms")],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(db.status(cut), "failed");
    assert_eq!(db.status(whole), "succeeded");
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(&format!("job_id={cut}")) && l.contains("job failed"))
        .unwrap_or_else(|| panic!("no failure line for job {cut}: {}", out.stderr));
    assert!(
        line.contains("ran longer than its timeout of 300ms"),
        "{line}"
    );
}

#[test]
fn worker_options_from_environment_variables() {
    let db = TestDb::new();
    db.fleet(&["worker"], &[("POSTPONE_WORKER_CONCURRENCY", "0")])
        .assert_refused("concurrency");
    assert_eq!(db.workers(), 0);

    let a = db.defer("tests.sleep", &sleep_args("a", 0), &["--queue", "a"]);
    let b = db.defer("tests.sleep", &sleep_args("b", 0), &["--queue", "b"]);
    let env = [
        ("POSTPONE_WORKER_QUEUES", "a"),
        ("POSTPONE_WORKER_ONE_SHOT", "true"),
    ];
    let out = db.fleet(&["worker"], &env);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(db.status(a), "succeeded");
    assert_eq!(db.status(b), "todo");
}

#[test]
fn an_unknown_task_fails_its_job_and_the_worker_goes_on() {
    let db = TestDb::new();
    let unknown = db.defer("tests.nope", r#"{"x": 1}"#, &["--unknown"]);
    let next = db.defer("tests.sleep", &sleep_args("next", 0), &[]);
    let worker = db.worker(&["--log-level", "info", "worker"], &[]);
    db.wait_status(next, "succeeded");
    assert_eq!(db.status(unknown), "failed");
    worker.wait_stderr("no task named \"tests.nope\"");
    let log = worker.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("tests.nope"))
        .expect("a log line");
    assert!(line.contains(&format!("job_id={unknown}")), "{log}");
    assert!(
        line.contains("tests.sleep"),
        "the log names the known tasks: {log}"
    );
}

/// Options of the workers of the rescue tests: a dead worker is found within a second.
const RESCUE_ARGS: &str =
    "worker --heartbeat-interval 0.2 --stalled-worker-timeout 1 --rescue-interval 0.2";

/// Issue 13's two rules at once: after a `kill -9`, the job the worker was running is a
/// failed attempt (here no retry is left: `failed`), and the jobs waiting in its local
/// queue, claimed but never started, go back to `todo` with no attempt counted and run once
/// on the next worker, without a person.
#[test]
fn a_killed_workers_jobs_are_rescued_the_waiting_ones_without_an_attempt() {
    let db = TestDb::new();
    // Ten slots, all held by gates, so the waiting jobs wait in the local queue. How far
    // a worker claims ahead, and how far its start watermark runs ahead, follow the pace
    // of its attempts (ADR 11), so a first job of 200 ms sets it with wide margins: ten
    // slots x 100 ms (the prefetch horizon) / its run time leave room for the three
    // waiting jobs unless it took over 330 ms, and the watermark covers none of them
    // unless its write takes over 20 ms (ten slots x write time / 200 ms). With one slot
    // and a 0-ms first job, as this test was first written, the prefetch needed that job
    // to run within 20 ms: two test runs at once did not always give it.
    let args = format!("{RESCUE_ARGS} --concurrency 10");
    let args = words(&args);
    let mut first = db.worker(&args, &[]);
    db.defer("tests.sleep", &sleep_args("warm", 200), &[]);
    first.wait_fact("end", "warm");
    let gates: Vec<i64> = (0..10)
        .map(|i| db.defer("tests.forever", &label_args(&format!("gate{i}")), &[]))
        .collect();
    for i in 0..10 {
        first.wait_fact("start", &format!("gate{i}"));
    }
    let waiting: Vec<i64> = (0..3)
        .map(|i| db.defer("tests.sleep", &sleep_args(&format!("w{i}"), 0), &[]))
        .collect();
    let claimed = format!(
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' AND id IN ({})",
        waiting
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    wait_until("the worker claims the jobs behind the gates", || {
        db.count(&claimed) == 3
    });
    first.signal("KILL");
    assert_eq!(first.wait_exit(), -1);

    let next = db.worker(&args, &[]);
    for &gate in &gates {
        db.wait_status(gate, "failed");
    }
    for &id in &waiting {
        db.wait_status(id, "succeeded");
    }
    let attempts = db.rows(&format!(
        "SELECT id, attempts FROM procrastinate_jobs WHERE id IN ({}) ORDER BY id",
        waiting
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ));
    for row in &attempts {
        assert_eq!(
            row.get::<_, i32>(1),
            1,
            "job {} lost an attempt",
            row.get::<_, i64>(0)
        );
    }
    // They never started on the killed worker, and ran once on the next.
    let first_started: BTreeSet<String> = first
        .facts()
        .into_iter()
        .filter(|f| f.kind == "start")
        .map(|f| f.label)
        .collect();
    let mut expected_started: BTreeSet<String> = (0..10).map(|i| format!("gate{i}")).collect();
    expected_started.insert("warm".to_owned());
    assert_eq!(first_started, expected_started);
    for i in 0..3 {
        let label = format!("w{i}");
        let runs = next
            .facts()
            .iter()
            .filter(|f| f.kind == "start" && f.label == label)
            .count();
        assert_eq!(runs, 1, "{label} ran {runs} times on the next worker");
    }
    // Why, for a person: one rescue each, the gates started jobs, the others not.
    let rescues = db.rows("SELECT job_id, started, outcome FROM postpone_rescues ORDER BY job_id");
    let rescues: Vec<(i64, bool, String)> = rescues
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut expected: Vec<(i64, bool, String)> = gates
        .iter()
        .map(|&gate| (gate, true, "failed".to_owned()))
        .collect();
    expected.extend(waiting.iter().map(|&id| (id, false, "todo".to_owned())));
    assert_eq!(rescues, expected);
    let out = db.postpone(&["jobs", "list", "--details", "--id", &waiting[0].to_string()]);
    assert!(
        out.stdout.contains("stopped, never started there; todo"),
        "{out:?}"
    );
    let out = db.postpone(&[
        "--json",
        "jobs",
        "list",
        "--details",
        "--id",
        &gates[0].to_string(),
    ]);
    let rescue = &out.json()[0]["rescues"][0];
    assert_eq!(
        (&rescue["started"], &rescue["outcome"]),
        (&true.into(), &"failed".into())
    );
}

/// A job that kills its worker every time does not loop forever: each death is a failed
/// attempt, and once its retry is spent (`tests.crash` retries once) it ends `failed`, two
/// deaths in all, each found and rescued by the next worker.
#[test]
fn a_poison_job_ends_failed_once_its_attempts_are_spent() {
    let db = TestDb::new();
    let args = words(RESCUE_ARGS);
    let poison = db.defer("tests.crash", &label_args("poison"), &[]);
    let mut deaths = 0;
    let mut workers = Vec::new();
    wait_until("the poison job to end failed", || {
        if db.status(poison) == "failed" {
            return true;
        }
        if workers.last_mut().is_none_or(|w: &mut Worker| w.exited()) {
            deaths += usize::from(!workers.is_empty());
            assert!(deaths <= 2, "the poison job killed {deaths} workers");
            workers.push(db.worker(&args, &[]));
        }
        false
    });
    let attempts = db.count(&format!(
        "SELECT attempts::bigint FROM procrastinate_jobs WHERE id = {poison}"
    ));
    assert_eq!((deaths, attempts), (2, 2));
    let outcomes = db.rows(&format!(
        "SELECT started, outcome FROM postpone_rescues WHERE job_id = {poison} ORDER BY id"
    ));
    let outcomes: Vec<(bool, String)> = outcomes.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        outcomes,
        [(true, "retried".to_owned()), (true, "failed".to_owned())]
    );
}

/// Worker processes and the CLI through a real PgBouncer in transaction pooling, with
/// `--poll-only` (here from `POSTPONE_POLL_ONLY`): jobs deferred through it run, a
/// `kill -9` mid-job is rescued by the next worker, which stops on SIGTERM with exit 0.
#[test]
fn poll_only_workers_through_pgbouncer_heal_and_stop() {
    let db = TestDb::new();
    let bouncer = block_on(postpone_testkit::PgBouncer::shared(
        postpone_testkit::PoolMode::Transaction,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let url = bouncer.url(&db.name);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("POSTPONE_POLL_ONLY", "true"),
    ];
    let args = format!("{RESCUE_ARGS} --fetch-job-polling-interval 0.1");
    let args = words(&args);
    let mut first = db.worker(&args, &env);
    let defer = |task: &str, json: &str| {
        let out = db.fleet(&["--json", "defer", task, json], &env);
        assert_eq!(out.code, 0, "{out:?}");
        out.json()["id"].as_i64().expect("a job id")
    };
    let gate = defer("tests.forever", &label_args("gate"));
    first.wait_fact("start", "gate");
    first.signal("KILL");
    assert_eq!(first.wait_exit(), -1);
    let waiting: Vec<i64> = (0..5)
        .map(|i| defer("tests.sleep", &sleep_args(&format!("w{i}"), 0)))
        .collect();
    let mut next = db.worker(&args, &env);
    db.wait_status(gate, "failed");
    for &id in &waiting {
        db.wait_status(id, "succeeded");
    }
    next.signal("TERM");
    assert_eq!(next.wait_exit(), 0, "{}", next.stderr());
    assert_eq!(db.workers(), 0);
    // The CLI reads through it too.
    let out = db.fleet(&["--json", "jobs", "list"], &env);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json().as_array().map(Vec::len), Some(6));
    // A worker that would LISTEN there says why it cannot, and starts nothing.
    let out = db.fleet(&["worker"], &[("DATABASE_URL", url.as_str())]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("poll-only") && out.stderr.lines().count() == 1,
        "{out:?}"
    );
    // Asynchronous commit is a session setting: refused in one line.
    let out = db.fleet(&["worker", "--asynchronous-commit"], &env);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--asynchronous-commit"), "{out:?}");
    assert_eq!(db.workers(), 0);
}

/// `GET /metrics` of `address`: the samples, parsed by `prometheus-parse`, by name and
/// labels (`name{k="v",...}`, labels sorted).
fn scrape(address: &str) -> BTreeMap<String, f64> {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(address).expect("connect to /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition format parses");
    scrape
        .samples
        .into_iter()
        .filter_map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            labels.sort();
            Some((format!("{}{{{}}}", sample.metric, labels.join(",")), value))
        })
        .collect()
}

#[test]
fn metrics_are_served_during_a_drain_and_parse() {
    let db = TestDb::new();
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("address").to_string()
    };
    db.sql(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args)
         SELECT 'default', 'tests.sleep', json_build_object('label', 'm' || i, 'millis', 2)
           FROM generate_series(1, 200) AS i",
    );
    let mut worker = db.worker(
        &["worker", "--concurrency", "4", "--metrics-addr", &address],
        &[],
    );
    let finished =
        r#"postpone_jobs_finished_total{outcome="succeeded",queue="default",task="tests.sleep"}"#;
    let mut last = 0.0;
    wait_until("200 jobs counted as succeeded on /metrics", || {
        // Not serving yet while the worker starts.
        if std::net::TcpStream::connect(&address).is_err() {
            return false;
        }
        let samples = scrape(&address);
        let done = samples.get(finished).copied().unwrap_or_default();
        assert!(done >= last, "the count went down: {last} then {done}");
        last = done;
        done == 200.0
    });
    let samples = scrape(&address);
    assert_eq!(
        samples.get(r#"postpone_jobs_started_total{queue="default",task="tests.sleep"}"#),
        Some(&200.0),
        "{samples:#?}"
    );
    assert_eq!(
        samples.get(r#"postpone_jobs_claimed_total{queue="default"}"#),
        Some(&200.0)
    );
    assert_eq!(samples.get("postpone_jobs_running{}"), Some(&0.0));
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"),
        200
    );
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(), 0, "{}", worker.stderr());
}
