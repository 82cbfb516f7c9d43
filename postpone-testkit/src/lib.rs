//! Finds a PostgreSQL server for Postpone's tests, demo and benchmarks, makes fresh
//! databases on it, and provides a Python venv with the reference `procrastinate`.
//!
//! Discovery order ([`server`]), decided once per process:
//!
//! 1. `DATABASE_URL`, when set (URL or `key=value` conninfo). New databases are made on
//!    that URL's server by replacing its database name.
//! 2. A local server: the unix socket directory `/var/run/postgresql`, then
//!    `127.0.0.1:5432`, as `$PGUSER`, then `postgres`, then the OS user.
//! 3. A throwaway cluster started from the PostgreSQL binaries on the machine
//!    (`/usr/lib/postgresql/*/bin`, then `PATH`), removed again when the process exits
//!    (a detached watchdog process stops it and deletes its directory).
//! 4. Otherwise an [`Error::NotFound`] whose one line says what to install.
//!
//! [`PgBouncer`] puts Debian's PgBouncer (installed when missing) between a test and the
//! server, in transaction or session pooling.
//!
//! [`Browser`] drives headless Chromium over WebDriver for tests of web pages: Debian's
//! `chromium` and `chromium-driver` (installed with apt when missing and we are root, once,
//! under a lock file so that parallel test binaries do not run apt together), one
//! `chromedriver` per test process on a free port of 127.0.0.1, killed with its browsers by
//! a watchdog when the process exits, and a [`Session`] of its own per test (a fresh
//! profile, a 1280x900 window), with waits that have deadlines and screenshots to PNG files.
//!
//! [`OtlpReceiver`] stands in for an OpenTelemetry collector: it keeps each OTLP/HTTP
//! request and answers it with the status the test chose.
//!
//! [`python`] returns the interpreter of a venv holding the pinned `procrastinate`, creating
//! `<workspace>/.venv` when needed.

mod browser;
mod cluster;
mod discover;
mod otlp;
mod pgbouncer;
mod python;
mod watchdog;

use std::fmt;

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

pub use browser::{
    APT_LOCK, Browser, CHROMEDRIVER, CHROMIUM, Session, WAIT_DEFAULT, WINDOW_SIZE, screenshot_path,
};
pub use otlp::{OtlpReceiver, ReceivedRequest};
pub use pgbouncer::{PgBouncer, PoolMode};
pub use python::{PROCRASTINATE_VERSION, pid_alive, python};

/// Everything that can go wrong while finding PostgreSQL, the Python venv or the browser.
///
/// Every message is one line saying what failed, where, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No server was reachable and no PostgreSQL binaries were found to start one.
    #[error(
        "no PostgreSQL found: set DATABASE_URL, start a local server, or install PostgreSQL (`apt-get install postgresql`)"
    )]
    NotFound,
    /// `DATABASE_URL` is set but cannot be used.
    #[error("DATABASE_URL is set but unusable: {0} (fix it, or unset it to use a local server)")]
    DatabaseUrl(String),
    /// Starting a throwaway cluster failed.
    #[error(
        "could not start a throwaway PostgreSQL cluster in {dir}: {detail} (set DATABASE_URL or start a local server instead)"
    )]
    Cluster {
        /// The cluster's directory.
        dir: String,
        /// What failed.
        detail: String,
    },
    /// A statement against the server failed.
    #[error("{what} on {server}: {}", error_chain(.source))]
    Sql {
        /// What was being done.
        what: String,
        /// [`Server::describe`] of the server.
        server: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A database name that cannot be used safely.
    #[error(
        "invalid database name {0:?}: use 1 to 63 characters from a-z, A-Z, 0-9 and `_`, not starting with a digit"
    )]
    InvalidName(String),
    /// PgBouncer could not be installed or started.
    #[error("PgBouncer: {0}")]
    PgBouncer(String),
    /// Chromium or chromedriver could not be installed or started, or a browser session
    /// failed (a page, an element, a screenshot).
    #[error("browser: {0}")]
    Browser(String),
    /// The Python venv could not be found or created.
    #[error("{0}")]
    Python(String),
}

