//! The `baton` command line: runs software tasks through a coding agent and keeps an exact
//! ledger of every agent session.
//!
//! The binary (`src/main.rs`) only calls [`main`]; the library exists so that other packages
//! (the workspace's `tests` package, for the fault-injection suite) can build their own copy
//! of the exact same program. Nothing else is public.
//!
//! [`main`] is thin: parse the flags ([`flags`]), read the environment once ([`settings::Env`]),
//! run the command ([`commands`]), and map how it ended to an exit code ([`error`]).

mod agents;
mod commands;
mod config;
mod error;
mod flags;
mod human;
mod output;
mod progress;
mod settings;
mod signals;
mod views;

use std::process::ExitCode;

use clap::Parser;

/// Runs `baton` with the process's arguments and environment, and returns its exit code.
pub fn main() -> ExitCode {
    let cli = flags::Cli::parse();
    let result = settings::Env::capture().and_then(|env| commands::dispatch(cli, env));
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            output::note(&error::render(&error));
            ExitCode::from(error::classify(&error).kind.code())
        }
    }
}
