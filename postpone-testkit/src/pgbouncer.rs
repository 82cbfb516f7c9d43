//! A PgBouncer of one's own, between the tests and the [`Server`]: Debian's `pgbouncer`
//! (installed with apt when it is missing and we are root), started on a free port with
//! its configuration in a temporary directory, in the pool mode a test asks for.
//!
//! Like the throwaway clusters, each one has a watchdog that stops it and removes its
//! directory once the owning process has exited. As root it runs as the `postgres` OS
//! user (PgBouncer refuses root) and reaches the server as the `postgres` role over the
//! server's socket, which Debian's peer authentication lets in.

use std::fmt;
use std::fs;
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_postgres::config::Host;

use crate::cluster::{free_port, make_dir, run};
use crate::discover::kv_quote;
use crate::watchdog;
use crate::{Error, Server};

/// How PgBouncer hands server sessions to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server session per transaction (`pool_mode = transaction`): nothing of a session
    /// survives a commit.
    Transaction,
    /// A server session per client connection (`pool_mode = session`).
    Session,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Session => "session",
        }
    }
}

/// A running PgBouncer in front of a [`Server`]; stopped by [`PgBouncer::stop`], when
/// dropped, or by its watchdog when the process exits.
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    mode: PoolMode,
    process: Child,
    watchdog: Child,
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncer")
            .field("port", &self.port)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

static TRANSACTION: OnceCell<PgBouncer> = OnceCell::const_new();
static SESSION: OnceCell<PgBouncer> = OnceCell::const_new();

/// Where Debian installs it.
const DEBIAN_BINARY: &str = "/usr/sbin/pgbouncer";

/// Serialises installs within this process (apt waits for other processes' locks).
static INSTALL: Mutex<()> = Mutex::new(());

