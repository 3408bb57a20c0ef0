//! How a run behaves: concurrency, budgets, timeouts, retries, and what agents are told.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agent::PermissionMode;
use session_store::{Budget, SessionPolicy};

use crate::workspace::{DeliverMode, Isolation};

/// Everything a run needs to know besides the tasks themselves.
///
/// The defaults are the ones a person gets from `baton run` with no configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// How many tasks may run at once. At least 1.
    pub concurrency: usize,
    /// The session policy of tasks that set none themselves and whose milestone sets none.
    pub policy: SessionPolicy,
    /// The wall-clock limit of one agent call.
    pub call_timeout: Duration,
    /// The wall-clock limit of one verification command.
    pub verify_timeout: Duration,
    /// The turn budget of a call when the task sets none. `None` leaves it to the agent.
    pub max_turns: Option<u32>,
    /// The most a call's turn budget grows to when the agent keeps running out of turns.
    pub max_turns_cap: u32,
    /// How transient agent failures are retried.
    pub retry: RetryPolicy,
    /// The run's own budget: what all its agent calls together may spend. Tasks' and
    /// milestones' budgets are in the ledger.
    pub budget: Budget,
    /// The share of the model's context window (0 to 1) past which a session is rotated.
    pub rotation_threshold: f64,
    /// How long a session lease lasts unless renewed; running calls renew it.
    pub lease_ttl: Duration,
    /// Whether a task whose iterations run out is `blocked` for a person instead of `failed`.
    pub escalate_when_exhausted: bool,
    /// What every agent call is told besides its prompt and session.
    pub agent: AgentOptions,
    /// The isolation of tasks that asked for none at `task add`; `None` decides per task:
    /// a worktree inside a git repository with a commit, the directory as it is otherwise.
    pub isolation: Option<Isolation>,
    /// Where task worktrees go; `None` is `.baton/worktrees` under the repository's top level.
    pub worktree_dir: Option<PathBuf>,
    /// What a completed task's branch becomes.
    pub deliver: DeliverMode,
    /// The remote a completed task's branch is pushed to under [`DeliverMode::Push`]: the
    /// name of a configured remote of the task's repository. Its URL is recorded with the
    /// task, and a runner on another host finds its own clone through that URL.
    pub remote: String,
    /// The directory the run was started in: when the repository a task recorded is not on
    /// this host, a clone of the task's remote found from here is the first one used.
    pub start_dir: Option<PathBuf>,
    /// Where Baton keeps the clones it makes of a task's remote when this host has none;
    /// `None` makes none, and such a task is blocked saying so.
    pub clones: Option<PathBuf>,
    /// How long a run keeps trying a ledger it cannot reach (a PostgreSQL server restarting, a
    /// network gone) before the write fails and the run stops.
    pub ledger_outage: Duration,
    /// Whether the run keeps taking work until it is cancelled, and how often it looks at
    /// the ledger while it has room for more: for tasks added since, and for tasks a dead
    /// runner left behind, which it sweeps first. `None` ends the run when nothing it
    /// selected is ready.
    pub watch: Option<Duration>,
    /// Whether each session's transcript is copied into the ledger after every call and put
    /// back before a resume on a host whose agent lacks it, so that a task moving between
    /// hosts continues its conversation. The copy is verbatim: it may hold whatever the agent
    /// saw. Only agents with the capability take part (see `Agent::read_transcript`).
    pub mirror_transcripts: bool,
}

/// How transient failures (an overloaded or failing API, a rate limit) are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries of one call before the task fails. Each retry is a recorded call.
    pub max_retries: u32,
    /// The wait before the first retry; each later wait doubles, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest wait for a rate limit's reset; a later reset fails the task instead.
    pub max_rate_limit_wait: Duration,
    /// Transient API failures in a row, across the run's tasks, that make an outage: the
    /// whole run pauses instead of each task retrying on its own. 0 never pauses the run.
    pub outage_after: u32,
    /// Failures further apart than this are no streak.
    pub outage_window: Duration,
    /// The first pause of an outage; each later one doubles, up to `max_delay`.
    pub outage_pause: Duration,
    /// The most an outage may pause the run, in all, before the run stops (tasks pending).
    pub max_outage: Duration,
}

/// Options handed to the agent on every call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentOptions {
    pub model: Option<String>,
    pub permission_mode: Option<PermissionMode>,
    pub allowed_tools: Vec<String>,
    /// Environment variables added for the agent.
    pub env: BTreeMap<String, String>,
}

impl RunConfig {
    /// The default [`RunConfig::lease_ttl`].
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

    /// [`RunConfig::ledger_outage`] unless set: long enough for a database server to restart.
    pub const DEFAULT_LEDGER_OUTAGE: Duration = Duration::from_secs(300);
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            concurrency: 1,
            policy: SessionPolicy::Task,
            call_timeout: agent::DEFAULT_CALL_TIMEOUT,
            verify_timeout: Duration::from_secs(10 * 60),
            max_turns: Some(50),
            max_turns_cap: 200,
            retry: RetryPolicy::default(),
            budget: Budget::NONE,
            rotation_threshold: 0.8,
            lease_ttl: RunConfig::DEFAULT_LEASE_TTL,
            escalate_when_exhausted: false,
            agent: AgentOptions {
                permission_mode: Some(PermissionMode::AcceptEdits),
                ..AgentOptions::default()
            },
            isolation: None,
            worktree_dir: None,
            deliver: DeliverMode::Branch,
            remote: String::from("origin"),
            start_dir: None,
            clones: None,
            watch: None,
            ledger_outage: RunConfig::DEFAULT_LEDGER_OUTAGE,
            mirror_transcripts: false,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_rate_limit_wait: Duration::from_secs(60 * 60),
            outage_after: 3,
            outage_window: Duration::from_secs(60),
            outage_pause: Duration::from_secs(10),
            max_outage: Duration::from_secs(30 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (from 1).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = RetryPolicy {
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let waits: Vec<u64> = (1..=5).map(|n| retry.backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 10, 10]);
        assert_eq!(retry.backoff(100), Duration::from_secs(10));
    }
}
