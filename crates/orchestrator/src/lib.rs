//! Baton's task loop: session policies and leases, verification, decisions, milestones,
//! concurrency and recovery.
//!
//! An [`Orchestrator`] holds the ledger ([`session_store::Store`]) and an agent (anything
//! implementing [`agent::Agent`]; this crate never names a concrete one). [`Orchestrator::run`]
//! first recovers from any crash, then runs ready tasks, up to the configured concurrency.
//! For each task it owns the session: it mints the id, commits the session and its lease
//! before the agent starts, hands the id over as `Start` or `Resume`, checks that the agent
//! used it, records every call whole, and closes the session on every way out.

mod budget;
mod config;
mod context;
mod db;
mod error;
mod event;
mod halt;
mod heartbeat;
mod history;
mod outage;
pub mod prompt;
mod recovery;
mod run;
mod task;
pub mod verify;
pub mod workspace;

pub use crate::budget::{Amount, RunSpend, TURNS_ESCALATED};
pub use crate::config::{AgentOptions, RetryPolicy, RunConfig};
pub use crate::db::Db;
pub use crate::error::OrchestratorError;
pub use crate::event::{RunEvent, RunEvents};
pub use crate::halt::AgentUnavailable;
pub use crate::recovery::{Recovered, recover};
pub use crate::run::{Orchestrator, RunReport, Selection};
pub use crate::task::{TaskOutcome, TaskReport};
pub use crate::workspace::{DeliverMode, GitWorkspaces, Isolation, Workspaces};
