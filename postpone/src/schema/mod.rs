//! The database schema: our SQL, its migrations in pre and post halves, and the checks that
//! tell whether a database is ready for this build.
//!
//! Counterpart of Procrastinate's `procrastinate/sql/schema.sql`, `sql/migrations/` and
//! `schema.SchemaManager`. What this module guarantees:
//!
//! - Migration `0001` creates exactly the Procrastinate 3.10 contract objects (same catalog:
//!   tables, columns, constraints, indexes, enum labels in order, function signatures,
//!   triggers), so Python and Rust clients share one queue. A database that
//!   `procrastinate schema --apply` already set up is *adopted*: recorded, not recreated.
//! - Every other object we add is named `postpone_*` and lives in a later migration.
//! - Applied migrations are recorded in `postpone_migrations`; each migration runs in one
//!   transaction together with its record row, under an advisory lock, so re-running
//!   [`apply`] is a no-op and two concurrent runs never both apply a migration.
//! - Objects are unqualified: the connection's `search_path` (its `current_schema()`)
//!   chooses where they live.
//!
//! Migrations come in halves, like Procrastinate 3's `_pre_` / `_post_` files: a pre half
//! is safe while workers of the previous version still run; a post half runs once every
//! worker runs the new version. See `docs/schema.md` for the deploy procedure and
//! `docs/adr/0001-schema-and-migrations.md` for why it works this way.

mod catalog;
mod check;
mod migrate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use catalog::{Catalog, read_catalog};
pub use check::{CheckReport, Difference, DifferenceKind, check, check_migrations};
pub use migrate::{ApplyReport, apply, apply_migrations};

use crate::{Error, Result};

/// Which half of a migration a [`Migration`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Safe to apply while workers of the previous version still run.
    Pre,
    /// Applied once every worker runs the version that brought the migration.
    Post,
}

impl Phase {
    /// The word used in file names and in `postpone_migrations.phase`: `pre` or `post`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pre => "pre",
            Self::Post => "post",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "pre" => Some(Self::Pre),
            "post" => Some(Self::Post),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which halves [`apply`] runs (`postpone schema apply --pre`, `--post`, or both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplyScope {
    /// Only the pending pre halves.
    Pre,
    /// Only the pending post halves; refused while a pre half of the same or an earlier
    /// version is pending.
    Post,
    /// Every pending half, in version order (pre before post within a version).
    All,
}

impl ApplyScope {
    pub(crate) fn includes(self, phase: Phase) -> bool {
        match self {
            Self::All => true,
            Self::Pre => phase == Phase::Pre,
            Self::Post => phase == Phase::Post,
        }
    }
}

/// One half of a schema migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Four digits, ordered as text (`"0001"`); both halves of a migration share it.
    pub version: &'static str,
    /// Short `snake_case` description.
    pub name: &'static str,
    /// Which half this is.
    pub phase: Phase,
    /// The SQL, unqualified (the connection's `search_path` picks the schema).
    pub sql: &'static str,
}

impl Migration {
    /// `version_phase_name`, e.g. `0001_pre_procrastinate_3_10`: the file stem and the
    /// label used in reports.
    #[must_use]
    pub fn label(&self) -> String {
        format!("{}_{}_{}", self.version, self.phase, self.name)
    }

    /// The file name of this migration: its [`label`](Self::label) plus `.sql`.
    #[must_use]
    pub fn file_name(&self) -> String {
        format!("{}.sql", self.label())
    }
}

/// Declares one migration half whose SQL is `sql/<version>_<phase>_<name>.sql`.
macro_rules! migration {
    (pre $version:literal $name:literal) => {
        migration!(@ Pre "pre" $version $name)
    };
    (post $version:literal $name:literal) => {
        migration!(@ Post "post" $version $name)
    };
    (@ $phase:ident $word:literal $version:literal $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            phase: Phase::$phase,
            sql: include_str!(concat!("sql/", $version, "_", $word, "_", $name, ".sql")),
        }
    };
}

/// Every migration of this build, in the order they apply. Adding one is one line here
/// plus its file under `sql/`.
static MIGRATIONS: &[Migration] = &[
    migration!(pre "0001" "procrastinate_3_10"),
    migration!(pre "0002" "postpone_fetch_jobs"),
    migration!(pre "0003" "postpone_batch_writes"),
    migration!(pre "0004" "postpone_self_healing"),
    migration!(pre "0005" "postpone_job_errors"),
    migration!(pre "0006" "postpone_job_traces"),
    migration!(pre "0007" "postpone_job_results"),
    migration!(pre "0008" "postpone_flow_control"),
    migration!(pre "0009" "postpone_workflows"),
    migration!(pre "0010" "postpone_workflow_flow"),
];

/// The migration that creates (or adopts) the Procrastinate 3.10 contract objects.
pub(crate) const PROCRASTINATE_MIGRATION: (&str, Phase) = ("0001", Phase::Pre);

