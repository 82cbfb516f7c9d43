//! `postpone healthchecks` (Procrastinate's `procrastinate healthchecks`): the database
//! answers, and its schema is ready for this build (the same check a worker runs at start).

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;

use crate::Context;
use crate::output;

pub(crate) async fn run(context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    let target = app
        .connect_config()
        .map(postpone::connect::ConnectConfig::target)
        .unwrap_or_default();
    let client = super::connect(&app).await?;
    client
        .simple_query("SELECT 1")
        .await
        .with_context(|| format!("connected to {target} but the server does not answer"))?;
    if !format.is_json() {
        output::print(&format!("Database connection: OK ({target})\n"))?;
    }
    let version = postpone::schema::ensure_ready(&client).await?;
    if format.is_json() {
        output::print_json(&json!({
            "database": { "ok": true, "target": target },
            "schema": { "ok": true, "version": version },
        }))?;
    } else {
        output::print(&format!("Schema: OK (migration {version})\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}
