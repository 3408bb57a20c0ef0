//! `cargo xtask chaos`: builds the fault-injection suite of the `tests` package (the `chaos`
//! program, with the `baton` and `mock-claude` it runs), then runs it and lets it print its
//! table. The same scenarios run as tests under `cargo xtask test` (`tests/it/chaos.rs`).
//!
//! A debug build, like the tests': it shares their build and the scenarios measure behaviour,
//! not speed.

use std::time::Instant;

use anyhow::Context;

use crate::{cargo, run_command};

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct ChaosArgs {
    /// The suite's arguments: scenario name filters, or `--list`; `--help` lists them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: &ChaosArgs) -> anyhow::Result<()> {
    run_command(cargo().args([
        "build",
        "--package",
        "tests",
        "--bin",
        "chaos",
        "--bin",
        "chaos-baton",
        "--bin",
        "contract-mock-claude",
    ]))?;
    let mut suite = cargo();
    suite
        .args([
            "run",
            "--quiet",
            "--package",
            "tests",
            "--bin",
            "chaos",
            "--",
        ])
        .args(&args.args);
    let started = Instant::now();
    let result = run_command(&mut suite)
        .context("a chaos scenario broke its promise: see the table and the failures above");
    eprintln!(
        "xtask: chaos took {:.1} s (without the build)",
        started.elapsed().as_secs_f64()
    );
    result
}
