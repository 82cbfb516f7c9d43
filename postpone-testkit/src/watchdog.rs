//! A detached `sh` watchdog: once this process has exited (a test binary killed, or done
//! without a teardown), it stops what a test started and removes its directory.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// What the watchdog stops.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// One process.
    Process(u32),
    /// A process group (a browser and its children).
    Group(u32),
}

/// Spawns the watchdog named `name` (as `ps` shows it): when this process is gone it
/// sends SIGTERM to `target`, SIGKILL two seconds later if it still runs, and removes
/// `dir`. In a process group of its own, so a signal to the tests' group spares it.
pub(crate) fn spawn(name: &str, target: Target, dir: &Path) -> std::io::Result<Child> {
    // dash's kill takes a negative pid for a group, but no `--`.
    const SCRIPT: &str = r#"owner=$1; target=$2; dir=$3
while kill -0 "$owner" 2>/dev/null; do sleep 1; done
kill -TERM "$target" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$target" 2>/dev/null || break; sleep 0.2; done
kill -KILL "$target" 2>/dev/null
rm -rf "$dir""#;
    let target = match target {
        Target::Process(pid) => pid.to_string(),
        Target::Group(pgid) => format!("-{pgid}"),
    };
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg(name)
        .arg(std::process::id().to_string())
        .arg(target)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}
