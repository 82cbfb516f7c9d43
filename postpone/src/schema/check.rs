//! `postpone schema check`: what differs between the live schema and the one this build
//! expects, and which migration halves are pending.
//!
//! No Procrastinate counterpart (Procrastinate has no check). The expected catalog is not a
//! snapshot kept in the source: it is computed by applying this build's migrations into a
//! scratch schema inside a transaction that is always rolled back, and reading it with the
//! same introspection as the live schema ([`super::read_catalog`]). So the expectation can
//! never drift from the SQL that `apply` runs. Needs the `CREATE` privilege on the database.

use std::fmt;

use tokio_postgres::Client;

use super::catalog::{Catalog, read_catalog_of};
use super::{MIGRATIONS, MIGRATIONS_TABLE_SQL, Migration, Phase, read_recorded};
use crate::{Error, Result};

/// The scratch schema of the expected catalog; it only ever exists inside a rolled back
/// transaction.
const SCRATCH_SCHEMA: &str = "postpone_check_scratch";

/// How an object differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DifferenceKind {
    /// Expected but absent.
    Missing,
    /// Present with another definition.
    Different,
    /// Present but not expected.
    Unexpected,
}

/// One object that differs from the expected schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Missing, different or unexpected.
    pub kind: DifferenceKind,
    /// The object, as `kind name` (`index procrastinate_jobs_lock_idx_v1`).
    pub object: String,
    /// The expected definition (none when unexpected).
    pub expected: Option<String>,
    /// The live definition (none when missing).
    pub found: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = self.expected.as_deref().unwrap_or_default();
        let found = self.found.as_deref().unwrap_or_default();
        match self.kind {
            DifferenceKind::Missing => write!(f, "missing: {}: {expected}", self.object),
            DifferenceKind::Unexpected => write!(f, "unexpected: {}: {found}", self.object),
            DifferenceKind::Different => write!(
                f,
                "different: {}: expected `{expected}`, found `{found}`",
                self.object
            ),
        }
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The schema that was checked (the connection's current schema).
    pub schema: String,
    /// Every missing, different or unexpected `procrastinate_*` / `postpone_*` object,
    /// compared with the schema a full `postpone schema apply` gives.
    pub differences: Vec<Difference>,
    /// Pre halves not applied yet, as labels (`0002_pre_postpone_fetch_jobs`).
    pub pending_pre: Vec<String>,
    /// Post halves not applied yet, as labels.
    pub pending_post: Vec<String>,
    /// The newest applied migration version, if any is recorded.
    pub version: Option<String>,
}

impl CheckReport {
    /// True when nothing differs and nothing is pending.
    #[must_use]
    pub fn is_up_to_date(&self) -> bool {
        self.differences.is_empty() && self.pending_pre.is_empty() && self.pending_post.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self.version.as_deref().unwrap_or("none");
        if self.is_up_to_date() {
            return writeln!(
                f,
                "schema {:?} is up to date (migration {version})",
                self.schema
            );
        }
        writeln!(
            f,
            "schema {:?} is not up to date (migration {version}):",
            self.schema
        )?;
        for difference in &self.differences {
            writeln!(f, "{difference}")?;
        }
        for label in &self.pending_pre {
            writeln!(
                f,
                "pending pre half: {label} (run `postpone schema apply --pre`)"
            )?;
        }
        for label in &self.pending_post {
            writeln!(
                f,
                "pending post half: {label} (run `postpone schema apply --post` once every worker runs this version)"
            )?;
        }
        Ok(())
    }
}

/// Compares the connection's current schema with what this build's migrations create, and
/// lists the pending halves. Runs its own transaction (rolled back): do not call it while
/// the client is inside one.
///
/// # Errors
/// [`Error::SchemaTooNew`] when the database records a migration this build does not know,
/// [`Error::InvalidInput`] when no schema of the `search_path` exists, or a database error
/// (for example without the `CREATE` privilege needed by the scratch schema).
pub async fn check(client: &Client) -> Result<CheckReport> {
    check_migrations(client, MIGRATIONS).await
}

