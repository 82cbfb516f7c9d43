//! Schema and migrations against a real PostgreSQL, with Procrastinate 3.10 (Python) as the
//! reference: catalog identity, adoption of a Python-built schema, pre/post ordering, and
//! the behaviour of our SQL functions compared scenario by scenario with Python's.

use postpone::Error;
use postpone::schema::{
    self, ApplyScope, Catalog, DifferenceKind, Migration, Phase, apply, apply_migrations, check,
    check_migrations, ensure_ready, read_catalog,
};
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

use crate::harness::{TestDb, empty_db, python_db, schema_db};

fn labels() -> Vec<String> {
    schema::migrations().iter().map(Migration::label).collect()
}

fn only_procrastinate(catalog: &Catalog) -> Catalog {
    catalog
        .iter()
        .filter(|(key, _)| !key.contains("postpone_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Lines `- key: def` / `+ key: def` for every entry that differs between two catalogs.
fn catalog_diff(left: &Catalog, right: &Catalog) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, value) in left {
        if right.get(key) != Some(value) {
            lines.push(format!("- {key}: {value}"));
        }
    }
    for (key, value) in right {
        if left.get(key) != Some(value) {
            lines.push(format!("+ {key}: {value}"));
        }
    }
    lines
}

async fn recorded(client: &Client) -> Vec<(String, String, bool)> {
    client
        .query(
            "SELECT version || '_' || phase || '_' || name, phase, adopted
             FROM postpone_migrations ORDER BY version, phase DESC",
            &[],
        )
        .await
        .expect("read postpone_migrations")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

#[tokio::test]
async fn apply_on_empty_db_creates_everything_and_records_migrations() {
    let db = empty_db().await;
    let mut client = db.client().await;
    assert!(matches!(
        ensure_ready(&client).await,
        Err(Error::SchemaMissing)
    ));

    let report = apply(&mut client, ApplyScope::All).await.expect("apply");
    assert_eq!(report.applied, labels());
    assert!(report.adopted.is_empty() && report.already_present.is_empty());
    assert!(
        report
            .to_string()
            .contains("applied 0001_pre_procrastinate_3_10")
    );

    let rows = recorded(&client).await;
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        labels()
    );
    assert!(rows.iter().all(|r| !r.2), "nothing adopted: {rows:?}");
    let catalog = read_catalog(&client).await.expect("catalog");
    for object in [
        "table procrastinate_jobs",
        "table postpone_migrations",
        "type procrastinate_job_to_defer_v1",
        "index procrastinate_jobs_lock_idx_v1",
        "trigger procrastinate_jobs.procrastinate_trigger_delete_jobs_v1",
    ] {
        assert!(catalog.contains_key(object), "{object} missing");
    }
    let newest = schema::migrations().last().map(|m| m.version.to_owned());
    assert_eq!(ensure_ready(&client).await.ok(), newest);
}

/// `App::apply_schema` installs the schema from code, with no second connection of the
/// caller's and no CLI; the missing-schema error says how, from code and from the CLI. The
/// memory store's tables are always current: nothing to apply, and it checks out.
#[tokio::test]
async fn an_app_installs_and_checks_its_schema_from_code() {
    let db = empty_db().await;
    let app = postpone::App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .build()
        .expect("app");
    let err = app.check_schema().await.expect_err("no schema yet");
    assert!(matches!(err, Error::SchemaMissing), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("app.apply_schema(ApplyScope::All)")
            && message.contains("postpone schema apply"),
        "{message}"
    );
    let report = app.apply_schema(ApplyScope::All).await.expect("apply");
    assert_eq!(report.applied, labels());
    let version = app.check_schema().await.expect("ready");
    assert_eq!(Some(version.as_str()), labels().last().map(|l| &l[..4]));
    let again = app
        .apply_schema(ApplyScope::All)
        .await
        .expect("apply again");
    assert!(again.applied.is_empty() && again.already_present == labels());

    let memory = postpone::App::builder()
        .store(std::sync::Arc::new(postpone::MemoryStore::new()))
        .build()
        .expect("app");
    let report = memory.apply_schema(ApplyScope::All).await.expect("apply");
    assert!(report.applied.is_empty() && report.already_present == labels());
    assert_eq!(memory.check_schema().await.expect("ready"), version);
}

#[tokio::test]
async fn apply_twice_is_a_noop() {
    let db = schema_db().await;
    let mut client = db.client().await;
    let before = read_catalog(&client).await.expect("catalog");
    let rows_before = recorded(&client).await;

    let report = apply(&mut client, ApplyScope::All).await.expect("apply");
    assert!(report.applied.is_empty() && report.adopted.is_empty());
    assert_eq!(report.already_present, labels());
    assert!(report.to_string().starts_with("nothing to apply"));
    assert_eq!(read_catalog(&client).await.expect("catalog"), before);
    assert_eq!(recorded(&client).await, rows_before);
}

#[tokio::test]
async fn concurrent_applies_run_each_migration_once() {
    let db = empty_db().await;
    let (mut a, mut b) = (db.client().await, db.client().await);
    let (ra, rb) = tokio::join!(
        apply(&mut a, ApplyScope::All),
        apply(&mut b, ApplyScope::All)
    );
    let (ra, rb) = (ra.expect("first apply"), rb.expect("second apply"));
    let mut applied = [ra.applied.clone(), rb.applied.clone()].concat();
    applied.sort();
    assert_eq!(applied, labels(), "each migration applied exactly once");
    assert_eq!(
        ra.already_present.len() + rb.already_present.len(),
        labels().len(),
        "the other run found each one recorded"
    );
    assert!(check(&a).await.expect("check").is_up_to_date());
}

#[tokio::test]
async fn python_schema_is_adopted_and_only_postpone_objects_are_added() {
    let db = python_db().await;
    let mut client = db.client().await;
    assert!(matches!(
        ensure_ready(&client).await,
        Err(Error::SchemaOutdated { .. })
    ));
    let before = read_catalog(&client).await.expect("catalog before");
    assert!(before.keys().all(|key| !key.contains("postpone_")));

    let report = apply(&mut client, ApplyScope::All).await.expect("apply");
    assert_eq!(report.adopted, ["0001_pre_procrastinate_3_10"]);
    assert_eq!(report.applied, labels()[1..]);
    assert!(recorded(&client).await[0].2, "0001 recorded as adopted");

    let after = read_catalog(&client).await.expect("catalog after");
    let changed = catalog_diff(&before, &only_procrastinate(&after));
    assert!(
        changed.is_empty(),
        "procrastinate objects changed:\n{}",
        changed.join("\n")
    );
    assert!(after.contains_key("table postpone_migrations"));
    let report = check(&client).await.expect("check");
    assert!(report.is_up_to_date(), "{report}");
    ensure_ready(&client).await.expect("ready");
}

/// THE contract test: every procrastinate_* object of our schema is identical to the one
/// Procrastinate 3.10 creates.
#[tokio::test]
async fn catalog_is_identical_to_procrastinate() {
    let (python, ours) = tokio::join!(python_db(), schema_db());
    let (python, ours) = (python.client().await, ours.client().await);
    let theirs = read_catalog(&python).await.expect("python catalog");
    let mine = only_procrastinate(&read_catalog(&ours).await.expect("our catalog"));
    assert!(theirs.len() > 60, "suspiciously small catalog: {theirs:#?}");
    let diff = catalog_diff(&theirs, &mine);
    assert!(
        diff.is_empty(),
        "catalog differs from Procrastinate 3.10 (- python, + ours):\n{}",
        diff.join("\n")
    );

    // Column order is not in the catalog (see the catalog module); for a fresh database it
    // is the same too, and procrastinate_fetch_job_v2 returns rows in that order.
    let order =
        "SELECT table_name || ': ' || string_agg(column_name, ', ' ORDER BY ordinal_position)
                 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name LIKE 'procrastinate%'
                 GROUP BY table_name ORDER BY table_name";
    let columns =
        |rows: Vec<tokio_postgres::Row>| -> Vec<String> { rows.iter().map(|r| r.get(0)).collect() };
    assert_eq!(
        columns(ours.query(order, &[]).await.expect("columns")),
        columns(python.query(order, &[]).await.expect("columns"))
    );
}

#[tokio::test]
async fn check_says_up_to_date_on_a_current_db() {
    let db = schema_db().await;
    let client = db.client().await;
    let report = check(&client).await.expect("check");
    assert!(report.is_up_to_date(), "{report}");
    assert_eq!(report.schema, "public");
    assert!(report.to_string().contains("is up to date"));
    // the scratch schema never survives a check
    let scratch = client
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = 'postpone_check_scratch'",
            &[],
        )
        .await
        .expect("query");
    assert!(scratch.is_none());
}

