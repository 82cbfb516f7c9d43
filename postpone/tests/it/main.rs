//! Postpone's integration tests: one binary, one module per area.
//!
//! Every test gets its own database, cloned from a template (see `harness`), so tests run
//! in parallel. A test never passes without a database: when none can be found or started,
//! the harness panics with one line saying what to install.

mod defer;
mod flow;
mod harness;
mod harness_tests;
mod inspect;
mod interop;
mod interop_worker;
mod job_errors;
mod layers;
mod local_queue;
mod manager;
mod memory;
mod pauses;
mod periodic;
mod pgbouncer;
mod reliability;
mod results;
mod schema;
mod set_wise_events;
mod task_output;
mod telemetry;
mod timeouts;
mod worker;
mod workflows;