/// A reachable PostgreSQL server on which databases can be created and dropped.
pub struct Server {
    /// How to build connection strings for databases on this server.
    base: Base,
    /// Connection string of the maintenance database used for CREATE/DROP DATABASE.
    admin_url: String,
    /// Human-readable origin of the server.
    description: String,
}

/// The connection string a [`Server`] derives per-database strings from.
#[derive(Debug, Clone)]
enum Base {
    /// A `postgres://` or `postgresql://` URL; the path is the database name.
    Url(String),
    /// `key=value` conninfo without a usable `dbname`; `dbname=...` is appended.
    KeyValue(String),
}

/// A database of one test ([`Server::fresh_database`]), dropped with this guard, on a thread
/// of its own so that the drop works inside a runtime as outside one.
#[derive(Debug)]
pub struct FreshDatabase {
    name: String,
    url: String,
    server: &'static Server,
}

impl FreshDatabase {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its connection string.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server, self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(server.drop_database(&name))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The base may hold a password: show only the description.
        f.debug_struct("Server")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

/// The PostgreSQL server for this process, discovered on first call (see the crate docs
/// for the order) and shared afterwards.
///
/// A failed discovery is not cached: the next call tries again.
pub async fn server() -> Result<&'static Server, Error> {
    SERVER.get_or_try_init(discover::discover).await
}

/// The server at `url` when one is given (a command told where the database is), else
/// [`server`]. Meant for a command's one server per process: the explicit one is kept for
/// the life of the process.
pub async fn server_at(url: Option<&str>) -> Result<&'static Server, Error> {
    match url.filter(|u| !u.trim().is_empty()) {
        Some(url) => Ok(Box::leak(Box::new(Server::from_url(url).await?))),
        None => server().await,
    }
}

impl Server {
    /// The server of an explicit connection string (as `DATABASE_URL` would give it), not
    /// cached: for a command that was told where the database is.
    ///
    /// # Errors
    /// [`Error::DatabaseUrl`] when it does not parse or accept a connection.
    pub async fn from_url(url: &str) -> Result<Server, Error> {
        discover::from_database_url(url.to_owned()).await
    }

    /// The connection string for database `dbname` on this server.
    ///
    /// Either URL or `key=value` form; both are accepted by `tokio_postgres::Config::from_str`
    /// and by Python psycopg's conninfo.
    pub fn url(&self, dbname: &str) -> String {
        self.base.with_dbname(dbname)
    }

    /// The connection string of the maintenance database used to create and drop databases.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Where this server came from, e.g. `DATABASE_URL`, `local server at /var/run/postgresql`
    /// or `throwaway cluster in /tmp/...`.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// Opens a connection to database `dbname`, with its connection task spawned on the
    /// current tokio runtime.
    pub async fn connect(&self, dbname: &str) -> Result<Client, Error> {
        self.connect_to(
            &self.url(dbname),
            &format!("connecting to database {dbname}"),
        )
        .await
    }

    /// Opens a connection to the maintenance database (see [`Server::admin_url`]).
    pub async fn admin_client(&self) -> Result<Client, Error> {
        self.connect_to(&self.admin_url, "connecting to the maintenance database")
            .await
    }

