//! The migrator: applies pending migration halves, one transaction each, and records them
//! in `postpone_migrations`.
//!
//! Counterpart of `procrastinate schema --apply` (`SchemaManager.apply_schema`), plus what
//! Procrastinate leaves to the user: recording, ordering of pre and post halves, and
//! adopting a schema Procrastinate set up. Guarantees:
//!
//! - every transaction of the migrator first takes one advisory transaction lock, so two
//!   runs at once serialise, and the second finds the first one's records;
//! - a migration's SQL and its record row commit together or not at all;
//! - a database recording a migration this build does not know is refused
//!   ([`Error::SchemaTooNew`]), before anything runs;
//! - `--post` is refused while a pre half of the same or an earlier version is pending.

use std::fmt;

use tokio_postgres::{Client, Transaction};

use super::{
    ApplyScope, MIGRATIONS, MIGRATIONS_TABLE_SQL, Migration, PROCRASTINATE_MIGRATION, Phase,
    Recorded, newest_version, read_recorded,
};
use crate::{Error, Result};

/// Advisory lock key of the migrator: the bytes of "postpone".
const MIGRATOR_LOCK_KEY: i64 = 0x706f_7374_706f_6e65;

/// What an [`apply`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Migrations this run applied, as labels (`0001_pre_procrastinate_3_10`), in order.
    pub applied: Vec<String>,
    /// Migrations whose objects were already in place (set up by Procrastinate) and were
    /// only recorded.
    pub adopted: Vec<String>,
    /// Migrations in the requested scope that were already recorded.
    pub already_present: Vec<String>,
    /// Migrations outside the requested scope that are still pending.
    pub pending: Vec<String>,
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Adopted migrations are the first ones (what Procrastinate set up): say so first.
        for label in &self.adopted {
            writeln!(
                f,
                "adopted {label} (objects already set up by Procrastinate)"
            )?;
        }
        for label in &self.applied {
            writeln!(f, "applied {label}")?;
        }
        if self.applied.is_empty() && self.adopted.is_empty() {
            writeln!(
                f,
                "nothing to apply ({} migrations already present)",
                self.already_present.len()
            )?;
        }
        for label in &self.pending {
            let when = if label.split('_').nth(1) == Some("post") {
                "run `postpone schema apply --post` once every worker runs this version"
            } else {
                "run `postpone schema apply --pre`"
            };
            writeln!(f, "pending {label}: {when}")?;
        }
        Ok(())
    }
}

/// Applies this build's pending migrations in `scope` to the connection's current schema.
///
/// # Errors
/// [`Error::SchemaTooNew`], [`Error::ProcrastinateSchemaTooOld`], [`Error::InvalidInput`]
/// for `--post` with a pending pre half, [`Error::MigrationFailed`], or a database error.
pub async fn apply(client: &mut Client, scope: ApplyScope) -> Result<ApplyReport> {
    apply_migrations(client, MIGRATIONS, scope).await
}

/// [`apply`] with any list of migrations (in order): the engine, open to tests.
///
/// # Errors
/// As [`apply`].
pub async fn apply_migrations(
    client: &mut Client,
    migrations: &[Migration],
    scope: ApplyScope,
) -> Result<ApplyReport> {
    let recorded = {
        let tx = client.transaction().await?;
        lock(&tx).await?;
        tx.batch_execute(MIGRATIONS_TABLE_SQL).await?;
        let recorded = read_recorded(&tx).await?;
        tx.commit().await?;
        recorded
    };
    refuse_unknown(migrations, &recorded)?;
    let is_recorded = |m: &Migration| {
        recorded
            .iter()
            .any(|r| r.version == m.version && r.phase == m.phase)
    };
    if scope == ApplyScope::Post {
        refuse_post_before_pre(migrations, &is_recorded)?;
    }

    let mut report = ApplyReport::default();
    for migration in migrations {
        if !scope.includes(migration.phase) {
            if !is_recorded(migration) {
                report.pending.push(migration.label());
            }
            continue;
        }
        match apply_one(client, migration).await? {
            Outcome::Applied => report.applied.push(migration.label()),
            Outcome::Adopted => report.adopted.push(migration.label()),
            Outcome::AlreadyPresent => report.already_present.push(migration.label()),
        }
    }
    Ok(report)
}

