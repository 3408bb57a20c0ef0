//! `baton doctor`: checks the workspace, the configuration, the ledger and the agent, and
//! shows the settings in force.

use std::path::{Path, PathBuf};

use agent::PermissionMode;
use serde_json::{Value, json};
use session_store::{SessionFilter, SessionStatus, Store, TaskFilter, TaskStatus};

use crate::agents;
use crate::config::{ConfigFile, format_duration};
use crate::error::{CliError, Kind, Outcome, Result};
use crate::flags::AgentKind;
use crate::human::Fields;
use crate::output::Ui;
use crate::secrets;
use crate::settings::{Env, Settings, Source, Workspace, no_workspace};

/// The result of one check.
#[derive(Debug)]
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

pub fn run(ui: &mut Ui, db_flag: Option<PathBuf>, json: bool, env: &Env) -> Result<Outcome> {
    let mut checks = Vec::new();
    let workspace = Workspace::find(&env.cwd);
    let named_ledger = db_flag
        .map(|path| env.cwd.join(path))
        .or_else(|| env.db.clone());

    match (&workspace, &named_ledger) {
        (Some(workspace), _) => checks.push(ok("workspace", workspace.root.display().to_string())),
        (None, Some(_)) => checks.push(Check {
            name: "workspace",
            status: Status::Warning,
            detail: String::from("none found; the ledger is named with --db or BATON_DB, and the settings are the defaults"),
            hint: None,
        }),
        (None, None) => checks.push(failed("workspace", &no_workspace(&env.cwd))),
    }

    let (file, config_path) = match &workspace {
        Some(workspace) => {
            let path = workspace.config_path();
            match ConfigFile::load(&path) {
                Ok(file) => {
                    let detail = if path.is_file() {
                        path.display().to_string()
                    } else {
                        format!("{} does not exist: the defaults apply", path.display())
                    };
                    checks.push(ok("config", detail));
                    (file, Some(path))
                }
                Err(error) => {
                    checks.push(failed("config", &error));
                    (ConfigFile::default(), Some(path))
                }
            }
        }
        None => (ConfigFile::default(), None),
    };
    let settings = Settings::resolve(&file, config_path, env);
    ui.set_redactor(secrets::with_agent_env(&env.redactor, &settings.agent_env));
    if settings.permission_mode == PermissionMode::BypassPermissions {
        checks.push(Check {
            name: "permissions",
            status: Status::Warning,
            detail: String::from(
                "agent.permission_mode is bypassPermissions: the agent runs every tool without asking",
            ),
            hint: None,
        });
    }

    let ledger = named_ledger.or_else(|| workspace.as_ref().map(Workspace::ledger_path));
    if let Some(ledger) = &ledger {
        checks.push(check_ledger(ledger));
    }

    let config_failed = checks
        .iter()
        .any(|check| check.name == "config" && matches!(check.status, Status::Failed(_)));
    if config_failed {
        // The configuration names the agent; with it unreadable, a check would test the wrong one.
        checks.push(Check {
            name: "agent",
            status: Status::Warning,
            detail: String::from("not checked: the configuration has an error"),
            hint: None,
        });
    } else {
        checks.push(check_agent(&settings)?);
    }

    let first_failure = checks.iter().find_map(|check| match check.status {
        Status::Failed(kind) => Some(kind),
        _ => None,
    });
    if json {
        ui.json(&json!({
            "checks": checks.iter().map(|check| json!({
                "name": check.name,
                "status": match check.status {
                    Status::Ok => "ok",
                    Status::Warning => "warning",
                    Status::Failed(_) => "failed",
                },
                "detail": check.detail,
                "hint": check.hint,
            })).collect::<Vec<Value>>(),
            "ledger": ledger.map(|path| path.to_string_lossy().into_owned()),
            "settings": settings_json(&settings),
        }))?;
    } else {
        let mut out = String::new();
        for check in &checks {
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
        out.push_str(
            "\nSettings (flags and environment win over the file, the file over defaults):\n",
        );
        out.push_str(&settings_text(&settings));
        ui.print(&out);
    }
    match first_failure {
        None => Ok(Outcome::Success),
        Some(kind) => Err(CliError::new(
            kind,
            "baton doctor found a problem (marked FAIL above)",
        )),
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

fn check_ledger(path: &Path) -> Check {
    if !path.is_file() {
        return failed(
            "ledger",
            &CliError::not_found(format!("`{}` does not exist", path.display()))
                .with_hint("`baton init` creates a workspace with its ledger"),
        );
    }
    let summary = (|| -> Result<String> {
        let store = Store::open(path)?;
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
        Ok(format!(
            "{}: schema {version}, integrity ok, {} tasks{states}, {open} open sessions",
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
    if settings.agent == AgentKind::Mock {
        return Ok(ok(
            "agent",
            String::from("the built-in mock agent (answers at once, changes nothing)"),
        ));
    }
    let agent = agents::claude(&settings.claude_bin);
    let runtime = super::runtime()?;
    let probed = runtime.block_on(agents::probe(&agent, settings));
    Ok(match probed {
        Ok(info) => {
            let program = info.program.map_or_else(
                || settings.claude_bin.display().to_string(),
                |path| path.display().to_string(),
            );
            ok(
                "agent",
                format!(
                    "claude {} (`{program}`, {})",
                    info.version, settings.claude_bin_from
                ),
            )
        }
        Err(error) => failed("agent", &error),
    })
}

fn settings_json(settings: &Settings) -> Value {
    json!({
        "agent": {
            "kind": settings.agent.as_str(),
            "claude_bin": settings.claude_bin.to_string_lossy(),
            "model": settings.model,
            "permission_mode": settings.permission_mode.as_str(),
            "allowed_tools": settings.allowed_tools,
            "max_turns": settings.max_turns,
            "timeout": format_duration(settings.call_timeout),
            "env": settings.agent_env.keys().collect::<Vec<_>>(),
        },
        "run": {
            "concurrency": settings.concurrency,
            "session_policy": settings.policy.as_str(),
            "context_rotation_threshold": settings.rotation_threshold,
            "verify_timeout": format_duration(settings.verify_timeout),
        },
        "tasks": {
            "max_iterations": settings.max_iterations,
        },
        "config_file": settings.config_path.as_ref().map(|path| path.to_string_lossy()),
    })
}

fn settings_text(settings: &Settings) -> String {
    let from = |source: Source| match source {
        Source::Default => String::from(" (default)"),
        other => format!(" ({other})"),
    };
    let mut fields = Fields::new();
    fields
        .field(
            "agent.kind",
            format!("{}{}", settings.agent.as_str(), from(settings.agent_from)),
        )
        .field(
            "agent.claude_bin",
            format!(
                "{}{}",
                settings.claude_bin.display(),
                from(settings.claude_bin_from)
            ),
        )
        .field(
            "agent.model",
            settings
                .model
                .clone()
                .unwrap_or_else(|| String::from("Claude Code's default")),
        )
        .field("agent.permission_mode", settings.permission_mode.as_str())
        .field(
            "agent.allowed_tools",
            if settings.allowed_tools.is_empty() {
                String::from("Claude Code's default")
            } else {
                settings.allowed_tools.join(", ")
            },
        )
        .field("agent.max_turns", settings.max_turns.to_string())
        .field("agent.timeout", format_duration(settings.call_timeout))
        .field(
            "agent.env",
            if settings.agent_env.is_empty() {
                String::from("nothing added")
            } else {
                settings
                    .agent_env
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        )
        .field("run.concurrency", settings.concurrency.to_string())
        .field("run.session_policy", settings.policy.as_str())
        .field(
            "run.context_rotation_threshold",
            settings.rotation_threshold.to_string(),
        )
        .field(
            "run.verify_timeout",
            format_duration(settings.verify_timeout),
        )
        .field("tasks.max_iterations", settings.max_iterations.to_string());
    fields.render()
}