/// [`check`] against any list of migrations (in order): the engine, open to tests.
///
/// # Errors
/// As [`check`].
pub async fn check_migrations(client: &Client, migrations: &[Migration]) -> Result<CheckReport> {
    let live = super::read_catalog(client).await?;
    let schema: String = client
        .query_one("SELECT current_schema()", &[])
        .await?
        .try_get(0)?;

    let has_table = live.contains_key("table postpone_migrations");
    let recorded = if has_table {
        read_recorded(client).await?
    } else {
        Vec::new()
    };
    let known = |version: &str, phase: Phase| {
        migrations
            .iter()
            .any(|m| m.version == version && m.phase == phase)
    };
    if let Some(found) = recorded
        .iter()
        .filter(|r| !known(&r.version, r.phase))
        .map(|r| r.version.clone())
        .max()
    {
        return Err(Error::SchemaTooNew {
            found,
            known: super::newest_version(migrations),
        });
    }
    let is_recorded = |m: &Migration| {
        recorded
            .iter()
            .any(|r| r.version == m.version && r.phase == m.phase)
    };
    let pending = |phase: Phase| {
        migrations
            .iter()
            .filter(|m| m.phase == phase && !is_recorded(m))
            .map(Migration::label)
            .collect::<Vec<_>>()
    };

    let expected = expected_catalog(client, migrations).await?;
    Ok(CheckReport {
        schema,
        differences: compare(&expected, &live),
        pending_pre: pending(Phase::Pre),
        pending_post: pending(Phase::Post),
        version: recorded.iter().map(|r| r.version.clone()).max(),
    })
}

/// Applies `migrations` into a scratch schema, reads its catalog, and rolls everything back.
async fn expected_catalog(client: &Client, migrations: &[Migration]) -> Result<Catalog> {
    client.batch_execute("BEGIN").await?;
    let result = async {
        client
            .batch_execute(concat!(
                "CREATE SCHEMA postpone_check_scratch;\n",
                "SET LOCAL search_path TO postpone_check_scratch;\n"
            ))
            .await?;
        client.batch_execute(MIGRATIONS_TABLE_SQL).await?;
        for migration in migrations {
            client
                .batch_execute(migration.sql)
                .await
                .map_err(|source| Error::MigrationFailed {
                    migration: migration.label(),
                    source: source.into(),
                })?;
        }
        read_catalog_of(client, SCRATCH_SCHEMA).await
    }
    .await;
    // Always roll back: the scratch schema must never outlive the check.
    let rollback = client.batch_execute("ROLLBACK").await;
    let catalog = result?;
    rollback?;
    Ok(catalog)
}

/// Every key present on one side only, or with another definition, in key order.
pub(crate) fn compare(expected: &Catalog, found: &Catalog) -> Vec<Difference> {
    let mut differences = Vec::new();
    for (object, want) in expected {
        match found.get(object) {
            None => differences.push(Difference {
                kind: DifferenceKind::Missing,
                object: object.clone(),
                expected: Some(want.clone()),
                found: None,
            }),
            Some(have) if have != want => differences.push(Difference {
                kind: DifferenceKind::Different,
                object: object.clone(),
                expected: Some(want.clone()),
                found: Some(have.clone()),
            }),
            Some(_) => {}
        }
    }
    for (object, have) in found {
        if !expected.contains_key(object) {
            differences.push(Difference {
                kind: DifferenceKind::Unexpected,
                object: object.clone(),
                expected: None,
                found: Some(have.clone()),
            });
        }
    }
    differences.sort_by(|a, b| a.object.cmp(&b.object).then(a.kind.cmp(&b.kind)));
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_lists_missing_different_unexpected() {
        let expected: Catalog = [("index a", "x"), ("index b", "y")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let found: Catalog = [("index b", "z"), ("index c", "w")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let lines: Vec<String> = compare(&expected, &found)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "missing: index a: x",
                "different: index b: expected `y`, found `z`",
                "unexpected: index c: w"
            ]
        );
    }
}
