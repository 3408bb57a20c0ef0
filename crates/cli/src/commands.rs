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

use session_store::{Milestone, Store};

use crate::error::{CliError, Kind, Outcome};
use crate::flags::{Cli, Command};
use crate::settings::{Context, Env};

/// Runs the command the command line names.
pub fn dispatch(cli: Cli, env: Env) -> anyhow::Result<Outcome> {
    let Cli { db, json, command } = cli;
    match command {
        Command::Init(args) => init::run(&args, db, json, &env),
        Command::Doctor => doctor::run(db, json, &env),
        Command::Quickstart(args) => quickstart::run(&args, json, &env),
        Command::Task(command) => task::run(command, &Context::load(db, json, env)?),
        Command::Milestone(command) => milestone::run(command, &Context::load(db, json, env)?),
        Command::Run(args) => run::run(args, Context::load(db, json, env)?),
        Command::Session(command) => session::run(command, &Context::load(db, json, env)?),
        Command::Usage(args) => usage::run(args.by, &Context::load(db, json, env)?),
        Command::Recover => recover::run(&Context::load(db, json, env)?),
    }
}

/// The milestone called `name`, or an error that says how to find or make one.
pub fn milestone_named(store: &Store, name: &str) -> anyhow::Result<Milestone> {
    store.milestone_by_name(name).map_err(|error| match error {
        session_store::StoreError::NotFound(_) => CliError::not_found(format!(
            "there is no milestone named `{name}`"
        ))
        .with_hint(format!(
            "`baton milestone list` shows the milestones; `baton milestone add {name}` creates it"
        ))
        .into(),
        other => other.into(),
    })
}

/// The runtime the async commands run on. One thread: agent calls wait on I/O, the ledger
/// works on tokio's blocking pool, and agent processes are forked from this long-lived
/// thread, so the parent-death signal they get is tied to a thread that outlives them.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            CliError::new(Kind::Other, "could not start the async runtime")
                .with_source(error)
                .into()
        })
}
