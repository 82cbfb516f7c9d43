//! The `postpone` binary: the CLI with no Rust task of its own (it defers by name with
//! `--unknown`). Embed [`postpone_cli::run`] in your own binary to add your tasks.

use std::process::ExitCode;

fn main() -> ExitCode {
    postpone_cli::run(postpone::App::builder())
}
