//! `baton init`: create `.baton/` with a commented configuration file and the ledger.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use session_store::{Store, StoreOptions};

use crate::config::{self, ConfigFile};
use crate::error::{CliError, ErrorContext as _, Kind, Outcome, Result};
use crate::flags::{AgentKind, InitArgs};
use crate::keys;
use crate::output::Ui;
use crate::settings::{self, Env, Settings, Workspace};

/// What `init` made.
#[derive(Debug)]
pub struct Created {
    pub workspace: Workspace,
    pub ledger: PathBuf,
}

pub fn run(
    ui: &Ui,
    args: &InitArgs,
    db_flag: Option<PathBuf>,
    json: bool,
    env: &Env,
) -> Result<Outcome> {
    // No workspace yet, so no configuration file: the flags, the environment and defaults.
    let settings = Settings::resolve(&ConfigFile::default(), None, env)
        .with_flag(keys::AGENT_KIND, args.agent)
        .with_ledger(db_flag, env, None);
    let ledger = settings.get(keys::LEDGER_PATH);
    let agent = settings.get(keys::AGENT_KIND);
    let options = settings.store_options(env.redactor.clone(), env);
    let created = create(&env.cwd, ledger, agent, &options)?;
    let config_path = created.workspace.config_path();
    if json {
        ui.json(&json!({
            "workspace": created.workspace.root.to_string_lossy(),
            "config": config_path.to_string_lossy(),
            "ledger": settings::shown(&created.ledger),
            "agent": agent.as_str(),
        }))?;
    } else {
        let next = match agent {
            AgentKind::Claude => "`baton doctor` checks that Claude Code runs; then ",
            AgentKind::Mock => "",
        };
        ui.print(&format!(
            "Created a baton workspace in {}\n  config  {} (agent: {})\n  ledger  {}\n\nNext: {next}`baton task add TITLE --prompt TEXT --verify CMD`, and `baton run`.\n",
            created.workspace.root.display(),
            config_path.display(),
            agent.as_str(),
            settings::shown(&created.ledger),
        ));
    }
    Ok(Outcome::Success)
}

/// Creates the workspace in `root`: `.baton/` (mode 0700), its `config.toml` (0600) and the
/// ledger (0600), at `ledger` when given, else in `.baton/`, opened with `options`.
pub fn create(
    root: &Path,
    ledger: Option<PathBuf>,
    agent: AgentKind,
    options: &StoreOptions,
) -> Result<Created> {
    let workspace = Workspace {
        root: root.to_owned(),
    };
    let dir = workspace.dir();
    if dir.symlink_metadata().is_ok() {
        return Err(CliError::usage(format!(
            "`{}` already exists: this directory is already a baton workspace",
            dir.display()
        ))
        .with_hint(
            "edit .baton/config.toml to change its configuration; to start over, remove .baton/ (that deletes its ledger)",
        ));
    }
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|error| {
            CliError::new(
                Kind::Ledger,
                format!("could not create `{}`", dir.display()),
            )
            .with_source(error)
        })?;
    let config_path = workspace.config_path();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&config_path)
        .map_err(|error| {
            CliError::new(
                Kind::Ledger,
                format!("could not create `{}`", config_path.display()),
            )
            .with_source(error)
        })?;
    // A shared ledger is named in the workspace's file, without its password, so that later
    // commands here find it without --db.
    let shared = ledger
        .as_deref()
        .filter(|ledger| settings::is_postgres(ledger))
        .map(settings::shown);
    file.write_all(config::default_file(agent, shared.as_deref()).as_bytes())
        .map_err(|error| {
            CliError::new(
                Kind::Ledger,
                format!("could not write `{}`", config_path.display()),
            )
            .with_source(error)
        })?;
    let ledger = ledger.unwrap_or_else(|| workspace.ledger_path());
    Store::open_with(&ledger, options).with_context(|| {
        format!(
            "could not create the ledger database `{}`",
            settings::shown(&ledger)
        )
    })?;
    Ok(Created { workspace, ledger })
}
