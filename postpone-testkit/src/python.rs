//! The Python interpreter the conformance tests drive the reference `procrastinate` with.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Error;

/// The procrastinate version whose database contract Postpone keeps.
pub const PROCRASTINATE_VERSION: &str = "3.10.0";

/// How long to wait for another process that is creating the venv.
const LOCK_WAIT: Duration = Duration::from_secs(15 * 60);

/// The venv interpreter once found, shared by all threads of the process.
static FOUND: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The Python executable of a venv with `procrastinate==3.10.0` and `psycopg[binary]`.
///
/// In order: `$POSTPONE_PYTHON` (must already have the packages); `<workspace>/.venv/bin/python`
/// when it imports them; else `<workspace>/.venv` is created (`python3 -m venv`, then
/// `pip install -r scripts/python-requirements.txt`) under a lock, so parallel test threads
/// and processes create it once. Blocks while doing so (tens of seconds, network needed).
pub fn python() -> Result<PathBuf, Error> {
    if let Some(python) = std::env::var_os("POSTPONE_PYTHON") {
        let python = PathBuf::from(python);
        return if has_procrastinate(&python) {
            Ok(python)
        } else {
            Err(Error::Python(format!(
                "POSTPONE_PYTHON={} cannot import procrastinate {PROCRASTINATE_VERSION} and psycopg: `{} -m pip install -r scripts/python-requirements.txt`, or unset it",
                python.display(),
                python.display()
            )))
        };
    }
    let mut found = FOUND
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(python) = found.as_ref() {
        return Ok(python.clone());
    }
    let workspace = workspace_root();
    let venv = workspace.join(".venv");
    let python = venv.join("bin").join("python");
    if !has_procrastinate(&python) {
        let _lock = DirLock::acquire(&lock_path(&workspace))?;
        // Another process may have finished it while we waited.
        if !has_procrastinate(&python) {
            create_venv(&workspace, &venv)?;
            if !has_procrastinate(&python) {
                return Err(Error::Python(format!(
                    "{} still cannot import procrastinate {PROCRASTINATE_VERSION} after pip install: remove {} and retry, or set POSTPONE_PYTHON",
                    python.display(),
                    venv.display()
                )));
            }
        }
    }
    *found = Some(python.clone());
    Ok(python)
}

/// The workspace this crate was built in (its parent directory).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Whether `python` runs and imports the pinned procrastinate and psycopg.
fn has_procrastinate(python: &Path) -> bool {
    let check = format!(
        "import importlib.metadata as m, procrastinate, psycopg; \
         assert m.version('procrastinate') == '{PROCRASTINATE_VERSION}'"
    );
    Command::new(python)
        .args(["-c", &check])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `python3 -m venv` (unless a usable interpreter is already there), then pip install.
fn create_venv(workspace: &Path, venv: &Path) -> Result<(), Error> {
    let requirements = workspace.join("scripts").join("python-requirements.txt");
    let python = venv.join("bin").join("python");
    let runs = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !runs {
        if venv.exists() {
            fs::remove_dir_all(venv).map_err(|error| {
                Error::Python(format!(
                    "cannot remove the broken venv {}: {error}",
                    venv.display()
                ))
            })?;
        }
        tracing::info!(venv = %venv.display(), "creating the Python venv");
        let output = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .stdin(Stdio::null())
            .output();
        match output {
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(Error::Python(
                    "python3 not found: install it (`apt-get install python3 python3-venv`), or set POSTPONE_PYTHON".into(),
                ));
            }
            Err(error) => {
                return Err(Error::Python(format!("cannot run python3: {error}")));
            }
            Ok(output) if !output.status.success() => {
                // A half-made venv would look usable to the next attempt.
                let _ = fs::remove_dir_all(venv);
                return Err(Error::Python(format!(
                    "python3 -m venv {} failed ({}): install the venv module (`apt-get install python3-venv`), or set POSTPONE_PYTHON",
                    venv.display(),
                    last_line(&output.stderr)
                )));
            }
            Ok(_) => {}
        }
    }
    tracing::info!(requirements = %requirements.display(), "installing the Python requirements");
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
        ])
        .arg(&requirements)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| Error::Python(format!("cannot run {}: {error}", python.display())))?;
    if !output.status.success() {
        return Err(Error::Python(format!(
            "pip install -r {} into {} failed ({}): check network access to the package index, or set POSTPONE_PYTHON",
            requirements.display(),
            venv.display(),
            last_line(&output.stderr)
        )));
    }
    Ok(())
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

/// The lock directory for a workspace, in the temp dir so it never shows up in git.
fn lock_path(workspace: &Path) -> PathBuf {
    let hash = workspace
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    std::env::temp_dir().join(format!("postpone-venv-{hash:016x}.lock"))
}

/// A cross-process lock: a directory created atomically, holding the owner's pid so a
/// lock left by a killed process is taken over.
#[derive(Debug)]
struct DirLock {
    path: PathBuf,
}

impl DirLock {
    fn acquire(path: &Path) -> Result<Self, Error> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match fs::create_dir(path) {
                Ok(()) => {
                    let _ = fs::write(path.join("pid"), std::process::id().to_string());
                    return Ok(Self {
                        path: path.to_path_buf(),
                    });
                }
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                    if Self::is_stale(path) {
                        tracing::warn!(lock = %path.display(), "taking over a stale venv lock");
                        let _ = fs::remove_dir_all(path);
                        continue;
                    }
                }
                Err(error) => {
                    return Err(Error::Python(format!(
                        "cannot create the venv lock {}: {error}",
                        path.display()
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Python(format!(
                    "timed out waiting for another process creating the Python venv (lock {}): remove the lock if no such process runs",
                    path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stale when its owner has exited, or when it has had no pid for a minute.
    fn is_stale(path: &Path) -> bool {
        match fs::read_to_string(path.join("pid")) {
            Ok(pid) => pid.trim().parse::<u32>().is_ok_and(|pid| !pid_alive(pid)),
            Err(_) => fs::metadata(path)
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(60)),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Whether process `pid` exists (on this machine).
pub fn pid_alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        return Path::new("/proc").join(pid.to_string()).exists();
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_lock_excludes_and_recovers_from_dead_owners() {
        let path = std::env::temp_dir().join(format!("postpone-lock-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        let lock = DirLock::acquire(&path).expect("first acquire");
        assert!(!DirLock::is_stale(&path), "own lock is not stale");
        drop(lock);
        assert!(!path.exists());
        // A lock whose owner is gone is taken over.
        fs::create_dir(&path).expect("fake lock");
        let mut dead = Command::new("true").spawn().expect("spawn true");
        let dead_pid = dead.id();
        dead.wait().expect("reap true");
        fs::write(path.join("pid"), dead_pid.to_string()).expect("fake pid");
        let lock = DirLock::acquire(&path).expect("stale lock taken over");
        drop(lock);
        assert!(pid_alive(std::process::id()));
    }
}
