//! The commands, one module each, and what they share.

pub mod doctor;
pub mod init;
pub mod milestone;
pub mod quickstart;
pub mod recover;
pub mod run;
pub mod session;
pub mod task;
pub mod usage;
pub mod worktree;

use std::path::PathBuf;

use session_store::{Milestone, Store};

use crate::error::{CliError, Outcome, Result};
use crate::flags::{Cli, Command};
use crate::output::Ui;
use crate::settings::{Context, Env};

/// Runs the command the command line names.
pub fn dispatch(cli: Cli, env: Env, ui: &mut Ui) -> Result<Outcome> {
    let Cli { db, json, command } = cli;
    match command {
        Command::Init(args) => init::run(ui, &args, db, json, &env),
        Command::Doctor(args) => doctor::run(ui, db, json, args.probe, &env),
        Command::Quickstart(args) => quickstart::run(ui, &args, json, &env),
        Command::Task(command) => task::run(command, &load(db, json, env, ui)?, ui),
        Command::Milestone(command) => milestone::run(command, &load(db, json, env, ui)?, ui),
        Command::Run(args) => run::run(args, load(db, json, env, ui)?, ui),
        Command::Session(command) => session::run(command, &load(db, json, env, ui)?, ui),
        Command::Usage(args) => usage::run(args.by, &load(db, json, env, ui)?, ui),
        Command::Recover => recover::run(&load(db, json, env, ui)?, ui),
        Command::Worktree(command) => worktree::run(command, &load(db, json, env, ui)?, ui),
    }
}

/// The workspace's context; from here on `ui` also keeps the configuration's secrets out of
/// what it prints.
fn load(db: Option<PathBuf>, json: bool, env: Env, ui: &mut Ui) -> Result<Context> {
    let context = Context::load(db, json, env)?;
    ui.set_redactor(context.redactor.clone());
    Ok(context)
}

/// The milestone called `name`, or an error that says how to find or make one.
pub fn milestone_named(store: &Store, name: &str) -> Result<Milestone> {
    store.milestone_by_name(name).map_err(|error| match error {
        session_store::StoreError::NotFound(_) => CliError::not_found(format!(
            "there is no milestone named `{name}`"
        ))
        .with_hint(format!(
            "`baton milestone list` shows the milestones; `baton milestone add {name}` creates it"
        )),
        other => other.into(),
    })
}

/// The runtime the async commands run on. One thread: agent calls wait on I/O, the ledger
/// works on tokio's blocking pool, and agent processes are forked from this long-lived
/// thread, so the parent-death signal they get is tied to a thread that outlives them.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::internal("could not start the async runtime").with_source(error))
}
