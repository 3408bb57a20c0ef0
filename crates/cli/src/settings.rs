//! The high-level configuration the commands use: where the workspace and the ledger are,
//! and every setting resolved from flags, environment, configuration file and defaults, in
//! that order of precedence.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::PermissionMode;
use session_store::{Redactor, SessionPolicy, Store, StoreOptions};

use crate::config::{ConfigFile, Defaults};
use crate::error::{CliError, ErrorContext as _, Kind};
use crate::flags::AgentKind;
use crate::secrets;

/// The name of the workspace directory.
pub const WORKSPACE_DIR: &str = ".baton";
/// The configuration file inside it.
pub const CONFIG_FILE: &str = "config.toml";
/// The ledger database inside it.
pub const LEDGER_FILE: &str = "baton.db";
/// The variable that names the ledger database.
pub const DB_ENV: &str = "BATON_DB";
/// The variable that names the Claude Code executable.
pub const CLAUDE_BIN_ENV: &str = "BATON_CLAUDE_BIN";
/// The variable that sets how long a command waits for another process's write to the ledger.
pub const BUSY_TIMEOUT_ENV: &str = "BATON_BUSY_TIMEOUT";

/// What the CLI takes from its process environment, read once at start-up so that nothing
/// else reads environment variables.
#[derive(Debug, Clone)]
pub struct Env {
    pub cwd: PathBuf,
    /// `BATON_DB`, when set and not empty.
    pub db: Option<PathBuf>,
    /// `BATON_CLAUDE_BIN`, when set and not empty.
    pub claude_bin: Option<PathBuf>,
    /// Whether `NO_COLOR` asks for no colours.
    pub no_color: bool,
    /// Whether `CLICOLOR_FORCE` asks for colours even where output is not a terminal.
    pub clicolor_force: bool,
    /// `BATON_BUSY_TIMEOUT`: how long to wait for the ledger's write lock (default: the
    /// store's, 30 s).
    pub busy_timeout: Option<Duration>,
    /// The values of the secret-looking variables (`ANTHROPIC_API_KEY`, `GITHUB_TOKEN`, …),
    /// to keep out of the ledger and the output.
    pub redactor: Redactor,
}

/// A directory holding `.baton/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The directory that holds `.baton/`: tasks run here unless they say otherwise.
    pub root: PathBuf,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

/// Every setting, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The configuration file the settings were read from, when there was one.
    pub config_path: Option<PathBuf>,
    pub agent: AgentKind,
    pub agent_from: Source,
    pub claude_bin: PathBuf,
    pub claude_bin_from: Source,
    pub model: Option<String>,
    pub permission_mode: PermissionMode,
    pub allowed_tools: Vec<String>,
    pub max_turns: u32,
    pub call_timeout: Duration,
    /// Variables added to the agent's environment.
    pub agent_env: BTreeMap<String, String>,
    pub concurrency: u32,
    pub policy: SessionPolicy,
    pub rotation_threshold: f64,
    pub verify_timeout: Duration,
    /// The iterations a new task gets.
    pub max_iterations: u32,
}

/// Everything a command that works on a workspace needs.
#[derive(Debug)]
pub struct Context {
    pub env: Env,
    pub json: bool,
    /// The workspace found from the current directory, if any (there may be none when the
    /// ledger is named with `--db`).
    pub workspace: Option<Workspace>,
    /// The ledger database.
    pub ledger: PathBuf,
    pub ledger_from: Source,
    pub settings: Settings,
    /// The environment's secrets and the configuration's (see [`secrets::with_agent_env`]).
    pub redactor: Redactor,
}

impl Env {
    pub fn capture() -> crate::error::Result<Env> {
        let cwd = std::env::current_dir().map_err(|error| {
            CliError::new(
                Kind::Internal,
                "could not read the current directory (was it deleted?)",
            )
            .with_source(error)
        })?;
        let var = |name: &str| -> Option<OsString> {
            std::env::var_os(name).filter(|value| !value.is_empty())
        };
        Ok(Env {
            db: var(DB_ENV).map(|path| cwd.join(PathBuf::from(path))),
            claude_bin: var(CLAUDE_BIN_ENV).map(PathBuf::from),
            no_color: var("NO_COLOR").is_some(),
            clicolor_force: var("CLICOLOR_FORCE").is_some(),
            busy_timeout: var(BUSY_TIMEOUT_ENV)
                .map(|value| parse_busy_timeout(&value))
                .transpose()?,
            redactor: Redactor::from_vars(std::env::vars_os()),
            cwd,
        })
    }
}

