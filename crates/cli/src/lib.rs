//! The `baton` command line: runs software tasks through a coding agent and keeps an exact
//! ledger of every agent session.
//!
//! The binary (`src/main.rs`) only calls [`main`]; the library exists so that other packages
//! (the workspace's `tests` package, for the fault-injection suite) can build their own copy
//! of the exact same program. Nothing else is public.
//!
//! [`main`] is thin: read the environment once ([`settings::Env`]), make the terminal handle
//! ([`output::Ui`]), parse the flags ([`flags`]), run the command ([`commands`]), and map how
//! it ended to an exit code ([`error::exit_code`]). Everything it prints goes through the
//! handle, which redacts it ([`output`], [`secrets`]).

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
mod workspaces;

use std::process::ExitCode;

use clap::Parser;
use redact::Redactor;

use crate::output::{ColorEnv, Ui};

/// Runs `baton` with the process's arguments and environment, and returns its exit code.
pub fn main() -> ExitCode {
    let env = settings::Env::capture();
    // Everything printed is redacted from the start, clap's messages too: they quote the
    // arguments, which may hold a key typed in the wrong place.
    let (redactor, colors) = match &env {
        Ok(env) => (
            env.redactor.clone(),
            ColorEnv {
                no_color: env.no_color,
                force: env.clicolor_force,
            },
        ),
        Err(_) => (Redactor::new(), ColorEnv::default()),
    };
    let mut ui = Ui::new(redactor, colors);
    let cli = match flags::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return ui.clap_message(&error),
    };
    let ended = env.and_then(|env| commands::dispatch(cli, env, &mut ui));
    if let Err(error) = &ended {
        ui.error(error);
    }
    ExitCode::from(error::exit_code(&ended))
}
