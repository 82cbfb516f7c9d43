//! `postpone schema apply | read | check | migrations-path` (Procrastinate's
//! `procrastinate schema --apply | --read | --migrations-path`, plus `check`).

use std::process::ExitCode;

use postpone::schema::{self, ApplyScope, CheckReport};
use serde_json::json;

use crate::Context;
use crate::flags::{MigrationsPathFlags, SchemaApplyFlags, SchemaCommand};
use crate::output::{self, Format};

pub(crate) async fn run(command: SchemaCommand, context: Context) -> anyhow::Result<ExitCode> {
    match command {
        SchemaCommand::Apply(flags) => apply(flags, context).await,
        SchemaCommand::Read => {
            output::print(&schema::schema_sql())?;
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::Check => check(context).await,
        SchemaCommand::MigrationsPath(flags) => migrations_path(&flags, context.format()),
    }
}

async fn apply(flags: SchemaApplyFlags, context: Context) -> anyhow::Result<ExitCode> {
    let scope = match (flags.pre, flags.post) {
        (true, _) => ApplyScope::Pre,
        (false, true) => ApplyScope::Post,
        (false, false) => ApplyScope::All,
    };
    let (app, format) = context.app()?;
    let mut client = super::connect(&app).await?;
    let report = schema::apply(&mut client, scope).await?;
    if format.is_json() {
        output::print_json(&json!({
            "applied": report.applied,
            "adopted": report.adopted,
            "already_present": report.already_present,
            "pending": report.pending,
        }))?;
    } else if report.applied.is_empty() && report.adopted.is_empty() {
        let present = report.already_present.len();
        let mut text = format!(
            "schema already up to date ({present} migration{} present)\n",
            if present == 1 { "" } else { "s" }
        );
        // The library's report says what is still pending outside the scope.
        for line in report
            .to_string()
            .lines()
            .filter(|l| l.starts_with("pending"))
        {
            text.push_str(line);
            text.push('\n');
        }
        output::print(&text)?;
    } else {
        output::print(&report.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    let client = super::connect(&app).await?;
    let report = schema::check(&client).await?;
    if format.is_json() {
        output::print_json(&check_json(&report))?;
    } else {
        output::print(&report.to_string())?;
    }
    Ok(if report.is_up_to_date() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check_json(report: &CheckReport) -> serde_json::Value {
    let differences: Vec<serde_json::Value> = report
        .differences
        .iter()
        .map(|d| {
            json!({
                "kind": format!("{:?}", d.kind).to_ascii_lowercase(),
                "object": d.object,
                "expected": d.expected,
                "found": d.found,
            })
        })
        .collect();
    json!({
        "schema": report.schema,
        "up_to_date": report.is_up_to_date(),
        "version": report.version,
        "differences": differences,
        "pending_pre": report.pending_pre,
        "pending_post": report.pending_post,
    })
}

fn migrations_path(flags: &MigrationsPathFlags, format: Format) -> anyhow::Result<ExitCode> {
    let Some(dir) = &flags.write else {
        if format.is_json() {
            output::print_json(&json!({ "path": schema::MIGRATIONS_DIR }))?;
        } else {
            output::print(&format!("{}\n", schema::MIGRATIONS_DIR))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let paths = schema::write_migrations(dir).map_err(|error| {
        anyhow::anyhow!(
            "cannot write the migration files to {}: {error}",
            dir.display()
        )
    })?;
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if format.is_json() {
        output::print_json(&paths)?;
    } else {
        let mut text = String::new();
        for path in &paths {
            text.push_str(path);
            text.push('\n');
        }
        output::print(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}
