//! `baton doctor`: checks the workspace, the configuration, the ledger, the agent and its
//! account (`account`), and shows every key's value and where it came from.

mod account;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::PermissionMode;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value as Json};
use session_store::{
    SessionFilter, SessionStatus, Store, StoreOptions, TaskFilter, TaskStatus, Timestamp,
};

use crate::agents;
use crate::config::ConfigFile;
use crate::error::{CliError, Kind, Outcome, Result};
use crate::human::Fields;
use crate::keys::{self, AgentKind};
use crate::output::Ui;
use crate::secrets;
use crate::settings::{Env, Resolved, Settings, Source, Workspace, is_postgres, no_workspace};

/// The result of one check.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    hint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warning,
    Failed(Kind),
}

/// `doctor --json`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    checks: &'a [Check],
    /// The ledger database, when one is named or the workspace has one.
    ledger: Option<String>,
    /// Every key's value, by table (`{"run": {"concurrency": 1}}`), and `config_file`.
    settings: Map<String, Json>,
    /// Every key with its value and where it came from, in the order of the listing.
    keys: Vec<KeyReport>,
    /// What `claude auth status` printed, when the agent is Claude Code and it printed JSON.
    account: Option<Json>,
    /// With `--probe`: the probe call's figures (`cost_usd`, tokens, `model`, `duration_ms`).
    probe: Option<Json>,
}

/// What the account checks found, for `--json`.
#[derive(Debug, Default)]
struct AccountFacts {
    status: Option<Json>,
    probe: Option<Json>,
}

#[derive(Debug, Serialize)]
struct KeyReport {
    key: &'static str,
    value: Json,
    source: Source,
}

pub fn run(
    ui: &mut Ui,
    db_flag: Option<PathBuf>,
    json: bool,
    probe: bool,
    env: &Env,
) -> Result<Outcome> {
    let mut checks = Vec::new();
    let settings = load_settings(db_flag, env, &mut checks);
    let redactor = secrets::with_agent_env(&env.redactor, &settings.get(keys::AGENT_ENV));
    // The ledger's options carry its password into the redactor, so no check shows it.
    let options = settings.store_options(redactor, env);
    let redactor = options.redactor.clone();
    ui.set_redactor(redactor.clone());
    if settings.get(keys::AGENT_PERMISSION_MODE) == PermissionMode::BypassPermissions {
        checks.push(warning(
            "permissions",
            "agent.permission_mode is bypassPermissions: the agent runs every tool without asking",
        ));
    }
    let ledger = settings.get(keys::LEDGER_PATH);
    if let Some(ledger) = &ledger {
        checks.push(check_ledger(
            ledger,
            &options,
            settings.get(keys::LEDGER_LEASE_TTL),
        ));
    }
    let config_failed = checks
        .iter()
        .any(|check| check.name == "config" && matches!(check.status, Status::Failed(_)));
    if config_failed {
        // The configuration names the agent; with it unreadable, a check would test the wrong one.
        checks.push(warning(
            "agent",
            "not checked: the configuration has an error",
        ));
    } else {
        checks.push(check_agent(&settings)?);
    }
    let facts = check_the_account(&settings, probe, &mut checks)?;
    if json {
        print_json(ui, &checks, ledger.as_deref(), &settings, facts)?;
    } else {
        ui.print(&format!(
            "{}\n{}",
            checks_text(&checks),
            settings_text(&settings)
        ));
    }
    let first_failure = checks.iter().find_map(|check| match check.status {
        Status::Failed(kind) => Some(kind),
        _ => None,
    });
    match first_failure {
        None => Ok(Outcome::Success),
        Some(kind) => Err(CliError::new(
            kind,
            "baton doctor found a problem (marked FAIL above)",
        )),
    }
}

