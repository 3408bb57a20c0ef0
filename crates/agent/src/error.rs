//! The ways an agent call can fail, in terms a caller can act on.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::reply::{AgentReply, Usage};
use crate::session::SessionId;

/// How an agent process ended, when it did not end well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitInfo::Code(code) => write!(f, "exit code {code}"),
            ExitInfo::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// Why an agent call did not succeed.
///
/// Each variant is something a caller decides on differently (see [`AgentError::kind`]).
/// Where the agent reported its figures before failing, the variant carries the
/// [`AgentReply`] so that usage and cost are still recorded.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A `Start` named a session the agent already has a transcript for.
    #[error("session {session_id} is already in use: it must be resumed, not started again")]
    SessionInUse { session_id: SessionId },

    /// A `Resume` named a session the agent has no transcript for.
    #[error("no conversation found for session {session_id} in this working directory")]
    SessionNotFound { session_id: SessionId },

    /// The agent reported a different session than the one it was given.
    #[error("the agent used session {reported} although it was assigned session {assigned}")]
    SessionMismatch {
        assigned: SessionId,
        reported: SessionId,
        reply: Option<Box<AgentReply>>,
    },

    /// The call ran past its wall-clock limit and was stopped.
    #[error("the agent call timed out after {}s and was stopped", after.as_secs_f64())]
    Timeout {
        after: Duration,
        /// Usage seen in the agent's progress before it was stopped, which may be partial.
        partial_usage: Usage,
    },

    /// The caller cancelled the call and it was stopped.
    #[error("the agent call was cancelled")]
    Cancelled { partial_usage: Usage },

    /// The agent process ended without reporting a result.
    #[error(
        "the agent process ended without a result ({exit}){}",
        stderr_suffix(stderr_tail)
    )]
    Crashed { exit: ExitInfo, stderr_tail: String },

    /// The agent printed something that is not its protocol.
    #[error("the agent's output could not be understood: {detail}")]
    MalformedOutput { detail: String },

    /// The agent program could not be started.
    #[error("could not start the agent program `{}`", program.display())]
    CannotSpawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The call's working directory does not exist; nothing was started.
    #[error("the working directory `{}` does not exist", path.display())]
    WorkingDirMissing { path: PathBuf },

    /// The model API failed (an HTTP error or an API error reported by the agent).
    #[error("the model API failed{}: {message}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Api {
        status: Option<u16>,
        message: String,
        reply: Option<Box<AgentReply>>,
    },

    /// The model API refused in a way no retry fixes: the credentials, the account or the
    /// model must change first (see [`Refusal`]).
    #[error("the model API refused{}: {message}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Refused {
        refusal: Refusal,
        status: Option<u16>,
        /// What the agent said, in its own words.
        message: String,
        reply: Option<Box<AgentReply>>,
    },

    /// The model API refused for a rate limit.
    #[error("the model API rate limit was hit{}: {message}", reset_suffix(*reset_at))]
    RateLimited {
        /// When the limit resets, when the agent said.
        reset_at: Option<SystemTime>,
        message: String,
        reply: Option<Box<AgentReply>>,
    },

    /// The call used its whole turn budget before finishing.
    #[error("the agent reached its limit of {} turns before finishing", max_turns.map(|n| n.to_string()).unwrap_or_else(|| "?".into()))]
    MaxTurns {
        max_turns: Option<u32>,
        reply: Box<AgentReply>,
    },

    /// The call used its whole spending budget before finishing.
    #[error("the agent reached its spending limit before finishing")]
    BudgetExceeded { reply: Box<AgentReply> },

    /// The agent reported an error while running (Claude Code's `error_during_execution`).
    #[error("the agent failed while running: {}", if errors.is_empty() { String::from("no detail given") } else { errors.join("; ") })]
    Execution {
        errors: Vec<String>,
        reply: Box<AgentReply>,
    },

    /// Talking to the agent process failed (a pipe broke, a wait failed).
    #[error("i/o with the agent process failed")]
    Io(#[source] std::io::Error),
}

fn stderr_suffix(stderr_tail: &str) -> String {
    let tail = stderr_tail.trim();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr ends with: {tail}")
    }
}

