//! `cargo xtask bench`: runs every benchmark in release mode and lets each print its figures.
//!
//! The end-to-end benchmarks live in the `tests` package, so xtask links no product crate. Two
//! of them need programs they cannot build themselves: the real Claude Code CLI (installed
//! here when absent, as `cargo xtask test` does) and the `baton` binary (built here). When
//! either cannot be had, the benchmark says what it did not measure, and the others still
//! run. Benchmarks report; a slow machine never fails them.

use std::path::PathBuf;

use anyhow::bail;

use crate::claude::{self, CLAUDE_BIN_ENV};
use crate::{cargo, run_command, workspace_root};

/// The benchmarks, as (package, bench target), in the order they run.
const BENCHES: &[(&str, &str)] = &[
    // Store cycle throughput (open a session, record a call, close it), normal and full.
    ("session-store", "cycle"),
    // Creating and removing a task's worktree in a repository of 10,000 files.
    ("git", "worktree"),
    // mock-claude processes per second, without the orchestrator.
    ("agent-mock", "mock_claude"),
    // Orchestrated iterations per second with the in-process mock agent, and ledger commits
    // per iteration, under durability normal and full.
    ("tests", "orchestrated"),
    // Tasks per second and ledger round trips per iteration for 1, 2 and 4 runners on one
    // PostgreSQL ledger (a throw-away server), against 1 runner on SQLite.
    ("tests", "runners"),
    // Tasks per second through mock-claude subprocesses, at concurrency 1 and 4.
    ("tests", "mock_claude_tasks"),
    // One task through baton against `claude -p` directly, with the stand-in.
    ("tests", "claude_overhead"),
    // Peak RSS of `baton run` of 1,000 tasks with the mock agent.
    ("tests", "run_memory"),
];

/// The variable through which the benchmarks are told where `baton` is.
const BATON_BIN_ENV: &str = "BATON_BIN";

pub fn run() -> anyhow::Result<()> {
    let claude = claude::install(false)
        .inspect_err(|err| {
            eprintln!("xtask: warning: the benchmarks of the real CLI will not run: {err:#}");
        })
        .ok();
    let baton = build_baton()
        .inspect_err(|err| {
            eprintln!("xtask: warning: the benchmarks of the baton binary will not run: {err:#}");
        })
        .ok();
    let mut failed = Vec::new();
    for (package, bench) in BENCHES {
        let mut command = cargo();
        command.args(["bench", "--package", package, "--bench", bench]);
        if let Some(claude) = &claude {
            command.env(CLAUDE_BIN_ENV, claude);
        }
        if let Some(baton) = &baton {
            command.env(BATON_BIN_ENV, baton);
        }
        if let Err(err) = run_command(&mut command) {
            eprintln!("xtask: error: {err:#}");
            failed.push(format!("{package}/{bench}"));
        }
    }
    if !failed.is_empty() {
        bail!("these benchmarks failed to run: {}", failed.join(", "));
    }
    Ok(())
}

/// Builds `baton` in release mode and returns its path.
fn build_baton() -> anyhow::Result<PathBuf> {
    run_command(cargo().args(["build", "--release", "--package", "cli", "--bin", "baton"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let baton = target.join("release/baton");
    if !baton.is_file() {
        bail!("`baton` was built but is not at {}", baton.display());
    }
    Ok(baton)
}