/// Creates the table recording applied migrations; idempotent. Run by the migrator itself,
/// under its advisory lock.
/// `applied_at` is when the row was written; `adopted` is true when the objects were found
/// in place (set up by Procrastinate) instead of created.
pub(crate) const MIGRATIONS_TABLE_SQL: &str = "\
CREATE TABLE IF NOT EXISTS postpone_migrations (
    version    text NOT NULL,
    phase      text NOT NULL CHECK (phase IN ('pre', 'post')),
    name       text NOT NULL,
    applied_at timestamp with time zone NOT NULL DEFAULT now(),
    adopted    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (version, phase)
);
";

/// The folder holding the migration files in the source tree (`postpone schema migrations-path`).
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema/sql");

/// Every migration this build knows, in the order they apply.
#[must_use]
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

/// Records a migration (used in [`schema_sql`] and in written migration files, so that a
/// schema applied by another tool is recognised by [`ensure_ready`] and [`apply`]).
fn record_statement(migration: &Migration) -> String {
    format!(
        "INSERT INTO postpone_migrations (version, phase, name)\n\
         VALUES ('{}', '{}', '{}')\nON CONFLICT DO NOTHING;\n",
        migration.version, migration.phase, migration.name
    )
}

/// The whole SQL a fresh database gets from [`apply`] (`postpone schema read`): the
/// migrations table, then every migration followed by its record row, in one transaction.
#[must_use]
pub fn schema_sql() -> String {
    let mut sql = String::from(
        "-- Postpone schema: what `postpone schema apply` creates in a fresh database.\n\
         -- Objects are unqualified: set search_path to choose the schema.\n\
         BEGIN;\n\n",
    );
    sql.push_str(MIGRATIONS_TABLE_SQL);
    for migration in MIGRATIONS {
        sql.push_str(&format!("\n-- Migration {}\n\n", migration.label()));
        sql.push_str(migration.sql);
        sql.push('\n');
        sql.push_str(&record_statement(migration));
    }
    sql.push_str("\nCOMMIT;\n");
    sql
}

/// Writes every migration as `<dir>/<version>_<phase>_<name>.sql` (creating `dir` if
/// needed), for teams that run migrations with their own tool. Each file creates the
/// migrations table if needed and records itself at its end. Returns the written paths.
///
/// # Errors
/// Any I/O error from creating the folder or writing a file.
pub fn write_migrations(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    MIGRATIONS
        .iter()
        .map(|migration| {
            let path = dir.join(migration.file_name());
            let content = format!(
                "{}\n-- Record this migration for postpone.\n{}{}",
                migration.sql,
                MIGRATIONS_TABLE_SQL,
                record_statement(migration)
            );
            std::fs::write(&path, content)?;
            Ok(path)
        })
        .collect()
}

/// One row of `postpone_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) version: String,
    pub(crate) phase: Phase,
}

/// Reads `postpone_migrations` (which must exist).
pub(crate) async fn read_recorded(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<Recorded>> {
    let rows = client
        .query(
            "SELECT version, phase FROM postpone_migrations ORDER BY version, phase DESC",
            &[],
        )
        .await?;
    let mut recorded = Vec::with_capacity(rows.len());
    for row in rows {
        let version: String = row.try_get(0)?;
        let word: String = row.try_get(1)?;
        let phase = Phase::parse(&word).ok_or_else(|| {
            Error::InvalidInput(format!(
                "postpone_migrations has a row for version {version:?} with phase {word:?}; \
                 only 'pre' and 'post' are valid: fix or delete that row"
            ))
        })?;
        recorded.push(Recorded { version, phase });
    }
    Ok(recorded)
}

/// The newest version this list of migrations knows.
pub(crate) fn newest_version(migrations: &[Migration]) -> String {
    migrations
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or("none")
        .to_owned()
}

/// Where the schema objects of this connection live, and which of our tables exist there.
const PRESENCE_SQL: &str = "\
SELECT current_schema(),
       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = current_schema() AND c.relname = 'postpone_migrations'),
       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = current_schema() AND c.relname = 'procrastinate_jobs')";

/// The fast readiness check run when an app connects and by health checks: reads only
/// `postpone_migrations` and the catalog presence of two tables. Returns the newest
/// applied migration version.
///
/// Ready means every pre half this build knows is applied. Pending post halves are fine
/// (a deploy is in progress: new code runs before the post halves). Migrations this build
/// does not know are refused, except pre halves of a single newer version: those are safe
/// for the previous version by definition, so old workers keep running while a newer
/// version is being deployed.
///
/// # Errors
/// [`Error::SchemaMissing`] without any schema, [`Error::SchemaOutdated`] when a pre half
/// is pending (or a Procrastinate schema was not adopted yet), [`Error::SchemaTooNew`],
/// or a database error.
pub async fn ensure_ready(client: &tokio_postgres::Client) -> Result<String> {
    let row = client.query_one(PRESENCE_SQL, &[]).await?;
    let schema: Option<String> = row.try_get(0)?;
    let has_migrations: bool = row.try_get(1)?;
    let has_jobs: bool = row.try_get(2)?;
    if schema.is_none() || !has_migrations {
        return Err(if has_jobs {
            Error::SchemaOutdated {
                pending: "the Procrastinate schema is not adopted by postpone yet".to_owned(),
            }
        } else {
            Error::SchemaMissing
        });
    }
    let recorded = read_recorded(client).await?;
    readiness(MIGRATIONS, &recorded)
}

