//! Where the database is: a connection string, or libpq's environment, or the local server.
//!
//! Resolution order, as a libpq user expects: an explicit URL or `key=value` conninfo
//! (the CLI's `--database-url` / `DATABASE_URL`), else the libpq variables `PGHOST`,
//! `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, else the local server (the socket in
//! `/var/run/postgresql`, then `127.0.0.1:5432`) as the OS user. Error messages name the
//! place we tried, never the password.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

use crate::{DbError, Error, Result};

/// How long a connection attempt may take before we say where it failed.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// A resolved PostgreSQL connection configuration.
#[derive(Clone)]
pub struct ConnectConfig {
    config: tokio_postgres::Config,
    poll_only: bool,
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_tuple("ConnectConfig");
        f.field(&self.target());
        if self.poll_only {
            f.field(&"poll-only");
        }
        f.finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn os_user() -> String {
    env("USER")
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "postgres".to_owned())
}

impl ConnectConfig {
    /// Parses a `postgres://` URL or a `key=value` conninfo string.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] saying what is wrong with it.
    pub fn parse(conninfo: &str) -> Result<Self> {
        let config = tokio_postgres::Config::from_str(conninfo).map_err(|e| {
            Error::InvalidInput(format!(
                "invalid database URL: {e}; expected postgres://user@host:port/dbname or key=value pairs like \"host=localhost dbname=app\""
            ))
        })?;
        Ok(Self::complete(config))
    }

    /// `url` when given, else libpq's environment, else the local server.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a URL that does not parse.
    pub fn resolve(url: Option<&str>) -> Result<Self> {
        if let Some(url) = url.filter(|u| !u.trim().is_empty()) {
            return Self::parse(url);
        }
        if let Some(url) = env("DATABASE_URL") {
            return Self::parse(&url);
        }
        Ok(Self::from_libpq_env())
    }

    /// From `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, with the local
    /// server's defaults for what is not set.
    #[must_use]
    pub fn from_libpq_env() -> Self {
        let mut config = tokio_postgres::Config::new();
        match env("PGHOST") {
            Some(hosts) => {
                for host in hosts.split(',') {
                    config.host(host.trim());
                }
            }
            None => {
                config.host("/var/run/postgresql");
                config.host("127.0.0.1");
            }
        }
        let port = env("PGPORT")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(5432);
        config.port(port);
        if let Some(user) = env("PGUSER") {
            config.user(&user);
        }
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
        if let Some(dbname) = env("PGDATABASE") {
            config.dbname(&dbname);
        }
        Self::complete(config)
    }

    fn complete(mut config: tokio_postgres::Config) -> Self {
        if config.get_hosts().is_empty() {
            config.host("/var/run/postgresql");
            config.host("127.0.0.1");
        }
        if config.get_user().is_none() {
            config.user(env("PGUSER").unwrap_or_else(os_user));
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or("postgres").to_owned();
            config.dbname(env("PGDATABASE").unwrap_or(user));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT_DEFAULT);
        }
        if config.get_application_name().is_none() {
            config.application_name("postpone");
        }
        Self {
            config,
            poll_only: false,
        }
    }

    /// The same place, in poll-only mode (`on`) or not: for a connection pooler in
    /// transaction mode, such as PgBouncer's `pool_mode = transaction`, which hands each
    /// transaction whichever server session is free.
    ///
    /// A store in poll-only mode keeps no state in a server session from one transaction
    /// to the next: statements are sent unnamed (parsed with each call, PgBouncer 1.18
    /// carries no prepared statements), nothing LISTENs (workers find new jobs and abort
    /// requests by polling), and no session setting is made, so a worker's
    /// `asynchronous_commit` is refused. Locks are transaction-scoped, as always.
    #[must_use]
    pub fn with_poll_only(&self, on: bool) -> Self {
        Self {
            config: self.config.clone(),
            poll_only: on,
        }
    }

    /// Whether this connection is in poll-only mode ([`Self::with_poll_only`]).
    #[must_use]
    pub fn poll_only(&self) -> bool {
        self.poll_only
    }

    /// The same place, with a server setting for every session (`-c name=value` in the
    /// startup options, after any already there).
    #[must_use]
    pub fn with_session_setting(&self, name: &str, value: &str) -> Self {
        let mut config = self.config.clone();
        let setting = format!("-c {name}={value}");
        let options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {setting}"),
            _ => setting,
        };
        config.options(&options);
        Self {
            config,
            poll_only: self.poll_only,
        }
    }

    /// The driver configuration.
    #[must_use]
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Where this connects, without the password: `host=... port=... user=... dbname=...`.
    #[must_use]
    pub fn target(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        format!(
            "host={} port={} user={} dbname={}",
            hosts.join(","),
            if ports.is_empty() {
                "5432".to_owned()
            } else {
                ports.join(",")
            },
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?"),
        )
    }

    /// Opens one connection, its driver task spawned on the current runtime.
    ///
    /// # Errors
    /// [`Error::Connect`] naming where it tried.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let (client, connection) = self.open().await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    /// Opens one connection and returns its driver too, for a caller that polls it itself
    /// (the LISTEN connection reads its notifications from it).
    ///
    /// # Errors
    /// [`Error::Connect`] naming where it tried.
    pub(crate) async fn open(
        &self,
    ) -> Result<(
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        self.config
            .connect(NoTls)
            .await
            .map_err(|e| Error::Connect {
                target: self.target(),
                source: DbError::from(e),
            })
    }

    /// A connection pool of at most `max_size` connections (none opened yet).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a zero size.
    pub fn pool(&self, max_size: usize) -> Result<Pool> {
        if max_size == 0 {
            return Err(Error::InvalidInput(
                "database pool size is 0: give at least 1".to_owned(),
            ));
        }
        let manager = Manager::from_config(
            self.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::InvalidInput(format!("cannot build the connection pool: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_conninfo_parse_and_hide_passwords() {
        let c = ConnectConfig::parse("postgres://bob:secret@db.example:6543/app").unwrap();
        assert_eq!(c.target(), "host=db.example port=6543 user=bob dbname=app");
        let c = ConnectConfig::parse("host=/tmp port=5433 user=x dbname=y password=z").unwrap();
        assert_eq!(c.target(), "host=/tmp port=5433 user=x dbname=y");
        assert!(!format!("{c:?}").contains('z'));
    }

    #[test]
    fn session_settings_add_to_the_options() {
        let c = ConnectConfig::parse("host=/tmp user=x dbname=y options='-c statement_timeout=5s'")
            .unwrap()
            .with_session_setting("synchronous_commit", "off");
        assert_eq!(
            c.config().get_options(),
            Some("-c statement_timeout=5s -c synchronous_commit=off")
        );
        let c = ConnectConfig::parse("host=/tmp user=x dbname=y")
            .unwrap()
            .with_session_setting("synchronous_commit", "off");
        assert_eq!(c.config().get_options(), Some("-c synchronous_commit=off"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = ConnectConfig::parse("postgres://a:b@host:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid database URL"), "{err}");
    }
}
