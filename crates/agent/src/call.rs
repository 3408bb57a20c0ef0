//! What one agent call is asked to do.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::session::SessionPlan;

/// The wall-clock limit of a call when the caller sets none.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One call to an agent: a prompt, the session it runs in, and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentCall {
    /// The prompt. It is handed to the agent as data (on stdin for a CLI), never through a
    /// shell or the argument list.
    pub prompt: String,
    /// Which session the call runs in, and whether it starts or resumes it.
    pub plan: SessionPlan,
    /// The directory the agent works in. It must exist.
    pub working_dir: PathBuf,
    /// The most agentic turns the call may take, when limited.
    pub max_turns: Option<u32>,
    /// The most money the call may spend, in US dollars, when limited. An agent stops the call
    /// once its own spend reaches it and fails with [`AgentError::BudgetExceeded`]; what it
    /// spent before, in earlier calls of the same session, does not count.
    ///
    /// [`AgentError::BudgetExceeded`]: crate::AgentError::BudgetExceeded
    pub max_cost_usd: Option<f64>,
    /// The wall-clock limit of the whole call, after which it is stopped.
    pub timeout: Duration,
    /// The model to use, when not the agent's default.
    pub model: Option<String>,
    /// How the agent may use tools, when not the agent's default.
    pub permission_mode: Option<PermissionMode>,
    /// Tools the agent may use without asking. Empty means the agent's default.
    pub allowed_tools: Vec<String>,
    /// Environment variables set for this call on top of the inherited environment.
    pub env: BTreeMap<String, String>,
}

impl AgentCall {
    /// A call with the given prompt, plan and directory and default limits.
    pub fn new(
        prompt: impl Into<String>,
        plan: SessionPlan,
        working_dir: impl Into<PathBuf>,
    ) -> AgentCall {
        AgentCall {
            prompt: prompt.into(),
            plan,
            working_dir: working_dir.into(),
            max_turns: None,
            max_cost_usd: None,
            timeout: DEFAULT_CALL_TIMEOUT,
            model: None,
            permission_mode: None,
            allowed_tools: Vec::new(),
            env: BTreeMap::new(),
        }
    }
}

/// How an agent may use tools that change things.
///
/// The words are Claude Code's `--permission-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PermissionMode {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "acceptEdits")]
    AcceptEdits,
    #[serde(rename = "plan")]
    Plan,
    /// Every tool runs without asking. Only ever used when a person configured it.
    #[serde(rename = "bypassPermissions")]
    BypassPermissions,
}

impl PermissionMode {
    pub const ALL: [PermissionMode; 4] = [
        PermissionMode::Default,
        PermissionMode::AcceptEdits,
        PermissionMode::Plan,
        PermissionMode::BypassPermissions,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Plan => "plan",
            PermissionMode::BypassPermissions => "bypassPermissions",
        }
    }
}

impl fmt::Display for PermissionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a permission mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a permission mode: expected one of default, acceptEdits, plan, bypassPermissions"
)]
pub struct ParsePermissionModeError {
    pub input: String,
}

impl FromStr for PermissionMode {
    type Err = ParsePermissionModeError;

    fn from_str(s: &str) -> Result<PermissionMode, ParsePermissionModeError> {
        PermissionMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| ParsePermissionModeError {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    #[test]
    fn new_call_has_default_limits() {
        let call = AgentCall::new("hi", SessionPlan::Start(SessionId::new_v4()), "/tmp");
        assert_eq!(call.timeout, DEFAULT_CALL_TIMEOUT);
        assert_eq!(call.max_turns, None);
        assert_eq!(call.permission_mode, None);
    }

    #[test]
    fn permission_modes_round_trip() {
        for mode in PermissionMode::ALL {
            assert_eq!(mode.as_str().parse::<PermissionMode>(), Ok(mode));
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
        }
        assert!("yolo".parse::<PermissionMode>().is_err());
    }
}
