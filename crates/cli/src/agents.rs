//! The agents `baton` can run tasks with, built from the settings, and the run configuration
//! they are driven with.

use std::path::Path;
use std::sync::Arc;

use agent::{Agent, AgentError, AgentInfo, Usage};
use agent_claude::{ClaudeAgent, ClaudeConfig};
use agent_mock::{MockAgent, Step};
use orchestrator::{AgentOptions, RetryPolicy, RunConfig};
use session_store::Budget;

use crate::error::{CliError, Kind};
use crate::keys::{self, AgentKind};
use crate::settings::{Env, Settings, Source};

/// What the built-in mock agent reports for every call: small, fixed figures, so that a
/// ledger filled by it shows what the real one records.
pub const MOCK_USAGE: Usage = Usage {
    input_tokens: 1_200,
    output_tokens: 300,
    cache_read_tokens: 4_000,
    cache_creation_tokens: 800,
};
/// What the built-in mock agent says each call cost, in dollars.
pub const MOCK_COST_USD: f64 = 0.0105;

/// The agent the settings name. Claude Code is told where its files are in baton's own
/// environment (`env`), so that it can read and restore session transcripts.
pub fn build(settings: &Settings, env: &Env) -> Arc<dyn Agent> {
    match settings.get(keys::AGENT_KIND) {
        AgentKind::Claude => {
            let mut config = ClaudeConfig::new(settings.get(keys::AGENT_CLAUDE_BIN));
            config.inherited = claude_file_vars(env);
            Arc::new(ClaudeAgent::new(config))
        }
        AgentKind::Mock => Arc::new(builtin_mock()),
    }
}