#[tokio::test]
async fn check_lists_exactly_what_was_changed() {
    let db = schema_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "DROP INDEX procrastinate_jobs_priority_idx_v1;
             ALTER TABLE procrastinate_jobs ALTER COLUMN queue_name TYPE character varying(200);
             CREATE INDEX procrastinate_jobs_extra ON procrastinate_jobs (task_name);",
        )
        .await
        .expect("alter schema");
    let report = check(&client).await.expect("check");
    assert!(!report.is_up_to_date());
    let found: Vec<(DifferenceKind, &str)> = report
        .differences
        .iter()
        .map(|d| (d.kind, d.object.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                DifferenceKind::Different,
                "column procrastinate_jobs.queue_name"
            ),
            (DifferenceKind::Unexpected, "index procrastinate_jobs_extra"),
            (
                DifferenceKind::Missing,
                "index procrastinate_jobs_priority_idx_v1"
            ),
        ],
        "{report}"
    );
    let text = report.to_string();
    assert!(text.contains(
        "different: column procrastinate_jobs.queue_name: expected `character varying(128) not null`, \
         found `character varying(200) not null`"
    ));
    assert!(text.contains("missing: index procrastinate_jobs_priority_idx_v1: CREATE INDEX"));
    assert!(report.pending_pre.is_empty() && report.pending_post.is_empty());
}

