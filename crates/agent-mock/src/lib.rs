//! Test doubles for Baton's agents: a scripted in-process agent, a `mockall` mock of the
//! `Agent` trait, and the `mock-claude` executable that stands in for Claude Code's CLI.
//!
//! - [`MockAgent`] plays a script of [`Step`]s in process: fast, deterministic, for
//!   orchestration tests. It keeps transcripts so that session mistakes (starting twice,
//!   resuming what was never started) fail as they would with the real CLI.
//! - [`MockAgentTrait`] is a `mockall` mock, for "was the agent called with this session".
//! - `mock-claude` (the binary of this package, module [`claude`]) keeps the CLI's contract
//!   (flags, transcript files, "already in use", the stream and the result object) and plays
//!   a [`Scenario`] from a JSON file, for tests of everything that spawns the CLI.
//!
//! This crate sits on `agent` only; it knows nothing of the real adapter.

pub mod claude;
mod error;
mod mock_agent;
mod mockall_agent;
pub mod scenario;
pub mod transcript;

pub use crate::error::{MockClaudeError, ScenarioError};
pub use crate::mock_agent::{MockAgent, Step, TranscriptTurn};
pub use crate::mockall_agent::MockAgentTrait;
pub use crate::scenario::{Outcome, Scenario};
