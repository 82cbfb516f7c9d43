//! `postpone bench --quick --json` runs every workload against the test server and reports
//! every figure. Nothing here judges speed: the figures only have to exist and make sense.
//!
//! Run with: `cargo test -p postpone-cli --test bench` (a PostgreSQL server is found or
//! started by `postpone-testkit`; without one, the test fails: it never skips).

mod common;

use std::path::Path;

use serde_json::Value;

/// `postpone bench ARGS` against the test server (the bench makes and drops its own
/// databases there), in a clean environment.
fn bench(args: &[&str]) -> std::process::Output {
    let url = common::server().url("postgres");
    let mut command = common::command(Path::new(env!("CARGO_BIN_EXE_postpone")), &url, &["bench"]);
    command.args(args);
    command.output().expect("postpone bench runs")
}

#[test]
fn quick_bench_reports_every_figure() {
    let output = bench(&["--quick", "--json"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "postpone bench failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {stdout}\n{stderr}"));

    assert!(report["postgresql"]["version"].is_string(), "{report:#}");
    assert!(report["cpus"].as_u64().is_some_and(|n| n > 0), "{report:#}");
    assert_eq!(report["params"]["quick"], true);
    let figures = report["figures"].as_array().expect("a figures array");
    let figure = |name: &str| {
        figures
            .iter()
            .find(|f| f["workload"] == name)
            .unwrap_or_else(|| panic!("no figure {name} in {report:#}"))
    };
    let expected = [
        ("W1_enqueue_single", "jobs/s"),
        ("W1S_defer_single", "jobs/s"),
        ("W2_enqueue_batch", "jobs/s"),
        ("W2_deferred_events", "events"),
        ("W2S_defer_batch", "jobs/s"),
        ("W2S_defer_batch_floor", "jobs/s"),
        ("W2S_defer_batch_floor_deferred_events", "events"),
        ("W2S_defer_batch_no_notify", "jobs/s"),
        ("W2S_defer_batch_no_triggers", "jobs/s"),
        ("W3_drain_1x10", "jobs/s"),
        ("W3S_drain_b10", "jobs/s"),
        ("W3S_drain_b100", "jobs/s"),
        ("W3S_drain_b10_no_triggers", "jobs/s"),
        ("W3S_drain_b10_x2", "jobs/s"),
        ("W3S_drain_b10_async", "jobs/s"),
        ("W3_drain_1x10_worker_cpu_per_job", "us/job"),
        ("W3_drain_2x10", "jobs/s"),
        ("W3_drain_2x10_worker_cpu_per_job", "us/job"),
        ("W3_drain_1x10_telemetry", "jobs/s"),
        ("W3_drain_1x10_telemetry_otlp_bytes_per_job", "B/job"),
        ("W3_drain_2x10_telemetry", "jobs/s"),
        ("W3_drain_1x10_large", "jobs/s"),
        ("R1_drain_1x10_results", "jobs/s"),
        ("R1_drain_1x10_results_worker_cpu_per_job", "us/job"),
        ("WF_submit_1000_nodes", "jobs/s"),
        ("WF_run_3_levels_1000_jobs_c10", "jobs/s"),
        ("W3_large_ratio", "ratio"),
        ("W4_defer_to_start_p50", "ms"),
        ("W4_defer_to_start_p99", "ms"),
        ("W4_pickup_p50", "ms"),
        ("W4_pickup_p99", "ms"),
        ("W4S_claim_p50", "ms"),
        ("W4S_claim_p99", "ms"),
        ("W4S_claim_async_p50", "ms"),
        ("W4S_write_p50", "ms"),
        ("W4S_write_async_p99", "ms"),
        ("W4S_claimed", "jobs"),
        ("memory_drain_1x100", "jobs/s"),
        ("memory_peak_rss_c100", "MB"),
        ("idle_worker_cpu", "ms"),
        ("FLEET_8x10", "jobs/s"),
        ("FLEET_8x10_sessions_per_process", "sessions"),
        ("FLEET_8x10_idle_cpu_per_process", "ms/s"),
        ("FLEET_8x10_pgbouncer", "jobs/s"),
        ("FLEET_8x10_pgbouncer_sessions_per_process", "sessions"),
        ("FLEET_8x10_pgbouncer_idle_cpu_per_process", "ms/s"),
        ("FLOW_drain_1x10_per_key_limit_2", "jobs/s"),
        ("FLOW_drain_2x10_per_key_limit_2", "jobs/s"),
        ("RATE_1x10_limit_100_per_s_over_5s_starts", "jobs/s"),
        ("RATE_1x10_limit_100_per_s_over_5s_busiest_second", "jobs"),
        ("RATE_4x10_limit_100_per_s_over_5s_starts", "jobs/s"),
        ("RATE_4x10_limit_100_per_s_over_5s_busiest_second", "jobs"),
    ];
    for (name, unit) in expected {
        let f = figure(name);
        assert_eq!(f["unit"], unit, "{f}");
        let value = f["value"].as_f64().unwrap_or(f64::NAN);
        let runs = f["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{f}");
        if name.contains("idle") {
            // An idle worker should use no CPU at all: zero is the good value.
            assert!(value >= 0.0, "{f}");
        } else {
            assert!(value > 0.0 && value.is_finite(), "{f}");
        }
    }
    // Every figure, optional ones included, is a finite number of the right sign; a
    // share of time (the triggers' in a ceiling) or a cost (telemetry's) is a difference of
    // two timings, so it may come out below zero on a noisy machine.
    for f in figures {
        let value = f["value"].as_f64().unwrap_or(f64::NAN);
        let share = f["workload"].as_str().is_some_and(|w| {
            w.ends_with("_share") || w.ends_with("_deviation") || w.ends_with("_cost")
        });
        assert!(value.is_finite() && (share || value >= 0.0), "{f}");
    }
    for share in [
        "W2S_defer_batch_trigger_share",
        "W2S_defer_batch_notify_share",
        "W3S_drain_b10_trigger_share",
        "W3S_drain_b10_commit_wait_share",
        "W3_drain_1x10_telemetry_cost",
        "W3_drain_2x10_telemetry_cost",
    ] {
        assert_eq!(figure(share)["unit"], "ratio");
    }
    // The ceilings did their work: each counted figure has the value it must have.
    for f in figures.iter().filter(|f| !f["expected"].is_null()) {
        assert_eq!(f["value"], f["expected"], "{f}");
    }

    // The rate limit held: no second of RATE saw more than 100 starts.
    for processes in [1, 4] {
        let busiest = figure(&format!(
            "RATE_{processes}x10_limit_100_per_s_over_5s_busiest_second"
        ));
        assert!(
            busiest["value"].as_f64().is_some_and(|n| n <= 100.0),
            "{busiest}"
        );
        assert_eq!(
            figure(&format!(
                "RATE_{processes}x10_limit_100_per_s_over_5s_deviation"
            ))["unit"],
            "%"
        );
    }

    // Through PgBouncer the fleet holds no more server sessions than its pool (the test
    // kit's default_pool_size, 10), where straight to the server each process holds its
    // own, LISTEN included.
    let sessions = |name: &str| figure(name)["value"].as_f64().unwrap_or(f64::NAN) * 8.0;
    assert!(
        sessions("FLEET_8x10_pgbouncer_sessions_per_process") <= 10.0 + 1e-9,
        "{report:#}"
    );
    assert!(
        sessions("FLEET_8x10_sessions_per_process") >= 8.0,
        "{report:#}"
    );

    // The correctness check: every job of W2 has its 'deferred' event.
    let events = figure("W2_deferred_events");
    assert_eq!(events["value"].as_f64(), Some(5000.0), "{events}");
    assert_eq!(events["expected"].as_f64(), Some(5000.0), "{events}");
    assert_eq!(
        report["params"]["w2_jobs"].as_u64(),
        Some(5000),
        "{report:#}"
    );
}