/// The decision of [`ensure_ready`], apart from the database.
fn readiness(migrations: &[Migration], recorded: &[Recorded]) -> Result<String> {
    let known = |r: &Recorded| {
        migrations
            .iter()
            .any(|m| m.version == r.version && m.phase == r.phase)
    };
    let unknown: Vec<&Recorded> = recorded.iter().filter(|r| !known(r)).collect();
    let unknown_versions: std::collections::BTreeSet<&str> =
        unknown.iter().map(|r| r.version.as_str()).collect();
    let tolerated = unknown.iter().all(|r| r.phase == Phase::Pre) && unknown_versions.len() <= 1;
    if let Some(found) = unknown_versions.last().filter(|_| !tolerated) {
        return Err(Error::SchemaTooNew {
            found: (*found).to_owned(),
            known: newest_version(migrations),
        });
    }
    let pending: Vec<String> = migrations
        .iter()
        .filter(|m| m.phase == Phase::Pre)
        .filter(|m| {
            !recorded
                .iter()
                .any(|r| r.version == m.version && r.phase == m.phase)
        })
        .map(Migration::label)
        .collect();
    if !pending.is_empty() {
        return Err(Error::SchemaOutdated {
            pending: format!("pending migrations: {}", pending.join(", ")),
        });
    }
    Ok(recorded
        .iter()
        .filter(|r| known(r))
        .map(|r| r.version.clone())
        .max()
        .unwrap_or_default())
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

    fn rec(version: &str, phase: Phase) -> Recorded {
        Recorded {
            version: version.to_owned(),
            phase,
        }
    }

    #[test]
    fn migrations_are_ordered_and_well_named() {
        let list = migrations();
        assert_eq!(list[0].label(), "0001_pre_procrastinate_3_10");
        for pair in list.windows(2) {
            assert!(
                (pair[0].version, pair[0].phase) < (pair[1].version, pair[1].phase),
                "{} must come after {}",
                pair[1].label(),
                pair[0].label()
            );
        }
        for m in list {
            assert_eq!(m.version.len(), 4, "{}", m.label());
            assert!(m.version.bytes().all(|b| b.is_ascii_digit()));
            assert!(!m.sql.trim().is_empty());
        }
    }

    #[test]
    fn schema_sql_holds_every_migration_and_its_record() {
        let sql = schema_sql();
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS postpone_migrations"));
        for m in migrations() {
            assert!(sql.contains(m.sql));
            assert!(sql.contains(&format!(
                "VALUES ('{}', '{}', '{}')",
                m.version, m.phase, m.name
            )));
        }
        assert!(sql.trim_end().ends_with("COMMIT;"));
    }

    #[test]
    fn write_migrations_writes_one_file_each() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("postpone-migrations-{}", std::process::id()));
        let paths = write_migrations(&dir)?;
        assert_eq!(paths.len(), migrations().len());
        for (path, m) in paths.iter().zip(migrations()) {
            assert!(path.ends_with(m.file_name()));
            assert!(std::fs::read_to_string(path)?.starts_with(m.sql));
        }
        std::fs::remove_dir_all(&dir)?;
        assert!(
            Path::new(MIGRATIONS_DIR)
                .join(migrations()[0].file_name())
                .is_file()
        );
        Ok(())
    }

    #[test]
    fn readiness_rules() {
        let known = [
            fake("0001", Phase::Pre),
            fake("0002", Phase::Pre),
            fake("0002", Phase::Post),
        ];
        let all = [
            rec("0001", Phase::Pre),
            rec("0002", Phase::Pre),
            rec("0002", Phase::Post),
        ];
        assert_eq!(readiness(&known, &all).ok(), Some("0002".to_owned()));
        // post pending: fine (deploy in progress)
        assert!(readiness(&known, &all[..2]).is_ok());
        // pre pending: outdated
        assert!(matches!(
            readiness(&known, &all[..1]),
            Err(Error::SchemaOutdated { .. })
        ));
        // a newer pre half: tolerated; a newer post half or two newer versions: too new
        let mut newer = all.to_vec();
        newer.push(rec("0003", Phase::Pre));
        assert!(readiness(&known, &newer).is_ok());
        newer.push(rec("0003", Phase::Post));
        assert!(matches!(
            readiness(&known, &newer),
            Err(Error::SchemaTooNew { found, known }) if found == "0003" && known == "0002"
        ));
        let mut two = all.to_vec();
        two.extend([rec("0003", Phase::Pre), rec("0004", Phase::Pre)]);
        assert!(
            matches!(readiness(&known, &two), Err(Error::SchemaTooNew { found, .. }) if found == "0004")
        );
    }
}