/// Two fake migrations with both halves; every half appends to a log, posts read what
/// their pre created.
const FAKES: &[Migration] = &[
    Migration {
        version: "0001",
        name: "log",
        phase: Phase::Pre,
        sql: "CREATE TABLE postpone_fake_log (id serial PRIMARY KEY, half text NOT NULL);
              INSERT INTO postpone_fake_log (half) VALUES ('0001 pre');",
    },
    Migration {
        version: "0001",
        name: "log",
        phase: Phase::Post,
        sql: "INSERT INTO postpone_fake_log (half) VALUES ('0001 post');",
    },
    Migration {
        version: "0002",
        name: "column",
        phase: Phase::Pre,
        sql: "ALTER TABLE postpone_fake_log ADD COLUMN extra text;
              INSERT INTO postpone_fake_log (half) VALUES ('0002 pre');",
    },
    Migration {
        version: "0002",
        name: "column",
        phase: Phase::Post,
        sql: "INSERT INTO postpone_fake_log (half, extra) VALUES ('0002 post', 'needs 0002 pre');",
    },
];

async fn fake_log(client: &Client) -> Vec<String> {
    client
        .query("SELECT half FROM postpone_fake_log ORDER BY id", &[])
        .await
        .expect("read log")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn pre_and_post_halves_apply_in_order() {
    let db = empty_db().await;
    let mut client = db.client().await;

    let refused = apply_migrations(&mut client, FAKES, ApplyScope::Post).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("0001_pre_log") && message.contains("--pre"),
        "{message}"
    );

    let report = apply_migrations(&mut client, FAKES, ApplyScope::Pre)
        .await
        .expect("pre");
    assert_eq!(report.applied, ["0001_pre_log", "0002_pre_column"]);
    assert_eq!(report.pending, ["0001_post_log", "0002_post_column"]);
    assert!(
        report
            .to_string()
            .contains("pending 0001_post_log: run `postpone schema apply --post`")
    );

    let checked = check_migrations(&client, FAKES).await.expect("check");
    assert!(checked.pending_pre.is_empty());
    assert_eq!(checked.pending_post, ["0001_post_log", "0002_post_column"]);
    assert!(checked.differences.is_empty(), "{checked}");
    assert!(
        checked
            .to_string()
            .contains("pending post half: 0001_post_log")
    );

    let report = apply_migrations(&mut client, FAKES, ApplyScope::Post)
        .await
        .expect("post");
    assert_eq!(report.applied, ["0001_post_log", "0002_post_column"]);
    assert_eq!(
        fake_log(&client).await,
        ["0001 pre", "0002 pre", "0001 post", "0002 post"]
    );
    assert!(
        check_migrations(&client, FAKES)
            .await
            .expect("check")
            .is_up_to_date()
    );
}

