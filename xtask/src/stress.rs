//! `cargo xtask stress-test`: builds the stress harness of the `tests` package in release mode,
//! with the `mock-claude` it runs, then runs it with the given arguments.
//!
//! The harness is a binary of the `tests` package, so that xtask does not link the product
//! crates. It finds `mock-claude` beside itself; with `--agent claude` the pinned Claude Code
//! CLI is installed first when absent and passed on.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;

use crate::claude::{self, CLAUDE_BIN_ENV};
use crate::{cargo, run_command};

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct StressArgs {
    /// The harness's arguments: [--tasks N] [--concurrency C] [--iterations K]
    /// [--agent mock|mock-claude|claude] [--policy task|fresh|milestone] [--seed S]; `--help`
    /// lists them all.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: &StressArgs) -> anyhow::Result<()> {
    run_command(cargo().args([
        "build",
        "--release",
        "--package",
        "tests",
        "--bin",
        "stress-test",
        "--bin",
        "contract-mock-claude",
    ]))?;
    let mut harness = cargo();
    harness
        .args(["run", "--quiet", "--release", "--package", "tests"])
        .args(["--bin", "stress-test", "--"])
        .args(&args.args);
    if wants_real_claude(&args.args) {
        let binary =
            claude::install(false).context("--agent claude needs the pinned Claude Code CLI")?;
        harness.env(CLAUDE_BIN_ENV, binary);
    }
    let started = Instant::now();
    let result = run_harness(&mut harness);
    eprintln!(
        "xtask: stress-test took {:.1} s (without the build)",
        started.elapsed().as_secs_f64()
    );
    result
}

fn run_harness(command: &mut Command) -> anyhow::Result<()> {
    run_command(command).context("the stress test failed: see the violations printed above")
}

/// Whether the arguments ask for the real CLI (`--agent claude` or `--agent=claude`).
fn wants_real_claude(args: &[String]) -> bool {
    args.iter().any(|arg| arg == "--agent=claude")
        || args
            .windows(2)
            .any(|pair| pair[0] == "--agent" && pair[1] == "claude")
}
