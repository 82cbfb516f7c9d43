//! `postpone chaos` and its worker processes (`chaos-worker`): the suite is
//! postpone-bench's; this prints its rows as a table or one JSON document, and exits 1
//! when a scenario lost, stranded or ran twice a job it must not have.

use std::process::ExitCode;

use postpone_bench::{ChaosFlags, ChaosWorkerFlags};

use crate::Context;
use crate::output::{Table, or_dash, print, print_json};

pub(crate) async fn run(flags: ChaosFlags, context: Context) -> anyhow::Result<ExitCode> {
    let report = postpone_bench::chaos(&flags).await?;
    let code = if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if context.format().is_json() {
        print_json(&report)?;
        return Ok(code);
    }
    let mut table = Table::new(
        &[
            "scenario",
            "jobs",
            "lost",
            "run twice",
            "unexplained",
            "running at a kill",
            "stuck",
            "time to recover",
            "ok",
            "notes",
        ],
        &[
            "jobs",
            "lost",
            "run twice",
            "unexplained",
            "running at a kill",
            "stuck",
        ],
    );
    for row in &report.rows {
        table.push(vec![
            row.scenario.clone(),
            row.jobs.to_string(),
            row.lost.to_string(),
            row.run_twice.to_string(),
            row.run_twice_unexplained.to_string(),
            row.running_at_kill.to_string(),
            row.stuck.to_string(),
            or_dash(
                row.recover_ms
                    .map(|ms| format!("{:.2} s", ms as f64 / 1000.0)),
            ),
            if row.ok { "yes" } else { "NO" }.to_owned(),
            row.notes.clone(),
        ]);
    }
    print(&format!("{}\n\n{}", report.settings, table.render()))?;
    Ok(code)
}

pub(crate) async fn worker(flags: ChaosWorkerFlags, context: Context) -> anyhow::Result<ExitCode> {
    postpone_bench::chaos_worker(flags, context.database_url.as_deref()).await?;
    Ok(ExitCode::SUCCESS)
}
