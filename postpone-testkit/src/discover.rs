//! Server discovery: `DATABASE_URL`, then a local server, then a throwaway cluster.

use std::path::Path;
use std::time::Duration;

use tokio_postgres::{Config, NoTls};

use crate::cluster;
use crate::{Base, Error, Server};

/// How long one connection attempt to a candidate local server may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The unix socket directory of Debian's packaged server.
const LOCAL_SOCKET_DIR: &str = "/var/run/postgresql";

/// Finds a server in the documented order.
pub(crate) async fn discover() -> Result<Server, Error> {
    if let Some(url) = std::env::var_os("DATABASE_URL") {
        let url = url
            .into_string()
            .map_err(|_| Error::DatabaseUrl("it is not valid UTF-8".into()))?;
        return from_database_url(url).await;
    }
    if let Some(server) = local_server().await {
        return Ok(server);
    }
    let cluster = tokio::task::spawn_blocking(cluster::start_throwaway_cluster)
        .await
        .map_err(|error| Error::Cluster {
            dir: "(not created)".into(),
            detail: format!("the start-up task failed: {error}"),
        })??;
    let Some(cluster) = cluster else {
        return Err(Error::NotFound);
    };
    let base = cluster.conninfo();
    let server = Server {
        admin_url: Base::KeyValue(base.clone()).with_dbname("postgres"),
        base: Base::KeyValue(base),
        description: format!("throwaway cluster in {}", cluster.dir().display()),
    };
    tracing::info!(server = %server.description, "started a throwaway PostgreSQL cluster");
    // The cluster lives as long as the process; its watchdog removes it afterwards.
    std::mem::forget(cluster);
    Ok(server)
}

/// Uses `DATABASE_URL` as given: it must parse and accept a connection.
pub(crate) async fn from_database_url(url: String) -> Result<Server, Error> {
    let config: Config = url.parse().map_err(|error| {
        Error::DatabaseUrl(format!("it does not parse: {}", crate::error_chain(&error)))
    })?;
    probe(&config)
        .await
        .map_err(|error| Error::DatabaseUrl(format!("cannot connect: {error}")))?;
    let base = if is_url(&url) {
        Base::Url(url.clone())
    } else {
        Base::KeyValue(url.clone())
    };
    Ok(Server {
        base,
        admin_url: url,
        description: "DATABASE_URL".into(),
    })
}

/// Tries the local socket directory, then 127.0.0.1:5432, with each candidate user; the
/// first combination that connects and may create databases wins.
async fn local_server() -> Option<Server> {
    let mut hosts = Vec::new();
    if Path::new(LOCAL_SOCKET_DIR).join(".s.PGSQL.5432").exists() {
        hosts.push(LOCAL_SOCKET_DIR);
    }
    hosts.push("127.0.0.1");
    for host in hosts {
        for user in candidate_users() {
            let mut base = format!("host={} port=5432 user={}", kv_quote(host), kv_quote(&user));
            if let Ok(password) = std::env::var("PGPASSWORD") {
                base.push_str(&format!(" password={}", kv_quote(&password)));
            }
            let base = Base::KeyValue(base);
            let admin_url = base.with_dbname("postgres");
            let Ok(config) = admin_url.parse::<Config>() else {
                continue;
            };
            match probe(&config).await {
                Ok(true) => {
                    return Some(Server {
                        base,
                        admin_url,
                        description: format!("local server at {host}:5432 as {user}"),
                    });
                }
                Ok(false) => {
                    tracing::debug!(host, user, "local user may not create databases");
                }
                Err(error) => tracing::debug!(host, user, %error, "no local server"),
            }
        }
    }
    None
}

/// `$PGUSER`, `postgres`, then the OS user, without duplicates.
fn candidate_users() -> Vec<String> {
    let mut users: Vec<String> = Vec::new();
    let os_user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok();
    for user in [
        std::env::var("PGUSER").ok(),
        Some("postgres".into()),
        os_user,
    ]
    .into_iter()
    .flatten()
    {
        if !user.is_empty() && !users.contains(&user) {
            users.push(user);
        }
    }
    users
}

/// Connects with a timeout; returns whether the user may create databases.
async fn probe(config: &Config) -> Result<bool, String> {
    let mut config = config.clone();
    config.connect_timeout(PROBE_TIMEOUT);
    let connect = tokio::time::timeout(PROBE_TIMEOUT * 2, config.connect(NoTls));
    let (client, connection) = connect
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|error| crate::error_chain(&error))?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|error| crate::error_chain(&error));
    drop(client);
    let _ = task.await;
    row.and_then(|row| row.try_get::<_, bool>(0).map_err(|error| error.to_string()))
}

fn is_url(conninfo: &str) -> bool {
    conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://")
}

/// Quotes a conninfo value (`'...'` with `\` escapes), as libpq and tokio-postgres read it.
pub(crate) fn kv_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Replaces the database (the path) of a `postgres://` URL, dropping any `dbname`
/// query parameter.
pub(crate) fn url_with_dbname(url: &str, dbname: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let tail = &after[path_end..];
    let (query, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    let params: Vec<&str> = query
        .trim_start_matches('?')
        .split('&')
        .filter(|param| !param.is_empty() && !param.starts_with("dbname="))
        .collect();
    let mut out = format!("{head}{authority}/{}", percent_encode(dbname));
    if !params.is_empty() {
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out.push_str(fragment);
    out
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_dbname_is_replaced() {
        assert_eq!(
            url_with_dbname("postgres://u:p@h:5433/old?sslmode=disable", "new_db"),
            "postgres://u:p@h:5433/new_db?sslmode=disable"
        );
        assert_eq!(url_with_dbname("postgresql://h", "x"), "postgresql://h/x");
        assert_eq!(
            url_with_dbname("postgresql:///old?host=/tmp&dbname=old", "x"),
            "postgresql:///x?host=/tmp"
        );
        let config: Config = url_with_dbname("postgres://u@h/old", "new_db")
            .parse()
            .expect("url parses");
        assert_eq!(config.get_dbname(), Some("new_db"));
    }

    #[test]
    fn kv_quote_escapes() {
        assert_eq!(kv_quote("a b'c\\"), "'a b\\'c\\\\'");
        let config: Config = format!("host=/tmp user={}", kv_quote("we ird'"))
            .parse()
            .expect("conninfo parses");
        assert_eq!(config.get_user(), Some("we ird'"));
    }
}
