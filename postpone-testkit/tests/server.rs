//! The discovered server makes and drops databases, and its connection strings work.

use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::test]
async fn discovered_server_creates_and_drops_databases() {
    let server = postpone_testkit::server()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("using {}", server.describe());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let name = format!("postpone_testkit_{}_{nanos}", std::process::id());
    server
        .create_database(&name, None)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let client = server
        .connect(&name)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let current: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(current, name);
    let config: tokio_postgres::Config = server.url(&name).parse().expect("url parses");
    assert_eq!(config.get_dbname(), Some(name.as_str()));
    drop(client);
    server
        .drop_database(&name)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let admin = server
        .admin_client()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let left = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query");
    assert!(left.is_none(), "{name} still exists after drop_database");
}
