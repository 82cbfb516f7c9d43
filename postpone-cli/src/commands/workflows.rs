//! Workflows on the command line (docs/workflows.md): `workflows list` (the newest, with
//! their nodes counted per status) and `workflows show ID` (each node with its status,
//! parents and job). The shell's `list_workflows` and `show_workflow` print the same.

use std::process::ExitCode;

use anyhow::bail;
use postpone::App;
use postpone::workflow::{WorkflowRow, summary};
use serde_json::json;

use crate::Context;
use crate::flags::WorkflowsCommand;
use crate::output::{self, Format, Table, or_dash};

pub(crate) async fn run(command: WorkflowsCommand, context: Context) -> anyhow::Result<ExitCode> {
    let (app, format) = context.app()?;
    match command {
        WorkflowsCommand::List(flags) => print_list(&app, flags.limit, format).await?,
        WorkflowsCommand::Show(flags) => print_show(&app, flags.id, format).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the newest `limit` workflows.
pub(crate) async fn print_list(app: &App, limit: i64, format: Format) -> anyhow::Result<()> {
    if limit < 0 {
        bail!("--limit {limit} is negative: give a number of workflows >= 0");
    }
    let workflows = app.list_workflows(limit).await?;
    if format.is_json() {
        return output::print_json(&workflows.iter().map(list_json).collect::<Vec<_>>());
    }
    let mut table = Table::new(
        &["id", "name", "on_parent_failure", "created_at", "nodes"],
        &["id"],
    );
    for workflow in &workflows {
        table.push(vec![
            workflow.id.to_string(),
            workflow.name.clone(),
            workflow.on_parent_failure.to_string(),
            workflow.created_at.to_rfc3339(),
            summary(&workflow.counts),
        ]);
    }
    if table.is_empty() {
        output::print("no workflow\n")
    } else {
        output::print(&table.render())
    }
}

fn list_json(workflow: &WorkflowRow) -> serde_json::Value {
    json!({
        "id": workflow.id,
        "name": workflow.name,
        "on_parent_failure": workflow.on_parent_failure,
        "created_at": workflow.created_at,
        "finished": workflow.is_finished(),
        "counts": workflow.counts,
    })
}

/// Prints one workflow with its nodes; an error line when there is no such workflow.
pub(crate) async fn print_show(app: &App, id: i64, format: Format) -> anyhow::Result<()> {
    let Some(workflow) = app.workflow_status(id).await? else {
        bail!("no workflow {id}: list them with `postpone workflows list`");
    };
    if format.is_json() {
        let mut value = serde_json::to_value(&workflow)?;
        value["finished"] = json!(workflow.is_finished());
        return output::print_json(&value);
    }
    let mut text = format!(
        "workflow {} {:?}: {} ({}), on parent failure: {}, created {}\n",
        workflow.id,
        workflow.name,
        if workflow.is_finished() {
            "finished"
        } else {
            "running"
        },
        summary(&workflow.counts),
        workflow.on_parent_failure,
        workflow.created_at.to_rfc3339(),
    );
    let mut table = Table::new(&["node", "status", "job", "task", "parents"], &["job"]);
    for node in &workflow.nodes {
        table.push(vec![
            node.name.clone(),
            node.status.to_string(),
            or_dash(node.job_id),
            node.task_name.clone(),
            if node.parents.is_empty() {
                "-".to_owned()
            } else {
                node.parents.join(",")
            },
        ]);
    }
    text.push_str(&table.render());
    output::print(&text)
}