impl PgBouncer {
    /// This process's PgBouncer in `mode` in front of [`crate::server`], started on first
    /// call and shared afterwards.
    ///
    /// # Errors
    /// As [`PgBouncer::start`].
    pub async fn shared(mode: PoolMode) -> Result<&'static PgBouncer, Error> {
        let cell = match mode {
            PoolMode::Transaction => &TRANSACTION,
            PoolMode::Session => &SESSION,
        };
        cell.get_or_try_init(|| async {
            let server = crate::server().await?;
            Self::start(server, mode)
        })
        .await
    }

    /// Starts a PgBouncer in `mode` in front of `server`, installing Debian's package
    /// first when it is missing.
    ///
    /// # Errors
    /// [`Error::PgBouncer`] saying what failed (not installed and cannot install, did not
    /// start, did not listen within 30 s).
    pub fn start(server: &Server, mode: PoolMode) -> Result<Self, Error> {
        let binary = binary()?;
        let dir = make_dir("pgbouncer").map_err(|(dir, e)| {
            Error::PgBouncer(format!(
                "cannot create the directory {}: {e}",
                dir.display()
            ))
        })?;
        let dir_name = dir.display().to_string();
        let fail = |detail: String| Error::PgBouncer(format!("in {dir_name}: {detail}"));
        let as_postgres = is_root();
        let backend = backend(server, as_postgres).map_err(&fail)?;
        let port = free_port().map_err(|e| fail(format!("no free port: {e}")))?;
        let config = dir.join("pgbouncer.ini");
        let log = dir.join("pgbouncer.log");
        fs::write(
            &config,
            format!(
                "[databases]\n\
                 * = {backend}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = {mode}\n\
                 max_client_conn = 2000\n\
                 default_pool_size = 10\n\
                 min_pool_size = 3\n\
                 server_round_robin = 1\n\
                 server_idle_timeout = 5\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {log}\n\
                 pidfile = {pid}\n",
                users = dir.join("userlist.txt").display(),
                mode = mode.as_str(),
                log = log.display(),
                pid = dir.join("pgbouncer.pid").display(),
            ),
        )
        .map_err(|e| fail(format!("cannot write its configuration: {e}")))?;
        // Trust, but PgBouncer still wants every client user listed.
        let users: String = ["postgres", "root", &os_user()]
            .iter()
            .map(|user| format!("\"{user}\" \"\"\n"))
            .collect();
        fs::write(dir.join("userlist.txt"), users)
            .map_err(|e| fail(format!("cannot write its user list: {e}")))?;
        let mut command = Command::new(&binary);
        command
            .arg(&config)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if as_postgres {
            let (uid, gid) = postgres_ids().map_err(&fail)?;
            run(Command::new("chown").arg("-R").arg("postgres:").arg(&dir))
                .map_err(|e| fail(format!("cannot hand the directory to `postgres`: {e}")))?;
            command.uid(uid).gid(gid);
        }
        let mut process = command
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", binary.display())))?;
        let watchdog = match watchdog::spawn(
            "postpone-pgbouncer-watchdog",
            watchdog::Target::Process(process.id()),
            &dir,
        ) {
            Ok(watchdog) => watchdog,
            Err(error) => {
                let _ = process.kill();
                let _ = process.wait();
                return Err(fail(format!("cannot spawn the watchdog: {error}")));
            }
        };
        let mut bouncer = Self {
            dir,
            port,
            mode,
            process,
            watchdog,
        };
        if let Err(detail) = bouncer.wait_listening(&log) {
            let error = fail(detail);
            bouncer.remove();
            return Err(error);
        }
        Ok(bouncer)
    }

    /// The connection string for database `dbname` through this PgBouncer.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={}",
            self.port,
            kv_quote(dbname)
        )
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Its pool mode.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// Stops it and removes its directory now.
    pub fn stop(mut self) {
        self.remove();
    }

    fn wait_listening(&mut self, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let tail = || {
                fs::read_to_string(log)
                    .ok()
                    .and_then(|t| t.lines().last().map(str::to_owned))
                    .unwrap_or_default()
            };
            if let Ok(Some(status)) = self.process.try_wait() {
                return Err(format!("pgbouncer exited ({status}): {}", tail()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pgbouncer did not listen on port {} within 30s: {}",
                    self.port,
                    tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn remove(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The `pgbouncer` binary: Debian's, else one on `PATH`, else installed with apt.
fn binary() -> Result<PathBuf, Error> {
    let find = || {
        let debian = PathBuf::from(DEBIAN_BINARY);
        if debian.is_file() {
            return Some(debian);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("pgbouncer"))
            .find(|p| p.is_file())
    };
    if let Some(binary) = find() {
        return Ok(binary);
    }
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(binary) = find() {
        return Ok(binary);
    }
    install()?;
    find().ok_or_else(|| {
        Error::PgBouncer("apt-get installed pgbouncer, but no pgbouncer binary is found".to_owned())
    })
}

/// `apt-get install pgbouncer`, refreshing the package lists once if it is not found.
fn install() -> Result<(), Error> {
    let how = "install it (apt-get install pgbouncer)";
    if !is_root() {
        return Err(Error::PgBouncer(format!(
            "pgbouncer is not installed and we are not root: {how}"
        )));
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "-y", "-qq"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let installed = apt(&["install", "pgbouncer"]).map_err(|e| {
        Error::PgBouncer(format!(
            "pgbouncer is not installed and apt-get cannot run ({e}): {how}"
        ))
    })?;
    if installed.status.success() {
        return Ok(());
    }
    let _ = apt(&["update"]);
    let installed = apt(&["install", "pgbouncer"])
        .map_err(|e| Error::PgBouncer(format!("apt-get cannot run ({e}): {how}")))?;
    if installed.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&installed.stderr);
        Err(Error::PgBouncer(format!(
            "apt-get install pgbouncer failed: {}: {how}",
            stderr.lines().last().unwrap_or("").trim()
        )))
    }
}

/// The `[databases]` line's connection to `server`, for every database name.
fn backend(server: &Server, as_postgres: bool) -> Result<String, String> {
    let config: tokio_postgres::Config = server
        .admin_url()
        .parse()
        .map_err(|e| format!("cannot read the server's connection string: {e}"))?;
    let hosts = config.get_hosts();
    let index = hosts
        .iter()
        .position(|h| matches!(h, Host::Unix(_)))
        .unwrap_or(0);
    let host = match hosts.get(index) {
        Some(Host::Unix(path)) => path.display().to_string(),
        Some(Host::Tcp(name)) => name.clone(),
        None => "/var/run/postgresql".to_owned(),
    };
    let ports = config.get_ports();
    let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
    let unix = host.starts_with('/');
    let mut line = format!("host={host} port={port}");
    if as_postgres && unix {
        // Peer authentication: the OS user is `postgres`, so is the role.
        line.push_str(" user=postgres");
    } else {
        if let Some(user) = config.get_user() {
            line.push_str(&format!(" user={user}"));
        }
        if let Some(password) = config.get_password() {
            line.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
        }
    }
    Ok(line)
}

/// Whether this process runs as root (then it may install packages with apt).
pub(crate) fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn os_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned())
}

/// The `postgres` OS user's uid and gid, from `/etc/passwd`.
fn postgres_ids() -> Result<(u32, u32), String> {
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            "running as root and there is no `postgres` OS user to run pgbouncer as (PgBouncer refuses root): create it, or run as a non-root user".to_owned()
        })
}
