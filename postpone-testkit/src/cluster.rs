//! Throwaway PostgreSQL clusters: `initdb` into a temporary directory, start on a free
//! port with the socket in that directory, and remove everything when the process exits.
//!
//! Rust tests have no global teardown, so each cluster gets a watchdog: a small `sh`
//! process in its own process group that polls the owning process and, once it is gone,
//! stops the server (`pg_ctl stop -m immediate`) and deletes the directory.

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::discover::kv_quote;

/// Where Debian and Ubuntu install the server binaries, one directory per major version.
const DEBIAN_LIB_DIR: &str = "/usr/lib/postgresql";

/// Unix socket paths are limited to about 107 bytes; keep the directory well below.
const MAX_SOCKET_DIR_LEN: usize = 80;

/// A running throwaway cluster. [`Cluster::stop`] removes it now; otherwise the watchdog
/// removes it when the owning process exits.
#[derive(Debug)]
pub(crate) struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    watchdog: Child,
}

/// Starts a throwaway cluster owned by this process; `Ok(None)` when no PostgreSQL
/// binaries are installed.
pub(crate) fn start_throwaway_cluster() -> Result<Option<Cluster>, Error> {
    match find_binaries() {
        Some(bin) => start_watched_by(&bin, std::process::id()).map(Some),
        None => Ok(None),
    }
}

/// The directory holding `initdb` and `pg_ctl`: the highest version under
/// `/usr/lib/postgresql/*/bin`, else the directory of `initdb` found on `PATH`.
pub(crate) fn find_binaries() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(DEBIAN_LIB_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let initdb = fs::canonicalize(dir.join("initdb")).ok()?;
        let bin = initdb.parent()?.to_path_buf();
        has_tools(&bin).then_some(bin)
    })
}

/// Starts a cluster from the binaries in `bin`, with a watchdog that removes it once
/// process `owner` has exited.
pub(crate) fn start_watched_by(bin: &Path, owner: u32) -> Result<Cluster, Error> {
    let dir = make_dir("pg").map_err(|(dir, error)| Error::Cluster {
        dir: dir.display().to_string(),
        detail: format!("cannot create the directory: {error}"),
    })?;
    let dir_name = dir.display().to_string();
    let fail = |detail: String| Error::Cluster {
        dir: dir_name.clone(),
        detail,
    };
    // Running as root: PostgreSQL refuses to run as root, so run it as `postgres`.
    let as_postgres = fs::metadata(&dir)
        .map_err(|error| fail(format!("cannot stat the directory: {error}")))?
        .uid()
        == 0;
    if as_postgres {
        run(Command::new("chown").arg("postgres:").arg(&dir)).map_err(|detail| {
            fail(format!(
                "running as root and cannot hand the directory to the `postgres` OS user ({detail}); create that user or run as a non-root user"
            ))
        })?;
    }
    let port = free_port().map_err(|error| fail(format!("no free port: {error}")))?;
    let mut cluster = Cluster {
        watchdog: spawn_watchdog(&dir, bin, as_postgres, owner)
            .map_err(|error| fail(format!("cannot spawn the watchdog: {error}")))?,
        dir,
        bin: bin.to_path_buf(),
        port,
        as_postgres,
    };
    if let Err(detail) = cluster.init_and_start() {
        let error = fail(detail);
        cluster.remove();
        return Err(error);
    }
    Ok(cluster)
}

