//! The `baton` command line: runs software tasks through a coding agent and keeps an exact
//! ledger of every agent session.
//!
//! `main` is thin: parse the flags ([`flags`]), read the environment once ([`settings::Env`]),
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

fn main() -> ExitCode {
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
