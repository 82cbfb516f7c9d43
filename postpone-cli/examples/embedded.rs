//! A user's own binary embedding the `postpone` CLI with one Rust task, `tests.add`.
//!
//! Run it with: `cargo run -p postpone-cli --example embedded -- defer tests.add '{"a": 1, "b": 2}'`

use std::process::ExitCode;

use postpone::task::{JobContext, TaskError};
use postpone::{App, Task};
use serde::{Deserialize, Serialize};

/// Adds two numbers.
#[derive(Debug, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

impl Task for Add {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.add".into()
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        println!("{} + {} = {}", self.a, self.b, self.a + self.b);
        // Stored with the job: `postpone jobs result ID` prints it.
        ctx.set_result(&(self.a + self.b))
    }
}

fn main() -> ExitCode {
    postpone_cli::run(App::builder().task::<Add>())
}
