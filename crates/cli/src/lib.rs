//! The `baton` command line: runs software tasks through a coding agent and keeps an exact
//! ledger of every agent session.
//!
//! The binary (`src/main.rs`) only calls [`main`]; the library exists so that other packages
//! (the workspace's `tests` package, for the fault-injection suite) can build their own copy
//! of the exact same program. Nothing else is public.
//!
//! [`main`] is thin: read the environment once ([`settings::Env`]), parse the flags
//! ([`flags`]), run the command ([`commands`]), and map how it ended to an exit code
//! ([`error`]). Everything it prints is redacted ([`output`], [`secrets`]).

mod agents;
mod commands;
mod config;
mod error;
mod flags;
mod human;
mod keys;
mod output;
mod progress;
mod secrets;
mod settings;
mod signals;
mod views;

use std::process::ExitCode;

use clap::Parser;

/// Runs `baton` with the process's arguments and environment, and returns its exit code.
pub fn main() -> ExitCode {
    let env = settings::Env::capture();
    // Everything printed is redacted from the start, clap's messages too: they quote the
    // arguments, which may hold a key typed in the wrong place.
    if let Ok(env) = &env {
        output::redact_with(env.redactor.clone());
    }
    let cli = match flags::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let no_color = env.as_ref().is_ok_and(|env| env.no_color);
            return output::clap_message(&error, no_color);
        }
    };
    let result = env.and_then(|env| commands::dispatch(cli, env));
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            output::note(&error::render(&error));
            ExitCode::from(error::classify(&error).kind.code())
        }
    }
}
