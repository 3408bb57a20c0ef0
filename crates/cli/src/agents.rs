//! The agents `baton` can run tasks with, built from the settings, and the run configuration
//! they are driven with.

use std::path::Path;
use std::sync::Arc;

use agent::{Agent, AgentError, AgentInfo, Usage};
use agent_claude::{ClaudeAgent, ClaudeConfig};
use agent_mock::{MockAgent, Step};
use orchestrator::{AgentOptions, RunConfig};

use crate::error::{CliError, Kind};
use crate::flags::AgentKind;
use crate::settings::{CLAUDE_BIN_ENV, Settings, Source};

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

/// The agent the settings name.
pub fn build(settings: &Settings) -> Arc<dyn Agent> {
    match settings.agent {
        AgentKind::Claude => Arc::new(claude(&settings.claude_bin)),
        AgentKind::Mock => Arc::new(builtin_mock()),
    }
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

/// The error for an agent that does not answer its probe.
pub fn unavailable(error: AgentError, settings: &Settings) -> CliError {
    let from = match settings.claude_bin_from {
        Source::Env => format!(" (from {CLAUDE_BIN_ENV})"),
        Source::File => String::from(" (from agent.claude_bin in the configuration)"),
        Source::Flag | Source::Default => String::new(),
    };
    CliError::new(
        Kind::AgentUnavailable,
        format!(
            "the agent is unavailable: `{}`{from} does not run",
            settings.claude_bin.display()
        ),
    )
    .with_hint(format!(
        "install Claude Code (npm install -g @anthropic-ai/claude-code), or point {CLAUDE_BIN_ENV} or `agent.claude_bin` at it; `--agent mock` runs the built-in mock agent instead"
    ))
    .with_source(error)
}

/// The orchestrator's configuration from the settings.
pub fn run_config(settings: &Settings) -> RunConfig {
    RunConfig {
        concurrency: settings.concurrency as usize,
        policy: settings.policy,
        call_timeout: settings.call_timeout,
        verify_timeout: settings.verify_timeout,
        max_turns: Some(settings.max_turns),
        rotation_threshold: settings.rotation_threshold,
        agent: AgentOptions {
            model: settings.model.clone(),
            permission_mode: Some(settings.permission_mode),
            allowed_tools: settings.allowed_tools.clone(),
            env: settings.agent_env.clone(),
        },
        ..RunConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigFile, Defaults};
    use crate::settings::Env;

    #[test]
    fn the_config_defaults_are_the_orchestrators() {
        let defaults = RunConfig::default();
        let env = Env {
            cwd: std::env::temp_dir(),
            db: None,
            claude_bin: None,
            no_color: false,
            clicolor_force: false,
            busy_timeout: None,
            redactor: session_store::Redactor::new(),
        };
        let settings = Settings::resolve(&ConfigFile::default(), None, &env);
        assert_eq!(run_config(&settings), defaults);
        assert_eq!(Defaults::TIMEOUT, agent::DEFAULT_CALL_TIMEOUT);
        assert_eq!(
            Defaults::MAX_ITERATIONS,
            session_store::NewTask::DEFAULT_MAX_ITERATIONS
        );
    }
}
