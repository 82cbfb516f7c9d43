//! Tests of the harness itself (`harness.rs`).

use std::time::Duration;

use crate::harness::*;

async fn database_exists(name: &str) -> bool {
    let admin = server()
        .await
        .admin_client()
        .await
        .expect("admin connection");
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query pg_database")
        .is_some()
}

#[tokio::test]
async fn empty_db_is_fresh_and_dropped_afterwards() {
    let db = empty_db().await;
    let name = db.name.clone();
    let client = db.client().await;
    let current: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(current, name);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(tables, 0, "an empty database has no tables");
    drop(db);
    assert!(
        !database_exists(&name).await,
        "{name} still exists after drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_dbs_are_cloned_in_parallel_from_the_template() {
    let (a, b, c) = tokio::join!(schema_db(), schema_db(), schema_db());
    for db in [&a, &b, &c] {
        let exists: bool = db
            .client()
            .await
            .query_one("SELECT to_regclass('procrastinate_jobs') IS NOT NULL", &[])
            .await
            .expect("query")
            .get(0);
        assert!(exists, "{} has the procrastinate tables", db.name);
    }
    assert!(database_exists(&template_name()).await);
}

#[tokio::test]
async fn run_python_sees_the_test_database() {
    let db = empty_db().await;
    let out = run_python(
        &db,
        "import os, importlib.metadata as m, procrastinate, psycopg\n\
         with psycopg.connect(os.environ['DATABASE_URL']) as conn:\n\
         \x20   print(conn.execute('SELECT current_database()').fetchone()[0])\n\
         print(m.version('procrastinate'))",
    )
    .await;
    assert_eq!(out, format!("{}\n3.10.0\n", db.name));
}

#[tokio::test]
async fn wait_for_returns_once_true() {
    let mut calls = 0;
    wait_for("the third call", Duration::from_secs(5), || {
        calls += 1;
        let done = calls >= 3;
        async move { done }
    })
    .await;
    assert_eq!(calls, 3);
}

#[tokio::test]
#[should_panic(expected = "timed out after 50ms waiting for never")]
async fn wait_for_panics_naming_what() {
    wait_for("never", Duration::from_millis(50), || async { false }).await;
}