/// What happened to one migration.
enum Outcome {
    Applied,
    Adopted,
    AlreadyPresent,
}

/// Applies one migration in its own transaction, unless a concurrent run did it first.
async fn apply_one(client: &mut Client, migration: &Migration) -> Result<Outcome> {
    let tx = client.transaction().await?;
    lock(&tx).await?;
    let present = tx
        .query_opt(
            "SELECT 1 FROM postpone_migrations WHERE version = $1 AND phase = $2",
            &[&migration.version, &migration.phase.as_str()],
        )
        .await?
        .is_some();
    if present {
        return Ok(Outcome::AlreadyPresent);
    }

    let mut outcome = Outcome::Applied;
    if (migration.version, migration.phase) == PROCRASTINATE_MIGRATION {
        match procrastinate_schema(&tx).await? {
            ProcrastinateSchema::Absent => {}
            ProcrastinateSchema::Complete => outcome = Outcome::Adopted,
            ProcrastinateSchema::TooOld(missing) => {
                return Err(Error::ProcrastinateSchemaTooOld {
                    missing: missing.join("; "),
                });
            }
        }
    }
    if matches!(outcome, Outcome::Applied) {
        tx.batch_execute(migration.sql)
            .await
            .map_err(|source| Error::MigrationFailed {
                migration: migration.label(),
                source: source.into(),
            })?;
    }
    tx.execute(
        "INSERT INTO postpone_migrations (version, phase, name, adopted) VALUES ($1, $2, $3, $4)",
        &[
            &migration.version,
            &migration.phase.as_str(),
            &migration.name,
            &matches!(outcome, Outcome::Adopted),
        ],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(migration = %migration.label(), adopted = matches!(outcome, Outcome::Adopted), "schema migration recorded");
    Ok(outcome)
}

async fn lock(tx: &Transaction<'_>) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATOR_LOCK_KEY])
        .await?;
    Ok(())
}

/// Refuses a database that records migrations this list does not know.
fn refuse_unknown(migrations: &[Migration], recorded: &[Recorded]) -> Result<()> {
    let unknown = recorded
        .iter()
        .filter(|r| {
            !migrations
                .iter()
                .any(|m| m.version == r.version && m.phase == r.phase)
        })
        .map(|r| r.version.as_str())
        .max();
    match unknown {
        Some(found) => Err(Error::SchemaTooNew {
            found: found.to_owned(),
            known: newest_version(migrations),
        }),
        None => Ok(()),
    }
}

/// `--post` runs post halves only when no pre half of the same or an earlier version waits.
fn refuse_post_before_pre(
    migrations: &[Migration],
    is_recorded: &impl Fn(&Migration) -> bool,
) -> Result<()> {
    let Some(last_post) = migrations
        .iter()
        .filter(|m| m.phase == Phase::Post && !is_recorded(m))
        .map(|m| m.version)
        .max()
    else {
        return Ok(());
    };
    let blocking: Vec<String> = migrations
        .iter()
        .filter(|m| m.phase == Phase::Pre && m.version <= last_post && !is_recorded(m))
        .map(Migration::label)
        .collect();
    if blocking.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "cannot apply post migrations: pre half {} is not applied yet; run `postpone schema apply --pre`, \
         deploy the new version to every worker, then run `postpone schema apply --post`",
        blocking.join(", ")
    )))
}

/// What the current schema holds of Procrastinate's objects.
enum ProcrastinateSchema {
    /// No `procrastinate_jobs`: create everything.
    Absent,
    /// The complete 3.10 schema (from `procrastinate schema --apply` or its migrations).
    Complete,
    /// `procrastinate_jobs` exists, but these pieces of 3.x are missing or left over.
    TooOld(Vec<String>),
}

