//! What the CLI's test binaries share: a runtime for their own async calls, the PostgreSQL
//! server (found or started by `postpone-testkit`), and fresh databases.

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// Runs a future on the shared runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

/// The server; a test never passes without one.
pub fn server() -> &'static postpone_testkit::Server {
    block_on(postpone_testkit::server()).unwrap_or_else(|error| panic!("{error}"))
}

/// Creates a fresh empty database `<prefix>_<pid>_<n>`; returns its name and URL.
pub fn create_database(prefix: &str) -> (String, String) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let server = server();
    block_on(async {
        server.drop_database(&name).await?;
        server.create_database(&name, None).await
    })
    .unwrap_or_else(|error| panic!("{error}"));
    let url = server.url(&name);
    (name, url)
}

/// Drops a database, on its own thread: this may run inside a panicking test.
pub fn drop_database(name: &str) {
    let name = name.to_owned();
    let _ = std::thread::spawn(move || {
        let _ = block_on(server().drop_database(&name));
    })
    .join();
}

/// `binary ARGS` against the database at `url`, without the caller's `POSTPONE_*`, `PG*`
/// and `RUST_LOG` variables, so the environment of whoever runs the tests cannot steer them.
pub fn command(binary: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("POSTPONE_") || key.starts_with("PG") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env("DATABASE_URL", url);
    command
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(output: std::process::Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Output {
    /// Stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self:?}"))
    }
}

/// Runs a command to its end.
pub fn run(mut command: Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
        .into()
}
