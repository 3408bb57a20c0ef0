//! What an agent call produced: the reply and the figures it cost.

use std::ops::{Add, AddAssign};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::session::SessionId;

/// Tokens used, as the Messages API counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
}

impl Usage {
    pub const ZERO: Usage = Usage {
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_creation_tokens: 0,
    };

    /// Every token of the prompt side: fresh input plus cache reads and writes.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens
    }

    pub fn is_zero(&self) -> bool {
        *self == Usage::ZERO
    }
}

impl Add for Usage {
    type Output = Usage;

    fn add(mut self, rhs: Usage) -> Usage {
        self += rhs;
        self
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        self.input_tokens += rhs.input_tokens;
        self.output_tokens += rhs.output_tokens;
        self.cache_read_tokens += rhs.cache_read_tokens;
        self.cache_creation_tokens += rhs.cache_creation_tokens;
    }
}

/// A tool use the agent was not allowed to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionDenial {
    pub tool_name: String,
    pub tool_use_id: Option<String>,
    /// The tool's input, as JSON text.
    pub tool_input: Option<String>,
}

/// What one agent call reported at its end.
///
/// A successful call returns it directly. A call that ended in an error after the agent
/// reported its figures (ran out of turns, an API error) carries it inside the
/// [`AgentError`](crate::AgentError), so that what was spent is never lost.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    /// The session id the agent says it used. The caller checks it against the one it assigned.
    pub session_id: SessionId,
    /// The agent's final text, when it produced one.
    pub result_text: Option<String>,
    /// The agent's own word for how the call ended (Claude Code's result `subtype`).
    pub subtype: String,
    /// Tokens this call used (this call only, not the session so far).
    pub usage: Usage,
    /// What this call cost, in US dollars.
    pub cost_usd: f64,
    /// Agentic turns this call took.
    pub turns: u32,
    /// Wall-clock time of the call as the agent measured it.
    pub duration: Duration,
    /// The model that answered, when reported.
    pub model: Option<String>,
    /// The model's context window in tokens, when reported.
    pub context_window: Option<u64>,
    /// Tool uses that were denied. The call can still have succeeded.
    pub permission_denials: Vec<PermissionDenial>,
    /// The agent process's exit code, when there was a process and it exited normally.
    pub exit_code: Option<i32>,
}

impl AgentReply {
    /// A reply with zero figures, for the given session. Useful for agents and tests that
    /// fill in only what they know.
    pub fn empty(session_id: SessionId) -> AgentReply {
        AgentReply {
            session_id,
            result_text: None,
            subtype: String::from("success"),
            usage: Usage::ZERO,
            cost_usd: 0.0,
            turns: 0,
            duration: Duration::ZERO,
            model: None,
            context_window: None,
            permission_denials: Vec::new(),
            exit_code: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_adds_field_by_field() {
        let a = Usage {
            input_tokens: 1,
            output_tokens: 2,
            cache_read_tokens: 3,
            cache_creation_tokens: 4,
        };
        let b = Usage {
            input_tokens: 10,
            output_tokens: 20,
            cache_read_tokens: 30,
            cache_creation_tokens: 40,
        };
        let sum = a + b;
        assert_eq!(
            sum,
            Usage {
                input_tokens: 11,
                output_tokens: 22,
                cache_read_tokens: 33,
                cache_creation_tokens: 44
            }
        );
        assert_eq!(sum.prompt_tokens(), 11 + 33 + 44);
        assert!(Usage::ZERO.is_zero());
        assert!(!sum.is_zero());
    }
}
