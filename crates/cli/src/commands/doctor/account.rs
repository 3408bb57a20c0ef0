//! `baton doctor`'s account checks: what `claude auth status` says (logged in, how), and with
//! `--probe` one minimal call that proves the credentials work and says what it cost.

use std::path::Path;
use std::time::Duration;

use agent::{Agent, AgentCall, EventSink, PermissionMode, SessionId, SessionPlan};
use serde_json::{Value as Json, json};

use super::{Check, failed, ok, warning};
use crate::agents;
use crate::error::{CliError, Kind, Result};
use crate::keys;
use crate::settings::Settings;

/// The longest the probe call may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// The `account` check, and the JSON `claude auth status` printed, when it printed some.
pub(super) fn check_account(settings: &Settings) -> (Check, Option<Json>) {
    let program = settings.get(keys::AGENT_CLAUDE_BIN);
    let status = match auth_status(&program, settings) {
        Ok(status) => status,
        Err(reason) => {
            let check = warning(
                "account",
                &format!("could not read `claude auth status`: {reason}"),
            );
            return (check, None);
        }
    };
    let logged_in = status["loggedIn"].as_bool().unwrap_or(false);
    let method = status["authMethod"].as_str().unwrap_or("unknown");
    let check = if logged_in {
        let source = status["apiKeySource"]
            .as_str()
            .map(|source| format!(", key from {source}"))
            .unwrap_or_default();
        ok("account", format!("logged in ({method}{source})"))
    } else {
        failed(
            "account",
            &CliError::new(Kind::AgentUnavailable, "Claude Code is not logged in").with_hint(
                "run `claude auth login`, or set ANTHROPIC_API_KEY; a run would stop at its first call",
            ),
        )
    };
    (check, Some(status))
}

/// Runs `claude auth status` with the agent's environment and reads its JSON.
fn auth_status(program: &Path, settings: &Settings) -> std::result::Result<Json, String> {
    let agent = agents::claude(program);
    let runtime = super::super::runtime().map_err(|error| error.to_string())?;
    let stdout = runtime
        .block_on(agent.auth_status(&agents::agent_env(settings)))
        .map_err(|error| error.to_string())?;
    // It exits 1 when not logged in, with the same JSON: the JSON decides.
    serde_json::from_str(stdout.trim()).map_err(|_| String::from("it printed no JSON"))
}

/// The `probe` check: one minimal call in a throw-away directory, with what it cost.
pub(super) fn check_probe(settings: &Settings) -> Result<(Check, Option<Json>)> {
    let program = settings.get(keys::AGENT_CLAUDE_BIN);
    let agent = agents::claude(&program);
    let dir = tempfile::Builder::new()
        .prefix("baton-probe.")
        .tempdir()
        .map_err(|error| {
            CliError::internal("could not make a directory for the probe").with_source(error)
        })?;
    let mut call = AgentCall::new(
        "Reply with the single word: ok",
        SessionPlan::Start(SessionId::new_v4()),
        dir.path(),
    );
    call.max_turns = Some(1);
    call.timeout = PROBE_TIMEOUT;
    call.model = settings.get(keys::AGENT_MODEL);
    call.permission_mode = Some(PermissionMode::Default);
    call.env = agents::agent_env(settings);
    let runtime = super::super::runtime()?;
    let outcome = runtime.block_on(agent.call(
        call,
        EventSink::new(|_| {}),
        agent::CancellationToken::new(),
    ));
    Ok(match outcome {
        Ok(reply) => {
            let detail = format!(
                "one call answered in {:.1}s, costing ${:.4} ({} in / {} out tokens{})",
                reply.duration.as_secs_f64(),
                reply.cost_usd,
                reply.usage.input_tokens,
                reply.usage.output_tokens,
                reply
                    .model
                    .as_deref()
                    .map(|model| format!(", {model}"))
                    .unwrap_or_default()
            );
            let figures = json!({
                "cost_usd": reply.cost_usd,
                "input_tokens": reply.usage.input_tokens,
                "output_tokens": reply.usage.output_tokens,
                "model": reply.model,
                "duration_ms": reply.duration.as_millis(),
            });
            (ok("probe", detail), Some(figures))
        }
        Err(error) => {
            let hint = error
                .refusal()
                .map(|refusal| refusal.what_to_do().to_owned())
                .unwrap_or_else(|| String::from("`claude -p` fails the same way; see its message"));
            let failure = CliError::new(
                Kind::AgentUnavailable,
                format!("the probe call failed: {error}"),
            )
            .with_hint(hint);
            (failed("probe", &failure), None)
        }
    })
}