fn reset_suffix(reset_at: Option<SystemTime>) -> String {
    match reset_at.and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(since_epoch) => format!(" (resets at unix time {})", since_epoch.as_secs()),
        None => String::new(),
    }
}

/// Why the model API refused a call in a way no retry fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The credentials are missing, wrong or expired (401, "Not logged in").
    Authentication,
    /// The credentials may not do this (403).
    Permission,
    /// The account cannot pay (400 "credit balance is too low").
    Billing,
    /// The model does not exist or the account may not use it (404).
    ModelUnavailable,
}

impl Refusal {
    /// The error kind a call refused this way is recorded with.
    pub const fn kind(self) -> ErrorKind {
        match self {
            Refusal::Authentication => ErrorKind::Authentication,
            Refusal::Permission => ErrorKind::Permission,
            Refusal::Billing => ErrorKind::Billing,
            Refusal::ModelUnavailable => ErrorKind::ModelUnavailable,
        }
    }

    /// What a person does about it, in a sentence.
    pub const fn what_to_do(self) -> &'static str {
        match self {
            Refusal::Authentication => {
                "log in with `claude auth login`, or set ANTHROPIC_API_KEY to a valid key; `baton doctor` shows what Claude Code uses"
            }
            Refusal::Permission => {
                "use credentials that may call this API (`claude auth login`, or another ANTHROPIC_API_KEY); `baton doctor` shows what Claude Code uses"
            }
            Refusal::Billing => {
                "add credits or check the plan in the Anthropic Console's Plans & Billing, or use other credentials"
            }
            Refusal::ModelUnavailable => {
                "pick a model the account can use (the agent.model setting, or the model in the Claude Code settings)"
            }
        }
    }
}

