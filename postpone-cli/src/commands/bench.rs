//! `postpone bench` and its worker processes (`bench-worker`): the measuring is
//! postpone-bench's; this prints its report, as lines and a table or as one JSON document.

use std::fmt::Write as _;
use std::process::ExitCode;

use postpone_bench::{Bench, BenchFlags, BenchWorkerFlags};

use crate::Context;
use crate::output::{Table, print, print_json};

pub(crate) async fn run(flags: BenchFlags, context: Context) -> anyhow::Result<ExitCode> {
    let json = context.format().is_json();
    let bench = Bench::prepare(&flags, context.database_url.as_deref()).await?;
    // The header goes where the results go, unless they are one JSON document.
    if json {
        eprint!("{}", bench.header());
    } else {
        print(&bench.header())?;
    }
    let report = bench.run().await?;
    if json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::from("\n");
    for s in &report.figures {
        let _ = writeln!(text, "{} {} {}", s.workload, s.format(s.value), s.unit);
    }
    text.push('\n');
    let mut table = Table::new(&["workload", "median", "unit", "runs"], &["median"]);
    for s in &report.figures {
        let runs: Vec<String> = s.runs.iter().map(|v| s.format(*v)).collect();
        let mut unit = s.unit.to_owned();
        if let Some(expected) = s.expected {
            let _ = write!(unit, " (expected {expected})");
        }
        table.push(vec![
            s.workload.clone(),
            s.format(s.value),
            unit,
            runs.join(" / "),
        ]);
    }
    text.push_str(&table.render());
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn worker(flags: BenchWorkerFlags, context: Context) -> anyhow::Result<ExitCode> {
    postpone_bench::worker(flags, context.database_url.as_deref(), context.poll_only).await?;
    Ok(ExitCode::SUCCESS)
}
