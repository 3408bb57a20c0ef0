//! The high-level configuration the commands use: where the workspace and the ledger are,
//! and every key of [`keys::ALL`] resolved from flags, the environment, the configuration
//! file and the defaults, in that order of precedence.
//!
//! This is the only module that reads the process's environment ([`Env::capture`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use redact::Redactor;
use serde::Serialize;
use session_store::{
    Location, PostgresEnvironment, PostgresPassword, PostgresUrl, Store, StoreOptions,
};

use crate::config::ConfigFile;
use crate::error::{CliError, ErrorContext as _, Kind};
use crate::flags::RunArgs;
use crate::keys::{self, Definition, Key, KeyType, Problem, Value};
use crate::secrets;

/// The name of the workspace directory.
pub const WORKSPACE_DIR: &str = ".baton";
/// The configuration file inside it.
pub const CONFIG_FILE: &str = "config.toml";
/// The ledger database inside it.
pub const LEDGER_FILE: &str = "baton.db";

/// What the CLI takes from its process environment, read once at start-up so that nothing
/// else reads environment variables.
#[derive(Debug, Clone)]
pub struct Env {
    pub cwd: PathBuf,
    /// Whether `NO_COLOR` asks for no colours.
    pub no_color: bool,
    /// Whether `CLICOLOR_FORCE` asks for colours even where output is not a terminal.
    pub clicolor_force: bool,
    /// The values of the secret-looking variables (`ANTHROPIC_API_KEY`, `GITHUB_TOKEN`, …),
    /// to keep out of the ledger and the output.
    pub redactor: Redactor,
    /// The keys set by their environment variables (`BATON_DB`, `BATON_CLAUDE_BIN`, …),
    /// checked; a variable set to nothing sets nothing.
    pub values: BTreeMap<&'static str, Value>,
    /// `PAGER`, for `task diff` on a terminal.
    pub pager: Option<String>,
    /// Every variable, for the programs Baton runs that inherit them (git, which scrubs what
    /// could redirect it).
    pub vars: Vec<(OsString, OsString)>,
}

/// A directory holding `.baton/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The directory that holds `.baton/`: tasks run here unless they say otherwise.
    pub root: PathBuf,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Flag,
    #[serde(rename = "environment")]
    Env,
    File,
    Default,
}

/// One key's value and where it came from; `None` for a key left unset (see
/// [`Definition::unset_means`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub key: &'static Definition,
    pub value: Option<Value>,
    pub source: Source,
}

/// Every key, resolved. Read a key with [`Settings::get`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The configuration file the settings were read from, when there was one.
    pub config_path: Option<PathBuf>,
    /// One per key of [`keys::ALL`], in its order.
    resolved: Vec<Resolved>,
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
    pub settings: Settings,
    /// The environment's secrets and the configuration's (see [`secrets::with_agent_env`]),
    /// and the ledger's password.
    pub redactor: Redactor,
    /// How [`Context::open_store`] opens the ledger, worked out once: the password it needs
    /// may come from a file (`~/.pgpass`).
    store_options: StoreOptions,
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
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let mut values = BTreeMap::new();
        for key in keys::ALL {
            let Some((variable, text)) = key
                .sources
                .env
                .and_then(|variable| Some((variable, var(variable)?)))
            else {
                continue;
            };
            let value = keys::from_os(key, &text)
                .map_err(|problem| bad_variable(key, variable, &text, &problem))?;
            values.insert(key.name, value);
        }
        Ok(Env {
            no_color: var("NO_COLOR").is_some(),
            clicolor_force: var("CLICOLOR_FORCE").is_some(),
            redactor: Redactor::from_vars(std::env::vars_os()),
            vars: std::env::vars_os().collect(),
            values,
            pager: var("PAGER").and_then(|pager| pager.into_string().ok()),
            cwd,
        })
    }
}

