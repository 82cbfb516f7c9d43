//! `postpone bench --quick --json` runs every workload against the test server and reports
//! every figure. Nothing here judges speed: the figures only have to exist and make sense.
//!
//! Run with: `cargo test -p postpone-cli --test bench` (a PostgreSQL server is found or
//! started by `postpone-testkit`; without one, the test fails: it never skips).

use std::process::Command;

use serde_json::Value;

fn server_url() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = runtime
        .block_on(postpone_testkit::server())
        .unwrap_or_else(|error| panic!("{error}"));
    // The bench makes (and drops) its own databases on this server.
    server.url("postgres")
}

#[test]
fn quick_bench_reports_every_figure() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postpone"));
    command.args(["bench", "--quick", "--json"]);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("POSTPONE_") || key.starts_with("PG") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env("DATABASE_URL", server_url());
    let output = command.output().expect("postpone bench runs");
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
        ("W2_enqueue_batch", "jobs/s"),
        ("W2_deferred_events", "events"),
        ("W3_drain_1x10", "jobs/s"),
        ("W3_drain_1x10_worker_cpu_per_job", "us/job"),
        ("W3_drain_2x10", "jobs/s"),
        ("W3_drain_2x10_worker_cpu_per_job", "us/job"),
        ("W3_drain_1x10_large", "jobs/s"),
        ("W3_large_ratio", "ratio"),
        ("W4_defer_to_start_p50", "ms"),
        ("W4_defer_to_start_p99", "ms"),
        ("W4_pickup_p50", "ms"),
        ("W4_pickup_p99", "ms"),
        ("memory_drain_1x100", "jobs/s"),
        ("memory_peak_rss_c100", "MB"),
        ("idle_worker_cpu", "ms"),
    ];
    for (name, unit) in expected {
        let f = figure(name);
        assert_eq!(f["unit"], unit, "{f}");
        let value = f["value"].as_f64().unwrap_or(f64::NAN);
        let runs = f["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{f}");
        if name == "idle_worker_cpu" {
            // An idle worker should use no CPU at all: zero is the good value.
            assert!(value >= 0.0, "{f}");
        } else {
            assert!(value > 0.0 && value.is_finite(), "{f}");
        }
    }
    // Every figure, optional ones included, is a finite number of the right sign.
    for f in figures {
        let value = f["value"].as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value >= 0.0, "{f}");
    }

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
