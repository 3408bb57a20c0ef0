//! `cargo xtask stress-test`: builds the stress harness of the `tests` package in release mode,
//! with the `mock-claude` it runs, then runs it with the given arguments.
//!
//! The harness is a binary of the `tests` package, so that xtask does not link the product
//! crates. It finds `mock-claude` beside itself; with `--agent claude` the pinned Claude Code
//! CLI is installed first when absent and passed on. With `--db postgres://…` the ledger is a
//! new database on that server (see the harness's `--help`); the echoed command line shows
//! the URL's password as `***`.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;

use crate::claude::{self, CLAUDE_BIN_ENV};
use crate::{cargo, run_command, run_command_hiding};

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct StressArgs {
    /// The harness's arguments: [--tasks N] [--concurrency C] [--iterations K]
    /// [--agent mock|mock-claude|claude] [--policy task|fresh|milestone] [--seed S]
    /// [--db postgres://…]; `--help` lists them all.
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
    let secrets: Vec<&str> = db_urls(&args.args).filter_map(password_in).collect();
    let result = run_harness(&mut harness, &secrets);
    eprintln!(
        "xtask: stress-test took {:.1} s (without the build)",
        started.elapsed().as_secs_f64()
    );
    result
}

fn run_harness(command: &mut Command, secrets: &[&str]) -> anyhow::Result<()> {
    run_command_hiding(command, secrets)
        .context("the stress test failed: see the violations printed above")
}

/// The values of `--db URL` and `--db=URL` among the arguments.
fn db_urls(args: &[String]) -> impl Iterator<Item = &str> {
    let separate = args
        .windows(2)
        .filter(|pair| pair[0] == "--db")
        .map(|pair| pair[1].as_str());
    let joined = args.iter().filter_map(|arg| arg.strip_prefix("--db="));
    separate.chain(joined)
}

/// The password of a `postgres://user:password@host/…` URL, or of its `password=` query
/// parameter, as it is written in the URL.
fn password_in(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_query = query
        .split('&')
        .find_map(|parameter| parameter.strip_prefix("password="));
    let in_authority = || {
        let authority = before_query.split('/').next()?;
        let (user_info, _host) = authority.rsplit_once('@')?;
        Some(user_info.split_once(':')?.1)
    };
    in_query
        .or_else(in_authority)
        .filter(|password| !password.is_empty())
}

/// Whether the arguments ask for the real CLI (`--agent claude` or `--agent=claude`).
fn wants_real_claude(args: &[String]) -> bool {
    args.iter().any(|arg| arg == "--agent=claude")
        || args
            .windows(2)
            .any(|pair| pair[0] == "--agent" && pair[1] == "claude")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_a_db_url_is_found_to_be_hidden() {
        let args: Vec<String> = [
            "--tasks",
            "5",
            "--db",
            "postgres://baton:s3cret@127.0.0.1:5/db",
        ]
        .map(String::from)
        .to_vec();
        let passwords: Vec<&str> = db_urls(&args).filter_map(password_in).collect();
        assert_eq!(passwords, ["s3cret"]);
        let joined = [String::from("--db=postgresql://u:p%40ss@h/d")];
        assert_eq!(
            db_urls(&joined).filter_map(password_in).collect::<Vec<_>>(),
            ["p%40ss"]
        );
        assert_eq!(password_in("postgres://baton@127.0.0.1/db"), None);
        assert_eq!(
            password_in("postgres://baton@h/db?sslmode=require&password=q%26w"),
            Some("q%26w")
        );
    }
}