/// The error for a variable whose value its key does not take.
fn bad_variable(key: &Definition, variable: &str, text: &OsStr, problem: &Problem) -> CliError {
    CliError::usage(format!(
        "{variable}=`{}` {}",
        text.to_string_lossy(),
        problem.says
    ))
    .with_hint(format!(
        "set {variable} to {}, or unset it",
        key.kind.expected()
    ))
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
    /// Resolves every key from the environment, then the configuration file, then its
    /// default. Flags come on top, from the command that takes them ([`Settings::with_flag`]).
    pub fn resolve(file: &ConfigFile, config_path: Option<PathBuf>, env: &Env) -> Settings {
        let resolved = keys::ALL
            .iter()
            .copied()
            .map(|key| {
                let (value, source) = if let Some(value) = env.values.get(key.name) {
                    (Some(value.clone()), Source::Env)
                } else if let Some(value) = file.get(key.name) {
                    (Some(value.clone()), Source::File)
                } else {
                    (key.default_value(), Source::Default)
                };
                Resolved { key, value, source }
            })
            .collect();
        Settings {
            config_path,
            resolved,
        }
    }

    /// The value of `key`.
    pub fn get<T: KeyType>(&self, key: Key<T>) -> T {
        T::from_value(self.resolved(key).value.as_ref()).expect(
            "invariant: a key's kind makes values of its type (keys::tests::every_key_reads_as_its_type)",
        )
    }

    /// Where the value of `key` came from.
    pub fn source<T>(&self, key: Key<T>) -> Source {
        self.resolved(key).source
    }

    /// Every key, in the order of [`keys::ALL`].
    pub fn all(&self) -> &[Resolved] {
        &self.resolved
    }

    /// Sets `key` from its flag, when the flag was given: a flag wins over everything.
    pub fn with_flag<T: KeyType>(mut self, key: Key<T>, value: impl Into<Option<T>>) -> Settings {
        debug_assert!(
            !key.definition.sources.flags.is_empty(),
            "{} has no flag",
            key.definition.name
        );
        if let Some(value) = value.into().and_then(T::into_value) {
            let resolved = self.resolved_mut(key);
            resolved.value = Some(value);
            resolved.source = Source::Flag;
        }
        self
    }

    /// The flags of `baton run` that set keys.
    pub fn with_run_flags(self, args: &RunArgs) -> Settings {
        self.with_flag(keys::AGENT_KIND, args.agent)
            .with_flag(keys::RUN_CONCURRENCY, args.concurrency)
            .with_flag(keys::RUN_SESSION_POLICY, args.session_policy)
            .with_flag(keys::RUN_ISOLATION, args.isolation.map(Some))
            .with_flag(keys::RUN_MAX_COST, args.max_cost)
            .with_flag(keys::RUN_MAX_TOKENS, args.max_tokens)
    }

    /// Names the ledger: `--db` (relative to the current directory) over `BATON_DB` (the
    /// same), else the workspace's own, else none.
    pub fn with_ledger(
        self,
        db_flag: Option<PathBuf>,
        env: &Env,
        workspace: Option<&Workspace>,
    ) -> Settings {
        let mut settings = self.with_flag(keys::LEDGER_PATH, db_flag);
        let shared = settings.get(keys::LEDGER_URL);
        let resolved = settings.resolved_mut(keys::LEDGER_PATH);
        match (&mut resolved.value, shared) {
            // A URL names a database, not a file under the current directory.
            (Some(Value::Path(path)), _) if is_postgres(path) => {}
            (Some(Value::Path(path)), _) => *path = env.cwd.join(&*path),
            (_, Some(url)) => {
                resolved.value = Some(Value::Path(PathBuf::from(url)));
                resolved.source = Source::File;
            }
            _ => resolved.value = workspace.map(|workspace| Value::Path(workspace.ledger_path())),
        }
        settings
    }

    /// How the ledger is opened: with `redactor`, `ledger.busy_timeout` and
    /// `ledger.durability`. The one place where the settings reach the store.
    ///
    /// For a PostgreSQL ledger whose URL has no password, the password is libpq's:
    /// `PGPASSWORD`, else the first matching line of `PGPASSFILE` or `~/.pgpass`. Its TLS
    /// takes libpq's defaults from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` and
    /// the files in `~/.postgresql`.
    pub fn store_options(&self, redactor: Redactor, env: &Env) -> StoreOptions {
        let mut options = StoreOptions::new(redactor);
        options.postgres_environment = postgres_environment(env);
        options.busy_timeout = self.get(keys::LEDGER_BUSY_TIMEOUT);
        options.durability = self.get(keys::LEDGER_DURABILITY);
        let ledger = self.get(keys::LEDGER_PATH);
        options.postgres_password = ledger
            .as_deref()
            .and_then(|ledger| postgres_password(ledger, env));
        let in_url = match ledger.as_deref().map(Location::of) {
            Some(Ok(Location::Postgres(url))) => url.password(),
            _ => None,
        };
        // The password is never written to the ledger nor shown, wherever it came from.
        for password in [&options.postgres_password, &in_url].into_iter().flatten() {
            options.redactor = options
                .redactor
                .with_value("the ledger's password", password.expose());
        }
        options
    }

    fn resolved<T>(&self, key: Key<T>) -> &Resolved {
        self.resolved
            .iter()
            .find(|resolved| resolved.key.name == key.definition.name)
            .expect("invariant: settings resolve every key of keys::ALL, and every key is in it")
    }

    fn resolved_mut<T>(&mut self, key: Key<T>) -> &mut Resolved {
        self.resolved
            .iter_mut()
            .find(|resolved| resolved.key.name == key.definition.name)
            .expect("invariant: settings resolve every key of keys::ALL, and every key is in it")
    }
}