/// Finds the workspace, reads its configuration and resolves the settings, adding the
/// `workspace` and `config` checks. A configuration that does not read is a failed check,
/// and the settings are then the flags', the environment's and the defaults.
fn load_settings(db_flag: Option<PathBuf>, env: &Env, checks: &mut Vec<Check>) -> Settings {
    let workspace = Workspace::find(&env.cwd);
    let (file, config_path, config_check) = match &workspace {
        Some(workspace) => {
            let path = workspace.config_path();
            match ConfigFile::load(&path) {
                Ok(file) => {
                    let detail = if path.is_file() {
                        path.display().to_string()
                    } else {
                        format!("{} does not exist: the defaults apply", path.display())
                    };
                    (file, Some(path), Some(ok("config", detail)))
                }
                Err(error) => (
                    ConfigFile::default(),
                    Some(path),
                    Some(failed("config", &error)),
                ),
            }
        }
        None => (ConfigFile::default(), None, None),
    };
    let settings =
        Settings::resolve(&file, config_path, env).with_ledger(db_flag, env, workspace.as_ref());
    checks.push(match (&workspace, settings.source(keys::LEDGER_PATH)) {
        (Some(workspace), _) => ok("workspace", workspace.root.display().to_string()),
        (None, Source::Flag | Source::Env) => warning(
            "workspace",
            "none found; the ledger is named with --db or BATON_DB, and the settings are the defaults",
        ),
        (None, _) => failed("workspace", &no_workspace(&env.cwd)),
    });
    checks.extend(config_check);
    settings
}

fn warning(name: &'static str, detail: &str) -> Check {
    Check {
        name,
        status: Status::Warning,
        detail: detail.to_owned(),
        hint: None,
    }
}

fn ok(name: &'static str, detail: String) -> Check {
    Check {
        name,
        status: Status::Ok,
        detail,
        hint: None,
    }
}

fn failed(name: &'static str, error: &CliError) -> Check {
    let mut detail = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
    }
    Check {
        name,
        status: Status::Failed(error.kind),
        detail,
        hint: error.hint.clone(),
    }
}

/// The runs that heartbeat on the ledger now, in words: "no run running", or how many and
/// where ("2 runs running: host1 pid 12, host2 pid 40").
fn running_runners(store: &Store, lease_ttl: Duration) -> Result<String> {
    let since = Timestamp::now().saturating_sub(lease_ttl);
    let running: Vec<String> = store
        .runners()?
        .into_iter()
        .filter(|runner| runner.stopped_at.is_none() && runner.heartbeat_at >= since)
        .map(|runner| format!("{} pid {}", runner.process.host, runner.process.pid))
        .collect();
    Ok(match running.len() {
        0 => String::from("no run running"),
        1 => format!("1 run running: {}", running[0]),
        count => format!("{count} runs running: {}", running.join(", ")),
    })
}

fn check_ledger(path: &Path, options: &StoreOptions, lease_ttl: Duration) -> Check {
    if !is_postgres(path) && !path.is_file() {
        return failed(
            "ledger",
            &CliError::not_found(format!("`{}` does not exist", path.display()))
                .with_hint("`baton init` creates a workspace with its ledger"),
        );
    }
    let summary = (|| -> Result<String> {
        let store = Store::open_with(path, options)?;
        let findings = store.integrity_check()?;
        if !findings.is_empty() {
            return Err(CliError::ledger(format!(
                "`{}` fails SQLite's integrity check: {}",
                path.display(),
                findings.join("; ")
            ))
            .with_hint(
                "restore the file from a backup; `sqlite3 FILE .recover` may save what is left",
            ));
        }
        let version = store.schema_version()?;
        let durability = match store.durability()? {
            Some(durability) => durability.as_str(),
            None => "unknown",
        };
        let tasks = store.tasks(&TaskFilter::default())?;
        let open = store
            .sessions(&SessionFilter {
                status: Some(SessionStatus::Open),
                ..SessionFilter::default()
            })?
            .len();
        let states: Vec<String> = TaskStatus::ALL
            .iter()
            .filter_map(|status| {
                let count = tasks.iter().filter(|task| task.status == *status).count();
                (count > 0).then(|| format!("{count} {status}"))
            })
            .collect();
        let states = if states.is_empty() {
            String::new()
        } else {
            format!(" ({})", states.join(", "))
        };
        let running = running_runners(&store, lease_ttl)?;
        Ok(format!(
            "{}: schema {version}, integrity ok, durability {durability}, {} tasks{states}, {open} open sessions, {running}",
            path.display(),
            tasks.len(),
        ))
    })();
    match summary {
        Ok(detail) => ok("ledger", detail),
        Err(error) => failed("ledger", &error),
    }
}