/// Each line: a problem (text) when its condition holds. All checks are restricted to the
/// current schema. The pieces are the last changes of each Procrastinate 3.x migration.
const PROCRASTINATE_PROBLEMS_SQL: &str = "\
WITH here AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema()),
     functions AS (SELECT p.proname, p.prosrc FROM pg_proc p, here WHERE p.pronamespace = here.oid),
     relations AS (SELECT c.relname FROM pg_class c, here WHERE c.relnamespace = here.oid),
     problems (problem, present) AS (VALUES
        ('table procrastinate_workers is missing (3.1)',
         EXISTS (SELECT 1 FROM relations WHERE relname = 'procrastinate_workers')),
        ('function procrastinate_defer_jobs_v1 is missing (3.2)',
         EXISTS (SELECT 1 FROM functions WHERE proname = 'procrastinate_defer_jobs_v1')),
        ('function procrastinate_retry_job_v2 is missing (3.4)',
         EXISTS (SELECT 1 FROM functions WHERE proname = 'procrastinate_retry_job_v2')),
        ('event type ''retried'' is missing (3.4)',
         EXISTS (SELECT 1 FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid, here
                 WHERE t.typnamespace = here.oid AND t.typname = 'procrastinate_job_event_type'
                   AND e.enumlabel = 'retried')),
        ('constraint check_not_todo_abort_requested is missing (3.0 post migration)',
         EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid, here
                 WHERE c.relnamespace = here.oid AND c.relname = 'procrastinate_jobs'
                   AND k.conname = 'check_not_todo_abort_requested')),
        ('old function procrastinate_fetch_job_v1 is still there (3.1 post migration)',
         NOT EXISTS (SELECT 1 FROM functions WHERE proname = 'procrastinate_fetch_job_v1')),
        ('old function procrastinate_defer_job_v1 is still there (3.2 post migration)',
         NOT EXISTS (SELECT 1 FROM functions WHERE proname = 'procrastinate_defer_job_v1')),
        ('status events trigger does not record retries (3.4 post migration)',
         EXISTS (SELECT 1 FROM functions
                 WHERE proname = 'procrastinate_trigger_function_status_events_update_v1'
                   AND prosrc LIKE '%retried%')))
SELECT EXISTS (SELECT 1 FROM relations WHERE relname = 'procrastinate_jobs'),
       coalesce(array_agg(problem) FILTER (WHERE NOT present), '{}')
FROM problems";

async fn procrastinate_schema(tx: &Transaction<'_>) -> Result<ProcrastinateSchema> {
    let row = tx.query_one(PROCRASTINATE_PROBLEMS_SQL, &[]).await?;
    let has_jobs: bool = row.try_get(0)?;
    let problems: Vec<String> = row.try_get(1)?;
    Ok(if !has_jobs {
        ProcrastinateSchema::Absent
    } else if problems.is_empty() {
        ProcrastinateSchema::Complete
    } else {
        ProcrastinateSchema::TooOld(problems)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(version: &'static str, phase: Phase) -> Migration {
        Migration {
            version,
            name: "fake",
            phase,
            sql: "",
        }
    }

    #[test]
    fn post_waits_for_earlier_pre_halves() {
        let list = [
            fake("0001", Phase::Pre),
            fake("0002", Phase::Pre),
            fake("0002", Phase::Post),
        ];
        let only_first = |m: &Migration| m.version == "0001";
        let message = refuse_post_before_pre(&list, &only_first)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("0002_pre_fake"), "{message}");
        let pres_done = |m: &Migration| m.phase == Phase::Pre;
        assert!(refuse_post_before_pre(&list, &pres_done).is_ok());
    }

    #[test]
    fn unknown_records_are_too_new() {
        let list = [fake("0001", Phase::Pre)];
        let rows = [
            Recorded {
                version: "0001".into(),
                phase: Phase::Pre,
            },
            Recorded {
                version: "0007".into(),
                phase: Phase::Pre,
            },
        ];
        assert!(matches!(
            refuse_unknown(&list, &rows),
            Err(Error::SchemaTooNew { found, known }) if found == "0007" && known == "0001"
        ));
        assert!(refuse_unknown(&list, &rows[..1]).is_ok());
    }
}