#[tokio::test]
async fn apply_all_goes_in_version_order_and_check_names_pending_pre() {
    let db = empty_db().await;
    let mut client = db.client().await;
    apply_migrations(&mut client, &FAKES[..2], ApplyScope::All)
        .await
        .expect("first version");
    let checked = check_migrations(&client, FAKES).await.expect("check");
    assert_eq!(checked.pending_pre, ["0002_pre_column"]);
    assert_eq!(checked.pending_post, ["0002_post_column"]);
    assert!(
        checked
            .to_string()
            .contains("pending pre half: 0002_pre_column")
    );
    assert!(
        checked
            .differences
            .iter()
            .any(|d| d.kind == DifferenceKind::Missing
                && d.object == "column postpone_fake_log.extra")
    );

    let report = apply_migrations(&mut client, FAKES, ApplyScope::All)
        .await
        .expect("all");
    assert_eq!(report.applied, ["0002_pre_column", "0002_post_column"]);
    assert_eq!(
        fake_log(&client).await,
        ["0001 pre", "0001 post", "0002 pre", "0002 post"]
    );
}

#[tokio::test]
async fn failed_migration_is_rolled_back_and_not_recorded() {
    let db = empty_db().await;
    let mut client = db.client().await;
    let broken = [Migration {
        version: "0001",
        name: "broken",
        phase: Phase::Pre,
        sql: "CREATE TABLE postpone_half_done (id int); SELECT no_such_function();",
    }];
    let error = apply_migrations(&mut client, &broken, ApplyScope::All).await;
    assert!(
        matches!(&error, Err(Error::MigrationFailed { migration, .. }) if migration == "0001_pre_broken"),
        "{error:?}"
    );
    assert!(recorded(&client).await.is_empty());
    let table = client
        .query_one("SELECT to_regclass('postpone_half_done') IS NULL", &[])
        .await
        .expect("query");
    assert!(
        table.get::<_, bool>(0),
        "the half-done table was rolled back"
    );
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let db = schema_db().await;
    let mut client = db.client().await;
    // a newer version's pre half: a rolling deploy in progress, old workers still run
    client
        .execute(
            "INSERT INTO postpone_migrations (version, phase, name) VALUES ('9999', 'pre', 'future')",
            &[],
        )
        .await
        .expect("insert");
    ensure_ready(&client)
        .await
        .expect("a newer pre half is tolerated");
    let refused = apply(&mut client, ApplyScope::All).await;
    assert!(
        matches!(&refused, Err(Error::SchemaTooNew { found, .. }) if found == "9999"),
        "{refused:?}"
    );
    // its post half: this build can no longer run
    client
        .execute(
            "INSERT INTO postpone_migrations (version, phase, name) VALUES ('9999', 'post', 'future')",
            &[],
        )
        .await
        .expect("insert");
    let refused = ensure_ready(&client).await;
    assert!(matches!(&refused, Err(Error::SchemaTooNew { found, .. }) if found == "9999"));
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("upgrade postpone"), "{message}");
    assert!(matches!(
        check(&client).await,
        Err(Error::SchemaTooNew { .. })
    ));
}

