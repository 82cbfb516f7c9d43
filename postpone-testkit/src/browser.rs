//! Headless Chromium for tests that drive a web page as a person would: Debian's
//! `chromium` and `chromium-driver` (installed with apt when missing and we are root), one
//! `chromedriver` per test process on a free port of 127.0.0.1, and a browser session of its
//! own per test, spoken to over WebDriver with [`fantoccini`].
//!
//! Guarantees:
//! - Installing happens at most once per process and never twice at once on the machine:
//!   the install runs under `flock` on [`APT_LOCK`], and apt waits for dpkg's own lock.
//! - `chromedriver` runs in a process group of its own, with every Chromium it starts; a
//!   watchdog (as for the throwaway clusters and PgBouncer) kills that group and removes its
//!   directory once the test process has exited, however it exited.
//! - Each [`Session`] is a fresh Chromium with a profile of its own in that directory, closed
//!   by [`Session::close`] or, failing that, when the session is dropped (a panicking test
//!   included).
//! - Every wait has a deadline ([`WAIT_DEFAULT`] unless told): no error is a hang, and each
//!   one is an [`Error::Browser`] of one line.

use std::fmt;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::Error;
use crate::cluster::{free_port, make_dir};
use crate::pgbouncer::is_root;
use crate::python::workspace_root;
use crate::watchdog;

mod session;

pub use session::Session;

/// Debian's Chromium (a wrapper script around `/usr/lib/chromium/chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's ChromeDriver, from the `chromium-driver` package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The size of the page in the browser window (the viewport, what a screenshot shows), in
/// CSS pixels at a device scale factor of 1, so screenshots are alike from run to run.
pub const WINDOW_SIZE: (u32, u32) = (1280, 900);

/// How long [`Session::wait_for`] and the other waits wait unless told otherwise.
pub const WAIT_DEFAULT: Duration = Duration::from_secs(10);

/// The lock file serialising apt between test processes (`flock`).
pub const APT_LOCK: &str = "/tmp/postpone-apt.lock";

/// How long `chromedriver` has to answer `/status` with `ready`.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the whole install may take, waiting for the lock included.
const INSTALL_TIMEOUT_SECS: u32 = 900;

/// How often a start is tried again when another process took the free port first.
const PORT_ATTEMPTS: usize = 5;

/// What to run when Chromium is missing.
const HOW_TO_INSTALL: &str = "apt-get install chromium chromium-driver";

