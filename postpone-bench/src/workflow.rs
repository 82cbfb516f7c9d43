//! WF: a 3-level workflow of `nodes` jobs (docs/workflows.md): 1% roots, 9% middle nodes
//! each after one root, 90% leaves each after two middle nodes. Times its submission (one
//! statement) and its run by one in-process worker (W3's concurrency) until every node has
//! succeeded; checks that each node ran once.

use std::time::{Duration, Instant};

use anyhow::bail;
use postpone::connect::ConnectConfig;
use postpone::worker::WorkerConfig;
use postpone::workflow::{NodeStatus, Workflow};

use crate::workloads::{app, rate};
use crate::{BenchNoop, Figure, STALL, sql};

pub(crate) async fn workflow(
    connect: &ConnectConfig,
    nodes: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Figure>> {
    let app = app(connect, None)?;
    let roots = (nodes / 100).max(1);
    let middle = (nodes * 9 / 100).max(1);
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    let mut workflow = Workflow::new("bench");
    for (i, name) in names.iter().enumerate() {
        let parents: Vec<&str> = if i < roots {
            Vec::new()
        } else if i < roots + middle {
            vec![names[i % roots].as_str()]
        } else {
            let m = i % middle;
            let other = (i / middle) % middle;
            let mut parents = vec![names[roots + m].as_str()];
            if other != m {
                parents.push(names[roots + other].as_str());
            }
            parents
        };
        workflow = workflow.node(
            name.as_str(),
            app.configure(BenchNoop { i: i as u64 }),
            &parents,
        );
    }
    let started = Instant::now();
    let id = app.defer_workflow(workflow).await?;
    let submitted = started.elapsed();

    let client = connect.connect().await?;
    let handle = app
        .start_worker(WorkerConfig {
            concurrency,
            install_signal_handlers: false,
            ..WorkerConfig::default()
        })
        .await?;
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let done: i64 = client
            .query_one(sql::COUNT_WORKFLOW_SUCCEEDED, &[&id])
            .await?
            .get(0);
        if done == nodes as i64 {
            break;
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > STALL {
            bail!("WF: stuck at {done} of {nodes} nodes succeeded");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ran = started.elapsed();
    handle.stop();
    handle.join().await?;
    let status = app
        .workflow_status(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("WF: workflow {id} is gone"))?;
    let jobs: i64 = client.query_one(sql::COUNT_JOBS, &[]).await?.get(0);
    if status.count(NodeStatus::Succeeded) != nodes as i64 || jobs != nodes as i64 {
        bail!("WF: {jobs} jobs for {nodes} nodes: {:?}", status.counts);
    }
    Ok(vec![
        Figure::new(
            format!("WF_submit_{nodes}_nodes"),
            rate(nodes, submitted),
            "jobs/s",
        ),
        Figure::new(
            format!("WF_run_3_levels_{nodes}_jobs_c{concurrency}"),
            rate(nodes, ran),
            "jobs/s",
        ),
    ])
}