/// The kind of an [`AgentError`], without its data: what the ledger records and what a
/// caller's decision table is keyed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    SessionInUse,
    SessionNotFound,
    SessionMismatch,
    Timeout,
    Cancelled,
    Crashed,
    MalformedOutput,
    CannotSpawn,
    WorkingDirMissing,
    Api,
    RateLimited,
    MaxTurns,
    BudgetExceeded,
    Execution,
    Io,
    Authentication,
    Permission,
    Billing,
    ModelUnavailable,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::SessionInUse,
        ErrorKind::SessionNotFound,
        ErrorKind::SessionMismatch,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Crashed,
        ErrorKind::MalformedOutput,
        ErrorKind::CannotSpawn,
        ErrorKind::WorkingDirMissing,
        ErrorKind::Api,
        ErrorKind::RateLimited,
        ErrorKind::MaxTurns,
        ErrorKind::BudgetExceeded,
        ErrorKind::Execution,
        ErrorKind::Io,
        ErrorKind::Authentication,
        ErrorKind::Permission,
        ErrorKind::Billing,
        ErrorKind::ModelUnavailable,
    ];

    /// The stable word stored in the ledger.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::SessionInUse => "session_in_use",
            ErrorKind::SessionNotFound => "session_not_found",
            ErrorKind::SessionMismatch => "session_mismatch",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Crashed => "crashed",
            ErrorKind::MalformedOutput => "malformed_output",
            ErrorKind::CannotSpawn => "cannot_spawn",
            ErrorKind::WorkingDirMissing => "working_dir_missing",
            ErrorKind::Api => "api_error",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::MaxTurns => "max_turns",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::Execution => "execution_error",
            ErrorKind::Io => "io",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::Billing => "billing_error",
            ErrorKind::ModelUnavailable => "model_unavailable",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AgentError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AgentError::SessionInUse { .. } => ErrorKind::SessionInUse,
            AgentError::SessionNotFound { .. } => ErrorKind::SessionNotFound,
            AgentError::SessionMismatch { .. } => ErrorKind::SessionMismatch,
            AgentError::Timeout { .. } => ErrorKind::Timeout,
            AgentError::Cancelled { .. } => ErrorKind::Cancelled,
            AgentError::Crashed { .. } => ErrorKind::Crashed,
            AgentError::MalformedOutput { .. } => ErrorKind::MalformedOutput,
            AgentError::CannotSpawn { .. } => ErrorKind::CannotSpawn,
            AgentError::WorkingDirMissing { .. } => ErrorKind::WorkingDirMissing,
            AgentError::Api { .. } => ErrorKind::Api,
            AgentError::Refused { refusal, .. } => refusal.kind(),
            AgentError::RateLimited { .. } => ErrorKind::RateLimited,
            AgentError::MaxTurns { .. } => ErrorKind::MaxTurns,
            AgentError::BudgetExceeded { .. } => ErrorKind::BudgetExceeded,
            AgentError::Execution { .. } => ErrorKind::Execution,
            AgentError::Io(_) => ErrorKind::Io,
        }
    }

    /// The figures the agent reported before failing, when it reported any.
    pub fn reply(&self) -> Option<&AgentReply> {
        match self {
            AgentError::SessionMismatch { reply, .. }
            | AgentError::Api { reply, .. }
            | AgentError::Refused { reply, .. }
            | AgentError::RateLimited { reply, .. } => reply.as_deref(),
            AgentError::MaxTurns { reply, .. }
            | AgentError::BudgetExceeded { reply }
            | AgentError::Execution { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// Usage the call is known to have spent: the reported figures, or what progress showed
    /// before the call was stopped.
    pub fn usage_spent(&self) -> Usage {
        match self {
            AgentError::Timeout { partial_usage, .. } | AgentError::Cancelled { partial_usage } => {
                *partial_usage
            }
            other => other.reply().map(|reply| reply.usage).unwrap_or_default(),
        }
    }

    /// Why the API refused the call, when no retry can fix it: the run stops at the first
    /// such error rather than fail every task the same way.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            AgentError::Refused { refusal, .. } => Some(*refusal),
            _ => None,
        }
    }

    /// Whether the same call may succeed if tried again after a wait: an overloaded or
    /// failing API, a rate limit. Session and input errors are never transient.
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::RateLimited { .. } => true,
            AgentError::Api { status, .. } => match status {
                Some(status) => {
                    *status == 408 || *status == 409 || *status == 429 || *status >= 500
                }
                // An API failure with no status is most often a dropped connection.
                None => true,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_stable_word() {
        let mut words: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.as_str()).collect();
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
        }
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn errors_keep_the_figures_the_agent_reported() {
        let id = SessionId::new_v4();
        let mut reply = AgentReply::empty(id);
        reply.usage.output_tokens = 7;
        reply.subtype = "error_max_turns".into();
        let err = AgentError::MaxTurns {
            max_turns: Some(3),
            reply: Box::new(reply),
        };
        assert_eq!(err.kind(), ErrorKind::MaxTurns);
        assert_eq!(err.usage_spent().output_tokens, 7);
        assert_eq!(
            err.to_string(),
            "the agent reached its limit of 3 turns before finishing"
        );
    }

    #[test]
    fn only_api_trouble_is_transient() {
        let overloaded = AgentError::Api {
            status: Some(529),
            message: "overloaded".into(),
            reply: None,
        };
        let bad_request = AgentError::Api {
            status: Some(400),
            message: "bad".into(),
            reply: None,
        };
        let in_use = AgentError::SessionInUse {
            session_id: SessionId::new_v4(),
        };
        assert!(overloaded.is_transient());
        assert!(!bad_request.is_transient());
        assert!(!in_use.is_transient());
        assert_eq!(
            overloaded.to_string(),
            "the model API failed with status 529: overloaded"
        );
    }

    #[test]
    fn refusals_have_their_own_kinds_and_are_never_transient() {
        let refused = AgentError::Refused {
            refusal: Refusal::Billing,
            status: Some(400),
            message: "Credit balance is too low".into(),
            reply: None,
        };
        assert_eq!(refused.kind(), ErrorKind::Billing);
        assert_eq!(refused.kind().as_str(), "billing_error");
        assert_eq!(refused.refusal(), Some(Refusal::Billing));
        assert!(!refused.is_transient());
        assert_eq!(
            refused.to_string(),
            "the model API refused with status 400: Credit balance is too low"
        );
    }

    #[test]
    fn crash_message_carries_the_stderr_tail() {
        let err = AgentError::Crashed {
            exit: ExitInfo::Signal(9),
            stderr_tail: "boom\n".into(),
        };
        assert_eq!(
            err.to_string(),
            "the agent process ended without a result (signal 9); stderr ends with: boom"
        );
    }
}