#[tokio::test]
async fn older_procrastinate_schema_is_refused() {
    let db = python_db().await;
    let mut client = db.client().await;
    // what a database stuck before Procrastinate 3.4 lacks
    client
        .batch_execute("DROP FUNCTION procrastinate_retry_job_v2;")
        .await
        .expect("downgrade");
    let refused = apply(&mut client, ApplyScope::All).await;
    assert!(
        matches!(refused, Err(Error::ProcrastinateSchemaTooOld { .. })),
        "{refused:?}"
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains("procrastinate_retry_job_v2"), "{message}");
    assert!(
        message.contains("procrastinate schema --migrations-path"),
        "{message}"
    );
    assert!(recorded(&client).await.is_empty(), "nothing recorded");
}

/// Runs each statement on its own (autocommit) and returns one line per result row or
/// error, so that two databases can be compared statement by statement.
async fn run_scenario(client: &Client, statements: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for statement in statements {
        match client.simple_query(statement).await {
            Ok(messages) => {
                for message in messages {
                    if let SimpleQueryMessage::Row(row) = message {
                        let values: Vec<&str> = (0..row.len())
                            .map(|i| row.get(i).unwrap_or("NULL"))
                            .collect();
                        out.push(format!("{statement} => {}", values.join(" | ")));
                    }
                }
            }
            Err(error) => {
                let (code, text) = error
                    .as_db_error()
                    .map(|e| (e.code().code().to_owned(), e.message().to_owned()))
                    .unwrap_or_else(|| ("?".to_owned(), error.to_string()));
                out.push(format!("{statement} => error {code}: {text}"));
            }
        }
    }
    out
}