/// `BATON_BUSY_TIMEOUT`'s value: a duration longer than zero, such as `5s` or `2m`.
fn parse_busy_timeout(value: &OsStr) -> Result<Duration, CliError> {
    let text = value.to_string_lossy();
    let problem = match humantime::parse_duration(text.trim()) {
        Ok(duration) if !duration.is_zero() => return Ok(duration),
        Ok(_) => String::from("is zero: the busy timeout must be longer than zero"),
        Err(error) => format!("is not a duration: {error}"),
    };
    Err(CliError::new(
        Kind::Usage,
        format!("{BUSY_TIMEOUT_ENV}=`{text}` {problem}"),
    )
    .with_hint(format!(
        "set {BUSY_TIMEOUT_ENV} to a duration such as 30s or 2m, or unset it"
    )))
}

impl Workspace {
    /// The nearest directory at or above `from` that holds a `.baton/` directory.
    pub fn find(from: &Path) -> Option<Workspace> {
        from.ancestors()
            .find(|dir| dir.join(WORKSPACE_DIR).is_dir())
            .map(|root| Workspace {
                root: root.to_owned(),
            })
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(WORKSPACE_DIR)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join(CONFIG_FILE)
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.dir().join(LEDGER_FILE)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::File => "config file",
            Source::Default => "default",
        })
    }
}

impl Settings {
    /// Resolves the settings from a configuration file and the environment.
    pub fn resolve(file: &ConfigFile, config_path: Option<PathBuf>, env: &Env) -> Settings {
        let (agent, agent_from) = match file.agent.kind {
            Some(kind) => (kind, Source::File),
            None => (Defaults::AGENT, Source::Default),
        };
        let (claude_bin, claude_bin_from) = match (&env.claude_bin, &file.agent.claude_bin) {
            (Some(path), _) => (path.clone(), Source::Env),
            (None, Some(path)) => (path.as_path(), Source::File),
            (None, None) => (PathBuf::from(Defaults::CLAUDE_BIN), Source::Default),
        };
        Settings {
            config_path,
            agent,
            agent_from,
            claude_bin,
            claude_bin_from,
            model: file.agent.model.as_ref().map(|model| model.0.clone()),
            permission_mode: file
                .agent
                .permission_mode
                .unwrap_or(Defaults::PERMISSION_MODE),
            allowed_tools: file
                .agent
                .allowed_tools
                .iter()
                .flatten()
                .map(|tool| tool.0.clone())
                .collect(),
            max_turns: file.agent.max_turns.map_or(Defaults::MAX_TURNS, |n| n.0),
            call_timeout: file.agent.timeout.map_or(Defaults::TIMEOUT, |d| d.0),
            agent_env: file.agent.env.clone(),
            concurrency: file.run.concurrency.map_or(Defaults::CONCURRENCY, |n| n.0),
            policy: file
                .run
                .session_policy
                .map_or(Defaults::SESSION_POLICY, |policy| policy.0),
            rotation_threshold: file
                .run
                .context_rotation_threshold
                .map_or(Defaults::CONTEXT_ROTATION_THRESHOLD, |fraction| fraction.0),
            verify_timeout: file
                .run
                .verify_timeout
                .map_or(Defaults::VERIFY_TIMEOUT, |d| d.0),
            max_iterations: file
                .tasks
                .max_iterations
                .map_or(Defaults::MAX_ITERATIONS, |n| n.0),
        }
    }

    /// Applies a `--agent` flag.
    pub fn with_agent_flag(mut self, agent: Option<AgentKind>) -> Settings {
        if let Some(agent) = agent {
            self.agent = agent;
            self.agent_from = Source::Flag;
        }
        self
    }
}

impl Context {
    /// Finds the workspace and the ledger and reads the configuration.
    ///
    /// Without `--db` or `BATON_DB` a workspace must exist at or above the current directory.
    pub fn load(db_flag: Option<PathBuf>, json: bool, env: Env) -> crate::error::Result<Context> {
        let workspace = Workspace::find(&env.cwd);
        let (ledger, ledger_from) = match (db_flag, &env.db, &workspace) {
            (Some(path), _, _) => (env.cwd.join(path), Source::Flag),
            (None, Some(path), _) => (path.clone(), Source::Env),
            (None, None, Some(workspace)) => (workspace.ledger_path(), Source::Default),
            (None, None, None) => return Err(no_workspace(&env.cwd)),
        };
        let (file, config_path) = match &workspace {
            Some(workspace) => {
                let path = workspace.config_path();
                (ConfigFile::load(&path)?, Some(path))
            }
            None => (ConfigFile::default(), None),
        };
        let settings = Settings::resolve(&file, config_path, &env);
        let redactor = secrets::with_agent_env(&env.redactor, &settings.agent_env);
        Ok(Context {
            env,
            json,
            workspace,
            ledger,
            ledger_from,
            settings,
            redactor,
        })
    }