static SHARED: OnceCell<Browser> = OnceCell::const_new();
static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// A running `chromedriver`: hands out [`Session`]s. Stopped by [`Browser::stop`], when
/// dropped, or by its watchdog when the process exits.
///
/// A dashboard test (the server under test listens on `base`, a free port of 127.0.0.1):
///
/// ```no_run
/// use postpone_testkit::{Browser, Error, screenshot_path};
///
/// async fn jobs_page_retries_a_failed_job(base: &str) -> Result<(), Error> {
///     let session = Browser::shared().await?.session().await?;
///     session.goto(&format!("{base}/jobs?status=failed")).await?;
///     session.wait_for_text("table#jobs", "emails.send_email").await?;
///     session.click("tr[data-job-id='1'] button.retry").await?;
///     session.wait_for_text("#flash", "Job 1 retried").await?;
///     assert!(session.page_text().await?.contains("todo"));
///     session.screenshot(screenshot_path("jobs-retried")).await?;
///     session.close().await
/// }
/// ```
pub struct Browser {
    dir: PathBuf,
    port: u16,
    url: String,
    process: Child,
    watchdog: Child,
    sessions: AtomicU64,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("url", &self.url)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// This process's `chromedriver`, started on first call (installing Chromium first when
    /// it is missing) and shared afterwards. A failed start is not cached.
    ///
    /// # Errors
    /// As [`Browser::start`].
    pub async fn shared() -> Result<&'static Browser, Error> {
        SHARED.get_or_try_init(Self::start).await
    }

    /// Starts a `chromedriver` of one's own; prefer [`Browser::shared`].
    ///
    /// # Errors
    /// [`Error::Browser`] when Chromium is missing and cannot be installed, or
    /// `chromedriver` does not answer ready within 30 s.
    pub async fn start() -> Result<Browser, Error> {
        ensure_installed().await?;
        let begun = Instant::now();
        let mut attempt = 1;
        loop {
            match Self::spawn()?.wait_ready().await {
                Ok(browser) => {
                    tracing::info!(url = %browser.url, elapsed = ?begun.elapsed(), "chromedriver ready");
                    return Ok(browser);
                }
                Err(Failure::PortTaken(port)) if attempt < PORT_ATTEMPTS => {
                    tracing::debug!(
                        port,
                        attempt,
                        "chromedriver's port was taken, trying another"
                    );
                    attempt += 1;
                }
                Err(Failure::PortTaken(port)) => {
                    return Err(Error::Browser(format!(
                        "chromedriver found its port taken {PORT_ATTEMPTS} times in a row (last {port}): is something grabbing ports on 127.0.0.1?"
                    )));
                }
                Err(Failure::Other(error)) => return Err(error),
            }
        }
    }

    /// Spawns `chromedriver` on a free port with its watchdog, not yet ready.
    fn spawn() -> Result<Starting, Error> {
        let dir = make_dir("chromium").map_err(|(dir, e)| {
            Error::Browser(format!(
                "cannot create the directory {} for chromedriver: {e} (is the temporary directory writable?)",
                dir.display()
            ))
        })?;
        let fail = |detail: String| {
            let _ = fs::remove_dir_all(&dir);
            Error::Browser(detail)
        };
        let port = free_port().map_err(|e| fail(format!("no free port on 127.0.0.1: {e}")))?;
        let log_path = dir.join("chromedriver.log");
        let log = fs::File::create(&log_path)
            .and_then(|log| Ok((log.try_clone()?, log)))
            .map_err(|e| fail(format!("cannot create {}: {e}", log_path.display())))?;
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1)
            // A group of its own, which the Chromiums it starts join: one kill ends them all.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                fail(format!(
                    "cannot run {CHROMEDRIVER}: {e} (reinstall: {HOW_TO_INSTALL})"
                ))
            })?;
        let watchdog = match watchdog::spawn(
            "postpone-chromium-watchdog",
            watchdog::Target::Group(process.id()),
            &dir,
        ) {
            Ok(watchdog) => watchdog,
            Err(e) => {
                kill_group(process.id());
                return Err(fail(format!(
                    "cannot spawn chromedriver's watchdog (sh): {e}"
                )));
            }
        };
        Ok(Starting {
            browser: Browser {
                url: format!("http://127.0.0.1:{port}"),
                dir,
                port,
                process,
                watchdog,
                sessions: AtomicU64::new(0),
            },
            log: log_path,
        })
    }

    /// The WebDriver URL, `http://127.0.0.1:<port>`.
    pub fn webdriver_url(&self) -> &str {
        &self.url
    }

    /// The directory holding `chromedriver.log` and the sessions' profiles.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `chromedriver`'s process id (and process group).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// A new headless Chromium session: [`WINDOW_SIZE`], flags that work as root in a
    /// container, a fresh profile. Close it with [`Session::close`] at the end of the test;
    /// dropping it closes it too, blocking for a moment.
    ///
    /// # Errors
    /// [`Error::Browser`] when `chromedriver` refuses or fails to start Chromium.
    pub async fn session(&self) -> Result<Session, Error> {
        let number = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let profile = self.dir.join(format!("session-{number}"));
        Session::open(self, profile).await
    }

    /// Stops `chromedriver` and every Chromium it started, and removes its directory now.
    pub fn stop(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        kill_group(self.process.id());
        let _ = self.process.wait();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A `chromedriver` spawned but not yet known to be ready.
struct Starting {
    browser: Browser,
    log: PathBuf,
}

/// Why a start failed.
enum Failure {
    /// Another process bound the port between our check and `chromedriver`'s bind.
    PortTaken(u16),
    Other(Error),
}

impl Starting {
    /// Polls `/status` until it says ready, `chromedriver` exits, or the deadline passes.
    async fn wait_ready(mut self) -> Result<Browser, Failure> {
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        let port = self.browser.port;
        loop {
            let status = tokio::task::spawn_blocking(move || {
                http(port, "GET", "/status", Duration::from_secs(2))
            })
            .await
            .ok()
            .and_then(Result::ok);
            if let Some((200, body)) = &status {
                if driver_ready(body) {
                    return Ok(self.browser);
                }
            }
            let log = || fs::read_to_string(&self.log).unwrap_or_default();
            if let Ok(Some(exit)) = self.browser.process.try_wait() {
                let log = log();
                let lower = log.to_ascii_lowercase();
                // The Browser is dropped here, which removes its directory.
                if lower.contains("address already in use") || lower.contains("port not available")
                {
                    return Err(Failure::PortTaken(port));
                }
                return Err(Failure::Other(Error::Browser(format!(
                    "{CHROMEDRIVER} exited ({exit}) before answering on port {port}: {} (reinstall: {HOW_TO_INSTALL})",
                    last_line(&log)
                ))));
            }
            if Instant::now() > deadline {
                return Err(Failure::Other(Error::Browser(format!(
                    "{CHROMEDRIVER} did not answer ready on {} within {}s: {} (is the machine overloaded?)",
                    self.browser.url,
                    DRIVER_START_TIMEOUT.as_secs(),
                    last_line(&log())
                ))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether a `/status` body says `"ready": true`.
fn driver_ready(body: &str) -> bool {
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) if start < end => &body[start..=end],
        _ => return false,
    };
    serde_json::from_str::<serde_json::Value>(json)
        .is_ok_and(|status| status["value"]["ready"] == serde_json::Value::Bool(true))
}

/// Where a test's screenshot `name` goes: `<target>/screenshots/<name>.png`, with `<target>`
/// the `CARGO_TARGET_DIR` of the run when set, else the workspace's `target/`. For a picture
/// in the docs, pass [`Session::screenshot`] a path under `docs/` instead.
pub fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(
            || workspace_root().join("target"),
            |dir| workspace_root().join(dir),
        );
    target.join("screenshots").join(format!("{name}.png"))
}

/// Installs Chromium and ChromeDriver when missing, once per process.
async fn ensure_installed() -> Result<(), Error> {
    INSTALLED
        .get_or_try_init(|| async {
            if installed() {
                return Ok(());
            }
            tokio::task::spawn_blocking(install)
                .await
                .map_err(|e| Error::Browser(format!("the install task failed: {e}")))?
        })
        .await
        .map(|_| ())
}

fn installed() -> bool {
    Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file()
}

/// `apt-get update` and `apt-get install chromium chromium-driver` under [`APT_LOCK`],
/// unless another process installed them while we waited for the lock.
fn install() -> Result<(), Error> {
    if !is_root() {
        return Err(Error::Browser(format!(
            "Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}) and we are not root: install it (`{HOW_TO_INSTALL}`)"
        )));
    }
    const SCRIPT: &str = r#"chromium=$1; driver=$2
[ -x "$chromium" ] && [ -x "$driver" ] && exit 0
apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || echo "apt-get update failed; installing from the lists at hand" >&2
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium chromium-driver >&2"#;
    tracing::info!("installing chromium and chromium-driver with apt-get (once per machine)");
    let begun = Instant::now();
    let output = Command::new("flock")
        .args(["-w", &INSTALL_TIMEOUT_SECS.to_string(), APT_LOCK])
        .args(["sh", "-c", SCRIPT, "postpone-install-chromium", CHROMIUM, CHROMEDRIVER])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::Browser(format!(
                "Chromium is not installed and `flock ... apt-get` cannot run ({e}): install it (`{HOW_TO_INSTALL}`)"
            ))
        })?;
    if !output.status.success() {
        return Err(Error::Browser(format!(
            "installing Chromium failed ({}): {} (install it by hand: `{HOW_TO_INSTALL}`)",
            output.status,
            last_line(&String::from_utf8_lossy(&output.stderr))
        )));
    }
    if !installed() {
        return Err(Error::Browser(format!(
            "apt-get installed chromium and chromium-driver, but {CHROMIUM} or {CHROMEDRIVER} is missing: reinstall (`{HOW_TO_INSTALL}`)"
        )));
    }
    tracing::info!(elapsed = ?begun.elapsed(), "chromium installed");
    Ok(())
}

/// A minimal blocking HTTP/1.1 request to 127.0.0.1:`port`; the status code and body.
fn http(port: u16, method: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    // chromedriver keeps the connection open despite `Connection: close`: read the head,
    // then as many bytes as `Content-Length` says.
    let mut response = Vec::new();
    let mut buffer = [0; 4096];
    let (head, body_start) = loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Err(std::io::Error::other(
                "connection closed before the response head",
            ));
        }
        response.extend_from_slice(&buffer[..read]);
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&response[..end]).into_owned(),
                end + 4,
            );
        }
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(length) => {
            while response.len() < body_start + length {
                let read = stream.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                response.extend_from_slice(&buffer[..read]);
            }
        }
        None => {
            stream.read_to_end(&mut response)?;
        }
    }
    let body = String::from_utf8_lossy(&response[body_start..]).into_owned();
    Ok((status, body))
}

/// Kills process group `pgid` (`chromedriver` and its Chromiums) with SIGKILL.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The first line of an error's message (WebDriver errors carry a stack trace below).
fn first_line(error: &dyn fmt::Display) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The last non-empty line of a log or a command's output.
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ready_is_read_from_the_json_body() {
        let ready = r#"{"value":{"build":{"version":"120"},"message":"ChromeDriver ready for new sessions.","ready":true}}"#;
        assert!(driver_ready(ready));
        assert!(driver_ready(&format!("7a\r\n{ready}\r\n0\r\n\r\n")));
        assert!(!driver_ready(r#"{"value":{"ready":false}}"#));
        assert!(!driver_ready("garbage"));
    }

    #[test]
    fn error_lines_are_single() {
        assert_eq!(
            first_line(&"no such element\n  (Session info: chrome=1)"),
            "no such element"
        );
        assert_eq!(last_line("a\nb\n\n"), "b");
    }
}