    async fn connect_to(&self, url: &str, what: &str) -> Result<Client, Error> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|source| Error::Sql {
                what: what.to_owned(),
                server: self.describe(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "postgres connection ended with an error");
            }
        });
        Ok(client)
    }

    /// A fresh, empty database named `<prefix>_<pid>_<n>` (a stale one of that name is
    /// dropped first), dropped again when the returned guard goes.
    ///
    /// # Errors
    /// An invalid prefix, or the server refused to create it.
    pub async fn fresh_database(&'static self, prefix: &str) -> Result<FreshDatabase, Error> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}_{}_{n}", std::process::id());
        self.drop_database(&name).await?;
        self.create_database(&name, None).await?;
        Ok(FreshDatabase {
            url: self.url(&name),
            name,
            server: self,
        })
    }

    /// Creates database `name`, cloned from `template` when given.
    pub async fn create_database(&self, name: &str, template: Option<&str>) -> Result<(), Error> {
        let mut sql = format!("CREATE DATABASE {}", quote_ident(name)?);
        if let Some(template) = template {
            sql.push_str(" TEMPLATE ");
            sql.push_str(&quote_ident(template)?);
        }
        self.admin_execute(&sql, &format!("creating database {name}"))
            .await
    }

    /// Drops database `name` if it exists, disconnecting its sessions (`WITH (FORCE)`).
    pub async fn drop_database(&self, name: &str) -> Result<(), Error> {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)?
        );
        self.admin_execute(&sql, &format!("dropping database {name}"))
            .await
    }

    async fn admin_execute(&self, sql: &str, what: &str) -> Result<(), Error> {
        let client = self.admin_client().await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|source| Error::Sql {
                what: what.to_owned(),
                server: self.describe(),
                source,
            })
    }
}

/// A cluster of one's own, for tests that must stop or restart the server under a running
/// worker. Removed by [`PrivateCluster::stop`], or when the process exits.
#[derive(Debug)]
pub struct PrivateCluster {
    cluster: cluster::Cluster,
}

impl PrivateCluster {
    /// Starts one from the PostgreSQL binaries on this machine.
    ///
    /// # Errors
    /// [`Error::NotFound`] without binaries, [`Error::Cluster`] when it does not start.
    pub fn start() -> Result<Self, Error> {
        match cluster::start_throwaway_cluster()? {
            Some(cluster) => Ok(Self { cluster }),
            None => Err(Error::NotFound),
        }
    }

    /// The connection string for database `dbname` on it.
    pub fn url(&self, dbname: &str) -> String {
        Base::KeyValue(self.cluster.conninfo()).with_dbname(dbname)
    }

    /// Restarts the server, cutting every connection.
    ///
    /// # Errors
    /// [`Error::Cluster`] when `pg_ctl restart` fails.
    pub fn restart(&self) -> Result<(), Error> {
        self.cluster.restart()
    }

    /// Stops the server and removes its directory now.
    ///
    /// # Errors
    /// [`Error::Cluster`] when stopping or removing fails.
    pub fn stop(self) -> Result<(), Error> {
        self.cluster.stop()
    }
}

/// An error and its sources on one line, `outer: inner: ...` (tokio-postgres keeps the
/// cause, e.g. "connection refused", out of its own message).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !line.contains(&cause_text) {
            line.push_str(": ");
            line.push_str(&cause_text);
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}

/// Quotes a database name as an SQL identifier, accepting only plain names.
pub fn quote_ident(name: &str) -> Result<String, Error> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(format!("\"{name}\""))
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

impl Base {
    fn with_dbname(&self, dbname: &str) -> String {
        match self {
            Base::Url(url) => discover::url_with_dbname(url, dbname),
            Base::KeyValue(conninfo) => {
                let value = discover::kv_quote(dbname);
                if conninfo.trim().is_empty() {
                    format!("dbname={value}")
                } else {
                    // In libpq and tokio-postgres alike, the last `dbname` wins.
                    format!("{} dbname={value}", conninfo.trim_end())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_base_appends_dbname() {
        let base = Base::KeyValue("host=/tmp/x port=5433 user=postgres dbname=other".into());
        let url = base.with_dbname("fresh_db");
        let config: tokio_postgres::Config = url.parse().expect("conninfo parses");
        assert_eq!(config.get_dbname(), Some("fresh_db"));
        assert_eq!(config.get_user(), Some("postgres"));
    }

    #[test]
    fn quote_ident_rejects_odd_names() {
        assert_eq!(
            quote_ident("postpone_test_1").expect("plain"),
            "\"postpone_test_1\""
        );
        assert!(quote_ident("a\"b").is_err());
        assert!(quote_ident("").is_err());
        assert!(quote_ident("1abc").is_err());
    }
}