    /// The directory new tasks work in by default: the workspace's, else the current one.
    pub fn default_workdir(&self) -> &Path {
        self.workspace
            .as_ref()
            .map_or(self.env.cwd.as_path(), |workspace| workspace.root.as_path())
    }

    /// Opens the ledger, which must exist (`baton init` creates it), with the context's
    /// redactor.
    pub fn open_store(&self) -> crate::error::Result<Store> {
        if !self.ledger.is_file() {
            let hint = match self.ledger_from {
                Source::Default => String::from(
                    "the workspace has lost its ledger; `baton init` in a new directory starts a new one",
                ),
                _ => format!(
                    "check the path; `baton init` with --db or {DB_ENV} creates a new ledger there"
                ),
            };
            return Err(CliError::not_found(format!(
                "the ledger database `{}` does not exist",
                self.ledger.display()
            ))
            .with_hint(hint));
        }
        let mut options = StoreOptions::with_redactor(self.redactor.clone());
        if let Some(busy_timeout) = self.env.busy_timeout {
            options.busy_timeout = busy_timeout;
        }
        Store::open_with(&self.ledger, &options).with_context(|| {
            format!(
                "could not open the ledger database `{}`",
                self.ledger.display()
            )
        })
    }
}

/// The error for a command run outside any workspace.
pub fn no_workspace(cwd: &Path) -> CliError {
    CliError::not_found(format!(
        "no baton workspace (a `{WORKSPACE_DIR}` directory) in `{}` or any directory above it",
        cwd.display()
    ))
    .with_hint(format!(
        "run `baton init` to create one here, or name a ledger with --db PATH or {DB_ENV}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(cwd: &Path) -> Env {
        Env {
            cwd: cwd.to_owned(),
            db: None,
            claude_bin: None,
            no_color: false,
            clicolor_force: false,
            busy_timeout: None,
            redactor: Redactor::new(),
        }
    }

    #[test]
    fn the_workspace_is_found_by_walking_up() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(Workspace::find(&nested), None);
        std::fs::create_dir(dir.path().join(WORKSPACE_DIR)).unwrap();
        assert_eq!(
            Workspace::find(&nested),
            Some(Workspace {
                root: dir.path().to_owned()
            })
        );
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile::parse(
            "[agent]\nkind = \"mock\"\nclaude_bin = \"/opt/claude\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let mut with_env = env(dir.path());
        let settings = Settings::resolve(&file, None, &with_env);
        assert_eq!(settings.claude_bin, PathBuf::from("/opt/claude"));
        assert_eq!(settings.claude_bin_from, Source::File);
        with_env.claude_bin = Some(PathBuf::from("/env/claude"));
        let settings = Settings::resolve(&file, None, &with_env);
        assert_eq!(settings.claude_bin, PathBuf::from("/env/claude"));
        assert_eq!(settings.claude_bin_from, Source::Env);
        assert_eq!(settings.agent, AgentKind::Mock);
        let settings = settings.with_agent_flag(Some(AgentKind::Claude));
        assert_eq!(
            (settings.agent, settings.agent_from),
            (AgentKind::Claude, Source::Flag)
        );

        let defaults = Settings::resolve(&ConfigFile::default(), None, &env(dir.path()));
        assert_eq!(defaults.permission_mode, PermissionMode::AcceptEdits);
        assert_eq!(defaults.claude_bin, PathBuf::from("claude"));
    }

    #[test]
    fn without_a_workspace_or_a_database_there_is_nothing_to_work_on() {
        let dir = tempfile::tempdir().unwrap();
        let error = Context::load(None, false, env(dir.path())).unwrap_err();
        assert_eq!(error.kind, Kind::NotFound);
        let context = Context::load(Some(PathBuf::from("x.db")), false, env(dir.path())).unwrap();
        assert_eq!(context.ledger, dir.path().join("x.db"));
        assert_eq!(context.default_workdir(), dir.path());
        assert!(context.open_store().is_err(), "the ledger must exist");
    }
}