impl Context {
    /// Finds the workspace and the ledger and reads the configuration.
    ///
    /// Without `--db` or `BATON_DB` a workspace must exist at or above the current directory.
    pub fn load(db_flag: Option<PathBuf>, json: bool, env: Env) -> crate::error::Result<Context> {
        let workspace = Workspace::find(&env.cwd);
        let (file, config_path) = match &workspace {
            Some(workspace) => {
                let path = workspace.config_path();
                (ConfigFile::load(&path)?, Some(path))
            }
            None => (ConfigFile::default(), None),
        };
        let settings = Settings::resolve(&file, config_path, &env).with_ledger(
            db_flag,
            &env,
            workspace.as_ref(),
        );
        let ledger = settings
            .get(keys::LEDGER_PATH)
            .ok_or_else(|| no_workspace(&env.cwd))?;
        let redactor = secrets::with_agent_env(&env.redactor, &settings.get(keys::AGENT_ENV));
        // With the ledger's password, wherever it came from: it is never shown.
        let store_options = settings.store_options(redactor, &env);
        Ok(Context {
            env,
            json,
            workspace,
            ledger,
            settings,
            redactor: store_options.redactor.clone(),
            store_options,
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
        if !is_postgres(&self.ledger) && !self.ledger.is_file() {
            let hint = match self.settings.source(keys::LEDGER_PATH) {
                Source::Default => String::from(
                    "the workspace has lost its ledger; `baton init` in a new directory starts a new one",
                ),
                _ => format!(
                    "check the path; `baton init` with --db or {} creates a new ledger there",
                    ledger_variable()
                ),
            };
            return Err(CliError::not_found(format!(
                "the ledger database `{}` does not exist",
                shown(&self.ledger)
            ))
            .with_hint(hint));
        }
        Store::open_with(&self.ledger, &self.store_options).with_context(|| {
            format!(
                "could not open the ledger database `{}`",
                shown(&self.ledger)
            )
        })
    }
}

/// The ledger as messages name it: the file, or the URL without its password.
pub fn shown(ledger: &Path) -> String {
    match ledger.to_str() {
        // Also a URL that does not parse: its password must not show in the refusal.
        Some(text) if PostgresUrl::looks_like(text) => PostgresUrl::text_without_password(text),
        _ => ledger.display().to_string(),
    }
}

/// Whether `path` is a PostgreSQL URL rather than a file.
pub fn is_postgres(path: &Path) -> bool {
    path.to_str().is_some_and(PostgresUrl::looks_like)
}

/// The password libpq would use for the ledger at `ledger`, when it is a PostgreSQL URL
/// without one of its own: `PGPASSWORD`, else the first line of the password file
/// (`PGPASSFILE`, else `~/.pgpass`) that matches the URL's host, port, database and user.
fn postgres_password(ledger: &Path, env: &Env) -> Option<PostgresPassword> {
    let Ok(Location::Postgres(url)) = Location::of(ledger) else {
        return None;
    };
    if url.has_password() {
        return None;
    }
    let var = |name: &str| non_empty_var(env, name);
    if let Some(password) = var("PGPASSWORD") {
        return Some(PostgresPassword::new(password));
    }
    let file = var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let login = var("USER").or_else(|| var("LOGNAME")).unwrap_or_default();
    url.pgpass_key(&login)?.find_in(&text)
}

/// What libpq reads from the environment for TLS: the home directory (`~/.postgresql`) and
/// the defaults for a URL without its own `sslmode`, `sslrootcert`, `sslcert` and `sslkey`.
fn postgres_environment(env: &Env) -> PostgresEnvironment {
    let path = |name: &str| non_empty_var(env, name).map(PathBuf::from);
    PostgresEnvironment {
        home: path("HOME"),
        sslmode: non_empty_var(env, "PGSSLMODE"),
        sslrootcert: path("PGSSLROOTCERT"),
        sslcert: path("PGSSLCERT"),
        sslkey: path("PGSSLKEY"),
    }
}

/// The variable `name` of `env`, when it is set, text and not empty (as libpq reads them).
fn non_empty_var(env: &Env, name: &str) -> Option<String> {
    env.vars
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.to_str())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// The variable that names the ledger: `BATON_DB`.
fn ledger_variable() -> &'static str {
    keys::LEDGER_PATH.definition.sources.env.unwrap_or_default()
}

/// The error for a command run outside any workspace.
pub fn no_workspace(cwd: &Path) -> CliError {
    CliError::not_found(format!(
        "no baton workspace (a `{WORKSPACE_DIR}` directory) in `{}` or any directory above it",
        cwd.display()
    ))
    .with_hint(format!(
        "run `baton init` to create one here, or name a ledger with --db PATH or {}",
        ledger_variable()
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent::PermissionMode;

    use super::*;
    use crate::keys::AgentKind;

    fn env(cwd: &Path) -> Env {
        Env {
            cwd: cwd.to_owned(),
            no_color: false,
            clicolor_force: false,
            redactor: Redactor::new(),
            values: BTreeMap::new(),
            pager: None,
            vars: Vec::new(),
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
            "[agent]\nkind = \"mock\"\nclaude_bin = \"/opt/claude\"\n[run]\nconcurrency = 3\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let mut with_env = env(dir.path());
        let settings = Settings::resolve(&file, None, &with_env);
        assert_eq!(
            settings.get(keys::AGENT_CLAUDE_BIN),
            PathBuf::from("/opt/claude")
        );
        assert_eq!(settings.source(keys::AGENT_CLAUDE_BIN), Source::File);
        with_env.values.insert(
            "agent.claude_bin",
            Value::Path(PathBuf::from("/env/claude")),
        );
        let settings = Settings::resolve(&file, None, &with_env);
        assert_eq!(
            settings.get(keys::AGENT_CLAUDE_BIN),
            PathBuf::from("/env/claude")
        );
        assert_eq!(settings.source(keys::AGENT_CLAUDE_BIN), Source::Env);
        assert_eq!(settings.get(keys::AGENT_KIND), AgentKind::Mock);
        let settings = settings
            .with_flag(keys::AGENT_KIND, AgentKind::Claude)
            .with_flag(keys::RUN_CONCURRENCY, None);
        assert_eq!(
            (
                settings.get(keys::AGENT_KIND),
                settings.source(keys::AGENT_KIND)
            ),
            (AgentKind::Claude, Source::Flag)
        );
        assert_eq!(
            (
                settings.get(keys::RUN_CONCURRENCY),
                settings.source(keys::RUN_CONCURRENCY)
            ),
            (3, Source::File),
            "an absent flag sets nothing"
        );

        let defaults = Settings::resolve(&ConfigFile::default(), None, &env(dir.path()));
        assert_eq!(
            defaults.get(keys::AGENT_PERMISSION_MODE),
            PermissionMode::AcceptEdits
        );
        assert_eq!(
            defaults.get(keys::AGENT_CLAUDE_BIN),
            PathBuf::from("claude")
        );
        assert_eq!(defaults.get(keys::AGENT_MODEL), None);
        assert!(
            defaults
                .all()
                .iter()
                .all(|key| key.source == Source::Default)
        );
    }

    #[test]
    fn the_environment_variables_of_the_keys_are_read_and_checked() {
        let key = &keys::LEDGER_BUSY_TIMEOUT.definition;
        assert_eq!(
            keys::from_os(key, OsStr::new("2m")),
            Ok(Value::Duration(Duration::from_secs(120)))
        );
        let problem = keys::from_os(key, OsStr::new("soon")).unwrap_err();
        let error = bad_variable(key, "BATON_BUSY_TIMEOUT", OsStr::new("soon"), &problem);
        assert_eq!(
            error.message,
            "BATON_BUSY_TIMEOUT=`soon` is not a duration: expected number at 0"
        );
        assert_eq!(
            error.hint.as_deref(),
            Some("set BATON_BUSY_TIMEOUT to a duration such as 30s or 2m, or unset it")
        );
    }

    #[test]
    fn the_ledger_is_the_flags_then_the_environments_then_the_workspaces() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace {
            root: dir.path().to_owned(),
        };
        let mut with_env = env(dir.path());
        let resolve = |env: &Env, flag: Option<&str>| {
            let settings = Settings::resolve(&ConfigFile::default(), None, env).with_ledger(
                flag.map(PathBuf::from),
                env,
                Some(&workspace),
            );
            (
                settings.get(keys::LEDGER_PATH),
                settings.source(keys::LEDGER_PATH),
            )
        };
        assert_eq!(
            resolve(&with_env, None),
            (Some(workspace.ledger_path()), Source::Default)
        );
        with_env
            .values
            .insert("ledger.path", Value::Path(PathBuf::from("env.db")));
        assert_eq!(
            resolve(&with_env, None),
            (Some(dir.path().join("env.db")), Source::Env)
        );
        assert_eq!(
            resolve(&with_env, Some("flag.db")),
            (Some(dir.path().join("flag.db")), Source::Flag)
        );
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