impl Cluster {
    /// `key=value` conninfo for this cluster, without a database name.
    pub(crate) fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres",
            kv_quote(&self.dir.to_string_lossy()),
            self.port
        )
    }

    /// The cluster's directory (data directory, socket and log).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server and removes the directory now.
    pub(crate) fn stop(mut self) -> Result<(), Error> {
        let stopped = run(self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-s"]));
        let removed = fs::remove_dir_all(&self.dir);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let fail = |detail: String| Error::Cluster {
            dir: self.dir.display().to_string(),
            detail,
        };
        stopped.map_err(|detail| fail(format!("pg_ctl stop failed: {detail}")))?;
        removed.map_err(|error| fail(format!("cannot remove the directory: {error}")))
    }

    /// Restarts the server (fast shutdown: every connection is cut), waiting until it
    /// accepts connections again.
    pub(crate) fn restart(&self) -> Result<(), Error> {
        run(self
            .command("pg_ctl")
            .arg("restart")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-m", "fast", "-w", "-t", "60", "-s"]))
        .map_err(|detail| Error::Cluster {
            dir: self.dir.display().to_string(),
            detail: format!("pg_ctl restart failed: {detail}"),
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init_and_start(&self) -> Result<(), String> {
        run(self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync"))
        .map_err(|detail| format!("initdb failed: {detail}"))?;
        let settings = format!(
            "\n# Added by postpone-testkit for a throwaway test cluster.\n\
             listen_addresses = ''\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             max_connections = 300\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            self.port,
            self.dir.to_string_lossy().replace('\'', "''"),
        );
        fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .map_err(|error| format!("cannot write postgresql.conf: {error}"))?;
        let log = self.dir.join("postgres.log");
        run(self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-s"]))
        .map_err(|detail| {
            let tail = fs::read_to_string(&log)
                .ok()
                .and_then(|text| {
                    text.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            format!("pg_ctl start failed: {detail} {tail}")
        })
    }

    /// A command running PostgreSQL tool `tool`, as the `postgres` user when we are root.
    fn command(&self, tool: &str) -> Command {
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join(tool));
            command
        } else {
            Command::new(self.bin.join(tool))
        };
        // The caller's working directory may not be readable by `postgres`.
        command.current_dir(&self.dir);
        command
    }

    /// Best-effort removal after a failed start.
    fn remove(&mut self) {
        let _ = run(self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-s"]));
        let _ = fs::remove_dir_all(&self.dir);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// Creates `<tmp>/postpone-<what>-<pid>-<nanos>` with mode 0700 (under `/tmp` when the
/// temporary directory's path is too long for a unix socket in it); the path that could
/// not be made, with why.
pub(crate) fn make_dir(what: &str) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > MAX_SOCKET_DIR_LEN - 40 {
        base = PathBuf::from("/tmp");
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = base.join(format!("postpone-{what}-{}-{nanos}", std::process::id()));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(error) => Err((dir, error)),
    }
}

/// A TCP port nobody listens on right now. A cluster's server listens only on its unix
/// socket, so the port just names the socket file; picking a free one avoids confusing
/// anyone. PgBouncer listens on it.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Spawns the detached watchdog removing `dir` once process `owner` has exited.
fn spawn_watchdog(dir: &Path, bin: &Path, as_postgres: bool, owner: u32) -> std::io::Result<Child> {
    const SCRIPT: &str = r#"owner=$1; dir=$2; shift 2
while kill -0 "$owner" 2>/dev/null; do sleep 1; done
"$@" >/dev/null 2>&1
rm -rf "$dir""#;
    let mut stop: Vec<OsString> = Vec::new();
    if as_postgres {
        stop.extend(["runuser", "-u", "postgres", "--"].map(OsString::from));
    }
    stop.push(bin.join("pg_ctl").into());
    stop.extend(["stop", "-D"].map(OsString::from));
    stop.push(dir.join("data").into());
    stop.extend(["-m", "immediate", "-s"].map(OsString::from));
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("postpone-pg-watchdog")
        .arg(owner.to_string())
        .arg(dir)
        .args(stop)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: Ctrl-C or a killed test group does not take it along.
        .process_group(0)
        .spawn()
}

/// Runs a command to completion; on failure returns its last stderr line (or status).
pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {:?}: {error}", command.get_program()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stderr
        .lines()
        .rev()
        .chain(stdout.lines().rev())
        .find(|line| !line.trim().is_empty())
        .unwrap_or("");
    Err(format!("{} ({})", last.trim(), output.status))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn binaries() -> PathBuf {
        find_binaries().expect(
            "these tests need PostgreSQL binaries (initdb, pg_ctl): `apt-get install postgresql`",
        )
    }

    async fn select_one(cluster: &Cluster) -> Result<i32, tokio_postgres::Error> {
        let conninfo = format!("{} dbname=postgres", cluster.conninfo());
        let (client, connection) =
            tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.query_one("SELECT 1", &[]).await?.try_get(0)
    }

    #[tokio::test]
    async fn throwaway_cluster_accepts_connections_and_is_removed_on_stop() {
        let cluster = tokio::task::spawn_blocking(start_throwaway_cluster)
            .await
            .expect("start task")
            .expect("throwaway cluster starts")
            .expect("PostgreSQL binaries are installed (`apt-get install postgresql`)");
        let dir = cluster.dir().to_path_buf();
        assert_eq!(
            select_one(&cluster)
                .await
                .expect("cluster accepts connections"),
            1
        );
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .expect("stop task")
            .expect("cluster stops");
        assert!(!dir.exists(), "{} still exists after stop", dir.display());
    }

    #[tokio::test]
    async fn watchdog_removes_cluster_when_owner_exits() {
        let mut owner = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn a stand-in owner process");
        let bin = binaries();
        let owner_pid = owner.id();
        let cluster = tokio::task::spawn_blocking(move || start_watched_by(&bin, owner_pid))
            .await
            .expect("start task")
            .expect("throwaway cluster starts");
        let dir = cluster.dir().to_path_buf();
        assert_eq!(
            select_one(&cluster)
                .await
                .expect("cluster accepts connections"),
            1
        );
        owner.kill().expect("kill the stand-in owner");
        owner.wait().expect("reap the stand-in owner");
        let deadline = Instant::now() + Duration::from_secs(30);
        while dir.exists() {
            assert!(
                Instant::now() < deadline,
                "watchdog did not remove {} within 30s of the owner exiting",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            select_one(&cluster).await.is_err(),
            "server still answers after the watchdog ran"
        );
        // The watchdog is gone too; reap it so nothing is left behind.
        let mut cluster = cluster;
        let _ = cluster.watchdog.wait();
    }
}