const SCENARIO: &[&str] = &[
    "SELECT procrastinate_defer_jobs_v1(ARRAY[
        ROW('q1', 'a', 0, 'L', NULL, '{\"n\": 1}', NULL),
        ROW('q1', 'b', 5, 'L', NULL, '{}', NULL),
        ROW('q2', 'c', 0, NULL, 'QL', '{}', NULL),
        ROW('q1', 'd', 10, NULL, NULL, '{}', now() + interval '1 hour'),
        ROW('q1', 'e', 1, NULL, NULL, '{}', now() - interval '1 hour')
     ]::procrastinate_job_to_defer_v1[])",
    "SELECT procrastinate_defer_jobs_v1(ARRAY[]::procrastinate_job_to_defer_v1[])",
    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('q2', 'c', 0, NULL, 'QL', '{}', NULL)]::procrastinate_job_to_defer_v1[])",
    "SELECT * FROM procrastinate_register_worker_v1()",
    "SELECT * FROM procrastinate_register_worker_v1()",
    // lock L: job 2 (priority 5) goes before job 1; job 4 is scheduled later
    "SELECT id, status, worker_id, attempts FROM procrastinate_fetch_job_v2(ARRAY['q1'], 1)",
    "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['q1'], 1)",
    "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['q1'], 1)",
    "SELECT id FROM procrastinate_fetch_job_v2(NULL, 2)",
    "SELECT procrastinate_finish_job_v1(2, 'succeeded', false)",
    "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['q1'], 1)",
    "SELECT procrastinate_retry_job_v1(1, NULL, 7, 'q3', NULL)",
    "SELECT procrastinate_retry_job_v1(1, NULL, 7, 'q3', NULL)",
    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('q2', 'c', 0, NULL, 'QL', '{}', NULL)]::procrastinate_job_to_defer_v1[])",
    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('q2', 'c', 0, NULL, 'QL', '{}', NULL)]::procrastinate_job_to_defer_v1[])",
    // the failed insert above used id 6: the waiting QL job is 7
    "SELECT procrastinate_cancel_job_v1(7, false, false)",
    "SELECT procrastinate_cancel_job_v1(7, false, false)",
    "SELECT procrastinate_cancel_job_v1(3, true, false)",
    "SELECT procrastinate_retry_job_v2(3, NULL, NULL, NULL, NULL)",
    "SELECT procrastinate_retry_job_v2(3, NULL, NULL, NULL, NULL)",
    "SELECT procrastinate_finish_job_v1(5, 'todo', false)",
    "SELECT procrastinate_finish_job_v1(999, 'failed', false)",
    "SELECT procrastinate_finish_job_v1(5, 'failed', false)",
    "SELECT procrastinate_retry_job_v2(5, now() + interval '1 day', 3, 'q9', 'M')",
    "SELECT procrastinate_cancel_job_v1(4, false, true)",
    "SELECT procrastinate_cancel_job_v1(1, true, false)",
    "SELECT procrastinate_finish_job_v1(4, 'aborted', true)",
    "SELECT procrastinate_defer_periodic_job_v2('qp', NULL, NULL, 'pt', 0, 'p', 100, '{}')",
    "SELECT procrastinate_defer_periodic_job_v2('qp', NULL, NULL, 'pt', 0, 'p', 100, '{}')",
    "SELECT procrastinate_defer_periodic_job_v2('qp', 'L2', 'Q2', 'pt', 4, 'p', 101, '{\"k\": 2}')",
    "SELECT procrastinate_defer_periodic_job_v2('qp', NULL, NULL, 'pt', 0, 'other', 50, '{}')",
    "SELECT task_name, periodic_id, defer_timestamp, job_id FROM procrastinate_periodic_defers ORDER BY id",
    "DELETE FROM procrastinate_jobs WHERE task_name = 'pt' AND priority = 4",
    "SELECT task_name, periodic_id, defer_timestamp, job_id FROM procrastinate_periodic_defers ORDER BY id",
    "SELECT procrastinate_update_heartbeat_v1(1)",
    "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = 2",
    "SELECT * FROM procrastinate_prune_stalled_workers_v1(60)",
    "SELECT procrastinate_unregister_worker_v1(1)",
    "SELECT id FROM procrastinate_workers",
    "SELECT id, queue_name, task_name, priority, lock, queueing_lock, args, status,
            scheduled_at IS NULL, scheduled_at > now(), attempts, abort_requested, worker_id
     FROM procrastinate_jobs ORDER BY id",
    "SELECT job_id, type, at IS NULL, at > now() FROM procrastinate_events ORDER BY id",
];

/// Runs [`SCENARIO`] while listening, returns its lines then the notifications received.
async fn scenario_with_notifications(db: &TestDb) -> Vec<String> {
    let (listener, mut connection) = tokio_postgres::connect(&db.url, NoTls)
        .await
        .expect("listener connection");
    let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = sender.send(format!("notify {} {}", n.channel(), n.payload()));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    listener
        .batch_execute("LISTEN procrastinate_any_queue_v1; LISTEN \"procrastinate_queue_v1#q2\";")
        .await
        .expect("listen");

    let client = db.client().await;
    let mut lines = run_scenario(&client, SCENARIO).await;
    // A round trip on the listener makes sure every notification sent before has arrived:
    // the notifying transactions committed before the ping was sent, and the server hands
    // a session its pending notifications before the ReadyForQuery that ends the ping
    // (PostgreSQL 14 and later), which the pump reads, in order, before the ping returns.
    listener.simple_query("SELECT 1").await.expect("ping");
    while let Ok(line) = notifications.try_recv() {
        lines.push(line);
    }
    drop(listener);
    pump.abort();
    lines
}