fn check_agent(settings: &Settings) -> Result<Check> {
    if settings.get(keys::AGENT_KIND) == AgentKind::Mock {
        return Ok(ok(
            "agent",
            String::from("the built-in mock agent (answers at once, changes nothing)"),
        ));
    }
    let program = settings.get(keys::AGENT_CLAUDE_BIN);
    let agent = agents::claude(&program);
    let runtime = super::runtime()?;
    let probed = runtime.block_on(agents::probe(&agent, settings));
    Ok(match probed {
        Ok(info) => {
            let found = info.program.unwrap_or(program);
            ok(
                "agent",
                format!(
                    "claude {} (`{}`, {})",
                    info.version,
                    found.display(),
                    settings.source(keys::AGENT_CLAUDE_BIN)
                ),
            )
        }
        Err(error) => failed("agent", &error),
    })
}

/// The account checks, for Claude Code that runs: `claude auth status`, and with `probe` one
/// minimal call.
fn check_the_account(
    settings: &Settings,
    probe: bool,
    checks: &mut Vec<Check>,
) -> Result<AccountFacts> {
    let agent_runs = checks
        .iter()
        .any(|check| check.name == "agent" && check.status == Status::Ok);
    if settings.get(keys::AGENT_KIND) != AgentKind::Claude || !agent_runs {
        return Ok(AccountFacts::default());
    }
    let (check, status) = account::check_account(settings);
    checks.push(check);
    let probe = if probe {
        let (check, figures) = account::check_probe(settings)?;
        checks.push(check);
        figures
    } else {
        None
    };
    Ok(AccountFacts { status, probe })
}

fn checks_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let word = match check.status {
            Status::Ok => "ok  ",
            Status::Warning => "warn",
            Status::Failed(_) => "FAIL",
        };
        out.push_str(&format!("{word}  {:<11}{}\n", check.name, check.detail));
        if let Some(hint) = &check.hint {
            out.push_str(&format!("                 hint: {hint}\n"));
        }
    }
    out
}

/// Every key, its value and where it came from.
fn settings_text(settings: &Settings) -> String {
    let mut fields = Fields::new();
    for resolved in settings.all() {
        fields.field(
            resolved.key.name,
            format!("{} ({})", shown(resolved), resolved.source),
        );
    }
    format!(
        "Settings (flags and environment win over the file, the file over defaults):\n{}",
        fields.render()
    )
}

/// A key's value for a person: an empty list or table, or no value, says what that means.
fn shown(resolved: &Resolved) -> String {
    let means = resolved.key.unset_means().unwrap_or("none");
    match &resolved.value {
        Some(keys::Value::List(items)) if items.is_empty() => means.to_owned(),
        Some(keys::Value::Variables(variables)) if variables.is_empty() => means.to_owned(),
        Some(value) => value.to_string(),
        None => means.to_owned(),
    }
}

fn print_json(
    ui: &Ui,
    checks: &[Check],
    ledger: Option<&Path>,
    settings: &Settings,
    facts: AccountFacts,
) -> Result<()> {
    let mut by_table = Map::new();
    let mut keys = Vec::new();
    for resolved in settings.all() {
        let value = match &resolved.value {
            Some(value) => value.to_json(),
            // An unset list or table is an empty one, as it has always been in this output.
            None => match resolved.key.kind {
                keys::Kind::List | keys::Kind::Variables => Json::Array(Vec::new()),
                _ => Json::Null,
            },
        };
        let table = by_table
            .entry(resolved.key.section())
            .or_insert_with(|| Json::Object(Map::new()));
        if let Json::Object(table) = table {
            table.insert(resolved.key.short_name().to_owned(), value.clone());
        }
        keys.push(KeyReport {
            key: resolved.key.name,
            value,
            source: resolved.source,
        });
    }
    let config_file = settings
        .config_path
        .as_ref()
        .map(|path| Json::String(path.to_string_lossy().into_owned()));
    by_table.insert(
        String::from("config_file"),
        config_file.unwrap_or(Json::Null),
    );
    let report = Report {
        checks,
        ledger: ledger.map(|path| path.to_string_lossy().into_owned()),
        settings: by_table,
        keys,
        account: facts.status,
        probe: facts.probe,
    };
    ui.json(&report)
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Failed(_) => "failed",
        })
    }
}
