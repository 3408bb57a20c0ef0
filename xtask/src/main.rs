//! Project automation, run as `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! Every set-up step the README, the tests and CI rely on lives here, so that there is one
//! way to do each thing.

mod bench;
mod chaos;
mod claude;
mod postgres;
mod stress;
mod test;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Baton's project automation.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Installs the pinned Claude Code CLI and PostgreSQL when they are absent, starts a
    /// throw-away PostgreSQL server, then runs every test.
    Test(test::TestArgs),
    /// Checks formatting and runs clippy with warnings denied, as CI does.
    Lint,
    /// Installs the pinned Claude Code CLI into `.tools/claude-code` (git-ignored).
    InstallClaude {
        /// Reinstall even when the pinned version is already there.
        #[arg(long)]
        force: bool,
    },
    /// Starts a throw-away PostgreSQL server, prints its URL, and keeps it until Ctrl-C.
    Pg,
    /// Runs the benchmarks and prints their figures.
    Bench,
    /// Runs scripted tasks through the orchestrator and audits the ledger they leave.
    StressTest(stress::StressArgs),
    /// Runs baton through faults, bad input and leak attempts, and prints a table of results.
    Chaos(chaos::ChaosArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Cmd::Test(test_args) => test::run(&test_args),
        Cmd::Lint => test::lint(),
        Cmd::InstallClaude { force } => claude::install(force).map(|path| {
            println!("claude {}: {}", claude::CLAUDE_CODE_VERSION, path.display());
        }),
        Cmd::Pg => postgres::serve(),
        Cmd::Bench => bench::run(),
        Cmd::StressTest(stress_args) => stress::run(&stress_args),
        Cmd::Chaos(chaos_args) => chaos::run(&chaos_args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: xtask's manifest dir sits inside the workspace root")
        .to_path_buf()
}

/// A `cargo` command run from the workspace root, with the cargo that runs us.
fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// Runs `command`, echoing it first, and fails when it does.
fn run_command(command: &mut Command) -> anyhow::Result<()> {
    run_command_hiding(command, &[])
}

/// [`run_command`], with each of `secrets` shown as `***` where the echo would show it.
fn run_command_hiding(command: &mut Command, secrets: &[&str]) -> anyhow::Result<()> {
    let mut echo = format!("{command:?}");
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        echo = echo.replace(secret, "***");
    }
    eprintln!("xtask: running {echo}");
    let status = command
        .status()
        .with_context(|| format!("failed to start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{:?} failed with {status}", command.get_program());
    }
    Ok(())
}