#[tokio::test]
async fn sql_functions_behave_like_procrastinate() {
    let (python, ours) = tokio::join!(python_db(), schema_db());
    let (theirs, mine) = tokio::join!(
        scenario_with_notifications(&python),
        scenario_with_notifications(&ours)
    );
    assert!(
        theirs
            .iter()
            .any(|l| l.starts_with("notify procrastinate_queue_v1#q2")),
        "the scenario must produce notifications: {theirs:#?}"
    );
    for expected in [
        "error 23505",
        "error 23514",
        "| retried |",
        "| scheduled |",
        "| cancelled |",
    ] {
        assert!(
            theirs.iter().any(|l| l.contains(expected)),
            "the scenario must cover {expected}: {theirs:#?}"
        );
    }
    let differing: Vec<String> = theirs
        .iter()
        .zip(&mine)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("python: {a}\nours:   {b}"))
        .collect();
    assert!(
        differing.is_empty() && theirs.len() == mine.len(),
        "our SQL behaves differently ({} vs {} lines):\n{}",
        theirs.len(),
        mine.len(),
        differing.join("\n")
    );
}

#[tokio::test]
async fn fetch_job_honours_lock_order_across_queues() {
    // same lock in two queues: the earlier job of the lock blocks, whatever queue is asked
    let (python, ours) = tokio::join!(python_db(), schema_db());
    let statements = [
        "SELECT procrastinate_defer_jobs_v1(ARRAY[
            ROW('qa', 't', 0, 'K', NULL, '{}', now() + interval '1 hour'),
            ROW('qb', 't', 0, 'K', NULL, '{}', NULL),
            ROW('qb', 't', 0, 'K', NULL, '{}', NULL),
            ROW('qb', 't', 9, NULL, NULL, '{}', NULL)
         ]::procrastinate_job_to_defer_v1[])",
        "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['qb'], NULL)",
        "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['qb'], NULL)",
        "UPDATE procrastinate_jobs SET scheduled_at = NULL WHERE id = 1",
        "SELECT id FROM procrastinate_fetch_job_v2(NULL, NULL)",
        "SELECT procrastinate_finish_job_v1(1, 'succeeded', false)",
        "SELECT id FROM procrastinate_fetch_job_v2(NULL, NULL)",
    ];
    let (python, ours) = (python.client().await, ours.client().await);
    let theirs = run_scenario(&python, &statements).await;
    assert_eq!(run_scenario(&ours, &statements).await, theirs);
    assert!(
        theirs[1].ends_with("=> 4") && theirs[2].ends_with("=> NULL"),
        "{theirs:#?}"
    );
}

#[tokio::test]
async fn schema_sql_and_written_files_give_the_applied_schema() {
    let (from_read, from_files, reference) = tokio::join!(empty_db(), empty_db(), schema_db());
    let reference = read_catalog(&reference.client().await)
        .await
        .expect("reference catalog");

    // `postpone schema read | psql`
    let mut client = from_read.client().await;
    client
        .batch_execute(&schema::schema_sql())
        .await
        .expect("schema_sql runs");
    assert_eq!(read_catalog(&client).await.expect("catalog"), reference);
    let report = apply(&mut client, ApplyScope::All).await.expect("apply");
    assert_eq!(report.already_present, labels(), "{report}");

    // files written for another migration tool, applied in name order
    let dir = std::env::temp_dir().join(format!("postpone-it-migrations-{}", from_files.name));
    let mut paths = schema::write_migrations(&dir).expect("write migrations");
    paths.sort();
    let client = from_files.client().await;
    for path in &paths {
        let sql = std::fs::read_to_string(path).expect("read migration");
        client
            .batch_execute(&sql)
            .await
            .expect("migration file runs");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(read_catalog(&client).await.expect("catalog"), reference);
    ensure_ready(&client).await.expect("recorded by the files");
}