/// The server-side ceilings, alone and at tiny sizes, in the text output: every
/// `workload value unit` line parses, and the counts show the work was done (rows inserted,
/// events written by the triggers, jobs claimed and finished).
#[test]
fn ceilings_do_the_work_and_report_it() {
    let output = bench(&[
        "--only",
        "w1s,W2S,W3S",
        "--w1-jobs",
        "30",
        "--w2-jobs",
        "250",
        "--w2-batch",
        "100",
        "--w3-jobs",
        "120",
        "--w3s-batches",
        "10,50",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "postpone bench failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    // The figure lines: after the header's blank line, up to the table's.
    let block: Vec<&str> = stdout
        .split("\n\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no figure lines in {stdout}"))
        .lines()
        .collect();
    let mut figures = std::collections::BTreeMap::new();
    for line in &block {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, value, unit] = fields[..] else {
            panic!("not a `workload value unit` line: {line:?}\n{stdout}");
        };
        let value: f64 = value
            .parse()
            .unwrap_or_else(|error| panic!("{line:?}: {error}"));
        assert!(value.is_finite(), "{line:?}");
        figures.insert(name.to_owned(), (value, unit.to_owned()));
    }
    let get = |name: &str| {
        figures
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no figure {name} in {stdout}"))
    };
    for rate in [
        "W1S_defer_single",
        "W2S_defer_batch",
        "W2S_defer_batch_floor",
        "W2S_defer_batch_no_notify",
        "W2S_defer_batch_no_triggers",
        "W3S_drain_b10",
        "W3S_drain_b50",
        "W3S_drain_b10_no_triggers",
        "W3S_drain_b10_x2",
        "W3S_drain_b10_async",
    ] {
        let (value, unit) = get(rate);
        assert_eq!(unit, "jobs/s", "{rate}");
        assert!(value > 0.0, "{rate} {value}");
    }
    for share in [
        "W2S_defer_batch_trigger_share",
        "W2S_defer_batch_notify_share",
        "W3S_drain_b10_trigger_share",
        "W3S_drain_b10_commit_wait_share",
    ] {
        assert_eq!(get(share).1, "ratio", "{share}");
    }
    let counts = [
        ("W1S_defer_single_jobs_inserted", 30.0, "jobs"),
        ("W1S_defer_single_deferred_events", 30.0, "events"),
        ("W2S_defer_batch_jobs_inserted", 250.0, "jobs"),
        ("W2S_defer_batch_deferred_events", 250.0, "events"),
        ("W2S_defer_batch_floor_jobs_inserted", 250.0, "jobs"),
        ("W2S_defer_batch_floor_deferred_events", 250.0, "events"),
        ("W2S_defer_batch_no_notify_jobs_inserted", 250.0, "jobs"),
        ("W2S_defer_batch_no_notify_deferred_events", 250.0, "events"),
        ("W2S_defer_batch_no_triggers_jobs_inserted", 250.0, "jobs"),
        ("W3S_drain_b10_succeeded", 120.0, "jobs"),
        ("W3S_drain_b10_events", 240.0, "events"),
        ("W3S_drain_b50_succeeded", 120.0, "jobs"),
        ("W3S_drain_b50_events", 240.0, "events"),
        ("W3S_drain_b10_no_triggers_succeeded", 120.0, "jobs"),
        ("W3S_drain_b10_x2_succeeded", 120.0, "jobs"),
        ("W3S_drain_b10_x2_events", 240.0, "events"),
        ("W3S_drain_b10_async_succeeded", 120.0, "jobs"),
        ("W3S_drain_b10_async_events", 240.0, "events"),
    ];
    for (name, expected, unit) in counts {
        assert_eq!(get(name), (expected, unit.to_owned()), "{name}");
    }
    // With the triggers disabled, no event is written: that case has no event count.
    assert!(!figures.contains_key("W2S_defer_batch_no_triggers_deferred_events"));
    // Only the ceilings ran.
    assert!(
        figures.keys().all(|name| name.starts_with("W1S_")
            || name.starts_with("W2S_")
            || name.starts_with("W3S_")),
        "{stdout}"
    );
}
