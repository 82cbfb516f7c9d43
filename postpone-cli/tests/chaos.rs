//! `postpone chaos --quick --json`, as CI runs it: worker processes killed, the server
//! restarted, backends terminated and workers signalled under a drain, each on a private
//! cluster the suite starts; then every job counted. Nothing may be lost or stuck, and a
//! job may run twice only after an attempt that did not succeed (a kill, a forced stop),
//! recorded by the worker with its reason.
//!
//! Run with: `cargo test -p postpone-cli --test chaos` (needs the PostgreSQL binaries to
//! start private clusters; without them the test fails: it never skips).

mod common;

use std::path::Path;

use serde_json::Value;

#[test]
fn quick_chaos_loses_nothing_and_strands_nothing() {
    // The suite starts its own clusters; the URL only satisfies the environment.
    let url = common::server().url("postgres");
    let mut command = common::command(
        Path::new(env!("CARGO_BIN_EXE_postpone")),
        &url,
        &["--json", "chaos", "--quick"],
    );
    let output = command.output().expect("postpone chaos runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {stdout}\n{stderr}"));
    let rows = report["rows"].as_array().expect("a rows array");
    let scenarios: Vec<&str> = rows
        .iter()
        .map(|r| r["scenario"].as_str().expect("a scenario name"))
        .collect();
    assert_eq!(
        scenarios,
        [
            "kill -9 x3",
            "restart x1",
            "pg_terminate_backend x2",
            "SIGTERM (2-s jobs)"
        ],
        "{report:#}"
    );
    for row in rows {
        let n = |key: &str| {
            row[key]
                .as_i64()
                .unwrap_or_else(|| panic!("{key} in {row}"))
        };
        assert_eq!(n("lost"), 0, "{row}");
        assert_eq!(n("stuck"), 0, "{row}");
        // A second run only after a recorded failed attempt (a kill, a forced stop).
        assert_eq!(n("run_twice_unexplained"), 0, "{row}");
        assert!(n("jobs") > 0, "{row}");
        assert!(row["recover_ms"].as_u64().is_some(), "{row}");
        assert_eq!(row["ok"], true, "{row}");
    }
    // The kills hit running jobs, and the forced stop running ones: the suite tested
    // what it claims to.
    assert!(rows[0]["running_at_kill"].as_i64() > Some(0), "{report:#}");
    assert!(rows[3]["running_at_kill"].as_i64() > Some(0), "{report:#}");
    assert!(
        rows[3]["notes"]
            .as_str()
            .is_some_and(|n| n.contains("SIGTERM: exit 0") && n.contains("second SIGTERM: exit 0")),
        "{report:#}"
    );
    assert!(output.status.success(), "{}\n{stderr}", output.status);
}