/// The variables of baton's environment that say where Claude Code keeps its files, which
/// its process inherits: `CLAUDE_CONFIG_DIR` and `HOME`.
fn claude_file_vars(env: &Env) -> std::collections::BTreeMap<String, String> {
    [agent_claude::CONFIG_DIR_VARIABLE, "HOME"]
        .into_iter()
        .filter_map(|name| {
            env.vars
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.to_str())
                .map(|value| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Claude Code, run as `program`. The agent inherits baton's environment; the configured
/// additions come with every call (see [`run_config`]).
pub fn claude(program: &Path) -> ClaudeAgent {
    ClaudeAgent::new(ClaudeConfig::new(program))
}

/// The built-in mock agent: every call succeeds at once with the same figures and changes
/// nothing. It keeps no transcripts, so a session it "started" in an earlier `baton run`
/// resumes like one of Claude Code's would.
pub fn builtin_mock() -> MockAgent {
    MockAgent::scripted(|_, _| {
        Step::succeed("Done. (The built-in mock agent answers at once and changes no files.)")
            .usage(MOCK_USAGE)
            .cost_usd(MOCK_COST_USD)
            .turns(1)
            .model("mock")
    })
    .without_transcripts()
}

/// Checks that the agent runs, as an error a person can act on when it does not.
pub async fn probe(agent: &dyn Agent, settings: &Settings) -> Result<AgentInfo, CliError> {
    agent
        .probe()
        .await
        .map_err(|error| unavailable(error, settings))
}

/// The error for an agent that does not answer its probe, naming where its program came from.
pub fn unavailable(error: AgentError, settings: &Settings) -> CliError {
    let key = &keys::AGENT_CLAUDE_BIN.definition;
    let variable = key.sources.env.unwrap_or_default();
    let from = match settings.source(keys::AGENT_CLAUDE_BIN) {
        Source::Env => format!(" (from {variable})"),
        Source::File => format!(" (from {} in the configuration)", key.name),
        Source::Flag | Source::Default => String::new(),
    };
    CliError::new(
        Kind::AgentUnavailable,
        format!(
            "the agent is unavailable: `{}`{from} does not run",
            settings.get(keys::AGENT_CLAUDE_BIN).display()
        ),
    )
    .with_hint(format!(
        "install Claude Code (npm install -g @anthropic-ai/claude-code), or point {variable} or `{}` at it; `--agent mock` runs the built-in mock agent instead",
        key.name
    ))
    .with_source(error)
}

/// The orchestrator's configuration from the settings: every field a key sets comes from
/// the key, so the orchestrator's own defaults decide nothing for `baton`; the rest (turn
/// escalation, most of the retries) are the orchestrator's until keys set them.
pub fn run_config(settings: &Settings) -> RunConfig {
    RunConfig {
        concurrency: settings.get(keys::RUN_CONCURRENCY) as usize,
        policy: settings.get(keys::RUN_SESSION_POLICY),
        call_timeout: settings.get(keys::AGENT_TIMEOUT),
        verify_timeout: settings.get(keys::RUN_VERIFY_TIMEOUT),
        max_turns: Some(settings.get(keys::AGENT_MAX_TURNS)),
        rotation_threshold: settings.get(keys::RUN_CONTEXT_ROTATION_THRESHOLD),
        budget: Budget {
            max_cost: settings.get(keys::RUN_MAX_COST),
            max_tokens: settings.get(keys::RUN_MAX_TOKENS),
        },
        agent: AgentOptions {
            model: settings.get(keys::AGENT_MODEL),
            permission_mode: Some(settings.get(keys::AGENT_PERMISSION_MODE)),
            allowed_tools: settings.get(keys::AGENT_ALLOWED_TOOLS),
            env: agent_env(settings),
        },
        retry: RetryPolicy {
            outage_pause: settings.get(keys::API_OUTAGE_PAUSE),
            max_outage: settings.get(keys::API_MAX_OUTAGE),
            ..RetryPolicy::default()
        },
        isolation: settings
            .get(keys::RUN_ISOLATION)
            .map(crate::workspaces::isolation),
        worktree_dir: settings.get(keys::RUN_WORKTREE_DIR),
        deliver: match settings.get(keys::RUN_DELIVER) {
            keys::Deliver::Branch => orchestrator::DeliverMode::Branch,
            keys::Deliver::Merge => orchestrator::DeliverMode::Merge,
            keys::Deliver::Push => orchestrator::DeliverMode::Push,
        },
        remote: settings.get(keys::RUN_REMOTE),
        clones: settings.get(keys::RUN_CLONES),
        lease_ttl: settings.get(keys::LEDGER_LEASE_TTL),
        ledger_outage: settings.get(keys::LEDGER_MAX_OUTAGE),
        ..RunConfig::default()
    }
}

/// Whether the run copies sessions' transcripts into the ledger (`ledger.mirror_transcripts`):
/// `auto` mirrors into a PostgreSQL ledger, which runners on several hosts share, and not
/// into a SQLite file, which one host keeps.
pub fn mirror_transcripts(settings: &Settings, postgres: bool) -> bool {
    settings
        .get(keys::LEDGER_MIRROR_TRANSCRIPTS)
        .is_on(postgres)
}

/// The variable through which Claude Code reads how often to retry a failed API request.
pub const CLI_RETRIES_VARIABLE: &str = "CLAUDE_CODE_MAX_RETRIES";

/// The variables added to the agent's environment: `agent.env`, and Claude Code's own retries
/// set low (`api.cli_retries`) unless `agent.env` sets them. Left to itself Claude Code
/// retries for minutes, a refused key included (11 times, 3 minutes, on 2.1.328), out of
/// Baton's sight; low, every failure reaches Baton in seconds and Baton decides.
pub fn agent_env(settings: &Settings) -> std::collections::BTreeMap<String, String> {
    let mut env = settings.get(keys::AGENT_ENV);
    env.entry(String::from(CLI_RETRIES_VARIABLE))
        .or_insert_with(|| settings.get(keys::API_CLI_RETRIES).to_string());
    env
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use agent::PermissionMode;
    use session_store::SessionPolicy;

    use super::*;
    use crate::config::ConfigFile;
    use crate::settings::{Env, Source};

    #[test]
    fn the_run_configuration_comes_from_the_settings() {
        let file = ConfigFile::parse(
            "[agent]\nmodel = \"m\"\npermission_mode = \"plan\"\nallowed_tools = [\"Read\"]\nmax_turns = 7\ntimeout = \"90s\"\n\
             [agent.env]\nA = \"1\"\n\
             [run]\nconcurrency = 3\nsession_policy = \"fresh\"\ncontext_rotation_threshold = 0.5\nverify_timeout = \"2m\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let env = Env {
            cwd: std::env::temp_dir(),
            no_color: false,
            clicolor_force: false,
            redactor: redact::Redactor::new(),
            values: BTreeMap::new(),
            pager: None,
            vars: Vec::new(),
        };
        let config = run_config(&Settings::resolve(&file, None, &env));
        let expected = RunConfig {
            concurrency: 3,
            policy: SessionPolicy::Fresh,
            call_timeout: Duration::from_secs(90),
            verify_timeout: Duration::from_secs(120),
            max_turns: Some(7),
            rotation_threshold: 0.5,
            agent: AgentOptions {
                model: Some(String::from("m")),
                permission_mode: Some(PermissionMode::Plan),
                allowed_tools: vec![String::from("Read")],
                // Claude Code's own retries come with every call, low (api.cli_retries).
                env: BTreeMap::from([
                    (String::from("A"), String::from("1")),
                    (String::from(CLI_RETRIES_VARIABLE), String::from("1")),
                ]),
            },
            ..RunConfig::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn transcripts_are_mirrored_into_postgresql_unless_the_file_says_otherwise() {
        let mut env = Env {
            cwd: std::env::temp_dir(),
            no_color: false,
            clicolor_force: false,
            redactor: redact::Redactor::new(),
            values: BTreeMap::new(),
            pager: None,
            vars: Vec::new(),
        };
        let mirror = |text: &str, postgres: bool| {
            let file = ConfigFile::parse(text, Path::new("c.toml")).unwrap();
            mirror_transcripts(&Settings::resolve(&file, None, &env), postgres)
        };
        assert!(mirror("", true), "auto: on for PostgreSQL");
        assert!(!mirror("", false), "auto: off for SQLite");
        assert!(mirror("[ledger]\nmirror_transcripts = \"on\"\n", false));
        assert!(!mirror("[ledger]\nmirror_transcripts = \"off\"\n", true));
        assert!(mirror("[ledger]\nmirror_transcripts = \"auto\"\n", true));

        // Claude Code is told where baton's environment keeps its files, and nothing else.
        env.vars = [
            ("HOME", "/h"),
            ("CLAUDE_CONFIG_DIR", "/c"),
            ("PATH", "/bin"),
        ]
        .into_iter()
        .map(|(key, value)| (key.into(), value.into()))
        .collect();
        assert_eq!(
            claude_file_vars(&env),
            BTreeMap::from([
                (String::from("CLAUDE_CONFIG_DIR"), String::from("/c")),
                (String::from("HOME"), String::from("/h")),
            ])
        );
    }

    #[test]
    fn the_lease_ttl_comes_from_the_environment_then_the_file_then_the_default() {
        let mut env = Env {
            cwd: std::env::temp_dir(),
            no_color: false,
            clicolor_force: false,
            redactor: redact::Redactor::new(),
            values: BTreeMap::new(),
            pager: None,
            vars: Vec::new(),
        };
        let lease_ttl = |file: &ConfigFile, env: &Env| {
            let settings = Settings::resolve(file, None, env);
            (
                run_config(&settings).lease_ttl,
                settings.source(keys::LEDGER_LEASE_TTL),
            )
        };
        assert_eq!(
            lease_ttl(&ConfigFile::default(), &env),
            (RunConfig::default().lease_ttl, Source::Default),
            "the default is the orchestrator's own"
        );
        let file =
            ConfigFile::parse("[ledger]\nlease_ttl = \"5m\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(
            lease_ttl(&file, &env),
            (Duration::from_secs(300), Source::File)
        );
        // The environment's value, as `Env::capture` reads BATON_LEASE_TTL.
        let key = &keys::LEDGER_LEASE_TTL.definition;
        assert_eq!(key.sources.env, Some("BATON_LEASE_TTL"));
        let value = keys::from_os(key, std::ffi::OsStr::new("2s")).unwrap();
        env.values.insert(key.name, value);
        assert_eq!(
            lease_ttl(&file, &env),
            (Duration::from_secs(2), Source::Env)
        );
        // No flag sets it: the issue gives it a key and a variable only.
        assert!(key.sources.flags.is_empty());
    }

    #[test]
    fn a_zero_lease_ttl_is_refused() {
        let key = &keys::LEDGER_LEASE_TTL.definition;
        let problem = keys::from_os(key, std::ffi::OsStr::new("0s")).unwrap_err();
        assert_eq!(problem.says, "is zero: it must be longer than zero");
        let error =
            ConfigFile::parse("[ledger]\nlease_ttl = \"0s\"\n", Path::new("c.toml")).unwrap_err();
        assert!(error.to_string().contains("longer than zero"), "{error}");
    }

    #[test]
    fn agent_env_may_set_the_cli_retries_itself() {
        let file = ConfigFile::parse(
            "[api]\ncli_retries = 0\n[agent.env]\nCLAUDE_CODE_MAX_RETRIES = \"10\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let env = Env {
            cwd: std::env::temp_dir(),
            no_color: false,
            clicolor_force: false,
            redactor: redact::Redactor::new(),
            values: BTreeMap::new(),
            pager: None,
            vars: Vec::new(),
        };
        let config = run_config(&Settings::resolve(&file, None, &env));
        assert_eq!(config.agent.env[CLI_RETRIES_VARIABLE], "10");
        let file = ConfigFile::parse("[api]\ncli_retries = 0\n", Path::new("c.toml")).unwrap();
        let config = run_config(&Settings::resolve(&file, None, &env));
        assert_eq!(config.agent.env[CLI_RETRIES_VARIABLE], "0");
    }
}
