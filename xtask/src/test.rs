//! `cargo xtask test`, the one command that runs every test, and `cargo xtask lint`.

use anyhow::Context;

use crate::claude::{self, CLAUDE_BIN_ENV};
use crate::{cargo, run_command};

/// The variable that turns "the real CLI is absent" from a skip into a test failure.
const REQUIRE_CLAUDE_ENV: &str = "BATON_REQUIRE_CLAUDE";

#[derive(clap::Args)]
pub struct TestArgs {
    /// Run without installing the Claude Code CLI; tests that need it skip and say so.
    #[arg(long)]
    no_claude: bool,
    /// Extra arguments for `cargo nextest run`, such as a filter.
    #[arg(last = true)]
    nextest_args: Vec<String>,
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    let claude = if args.no_claude {
        None
    } else {
        Some(claude::install(false).context("the tests need the pinned Claude Code CLI")?)
    };
    // Doctests first (nextest does not run them), so that nextest's summary of the whole
    // suite is the last thing the run prints.
    run_command(cargo().args(["test", "--workspace", "--doc", "--quiet"]))?;
    let mut nextest = cargo();
    nextest
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(&args.nextest_args)
        .env("INSTA_UPDATE", "no");
    if let Some(binary) = &claude {
        nextest
            .env(CLAUDE_BIN_ENV, binary)
            .env(REQUIRE_CLAUDE_ENV, "1");
    }
    run_command(&mut nextest)
}

pub fn lint() -> anyhow::Result<()> {
    run_command(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_command(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}
