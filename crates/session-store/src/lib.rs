//! Baton's durable ledger of tasks, sessions and agent calls, kept in SQLite.
//!
//! The ledger is one SQLite file opened through a [`Store`]. Its API is synchronous and typed:
//! ids are newtypes ([`TaskId`], [`MilestoneId`], [`SessionId`](agent::SessionId)), states are
//! enums ([`TaskStatus`], [`SessionStatus`], [`SessionPolicy`]), and every failure a caller
//! decides on is its own [`StoreError`] variant.
//!
//! What the ledger guarantees:
//!
//! - **A session exists before its agent runs.** [`Store::open_session`] commits the session
//!   row and its lease before it returns; recording a call for a session that was never
//!   opened is [`StoreError::NotFound`] naming the session, never a foreign-key failure.
//! - **Every write is whole.** Each operation is one write transaction (SQLite's `BEGIN IMMEDIATE`): an agent
//!   call, its session's totals and its task's totals are written together or not at all.
//!   [`Store::batch`] puts several operations in one transaction, so that writes that belong
//!   together (a call and what it consumed, a task's last checks and its finish) share one
//!   commit.
//! - **A commit survives a power cut** with [`Durability::Full`], the default: every commit
//!   syncs the write-ahead log. [`Durability::Normal`] is the documented faster choice that
//!   can lose the last commits to a power cut or an OS crash (never to a killed process).
//! - **One process per session.** A session's lease names its owner (pid, host, process start
//!   time) and an expiry; of two processes racing for it exactly one wins, the other gets
//!   [`StoreError::LeaseHeld`]. [`Store::sweep_stale`] abandons sessions whose owner died or
//!   whose lease expired.
//! - **Task states follow the state machine** in [`TaskStatus`], and every change is logged
//!   as an event in the same transaction.
//! - **No secret is written.** The store takes free text (titles, prompts, commands, answers,
//!   check output, reasons, event details) only as [`redact::Redacted`], which only a
//!   [`redact::Redactor`] makes: forgetting to redact is a compile error. The few texts the
//!   store composes itself (a sweep's reason naming a host, an event's detail, guidance
//!   folded into a reason) pass through the redactor it was opened with
//!   ([`StoreOptions::new`]). Ids, paths and numbers are kept as given. The one exception
//!   is a session's transcript ([`Store::save_session_transcript`]), which comes as an
//!   [`agent::Transcript`] and is kept verbatim, since a resume on another host needs it
//!   byte for byte.
//!
//! Units: timestamps are [`Timestamp`]s (unix milliseconds); money is [`Cost`], an exact count
//! of nano-dollars, converted from the agents' floating-point dollars once, at the edge.

mod budgets;
mod calls;
mod claims;
mod db;
mod error;
mod events;
mod ids;
mod location;
mod lookup;
mod migrations;
mod milestones;
mod options;
mod process;
mod runners;
mod sessions;
mod sql;
mod status;
mod store;
mod tasks;
mod tls;
mod transcripts;
mod units;
mod usage;
mod verifications;
mod workspaces;

pub use crate::budgets::{BUDGET_SET, Budget, BudgetScope, BudgetStatus, total_tokens, usd};
pub use crate::calls::{NewAgentCall, RecordedCall};
pub use crate::claims::Claimed;
pub use crate::db::DatabaseError;
pub use crate::error::{Missing, StoreError};
pub use crate::events::{Event, EventFilter, NewEvent, event_kind};
pub use crate::ids::{CallId, EventId, MilestoneId, RunnerId, TaskId, VerificationId};
pub use crate::location::{Location, PgpassKey, PostgresUrl};
pub use crate::migrations::SCHEMA_VERSION;
pub use crate::milestones::{Milestone, NewMilestone};
pub use crate::options::{PostgresEnvironment, PostgresPassword};
pub use crate::process::{AgentProcess, LeaseOwner};
pub use crate::runners::{Fence, Runner};
pub use crate::sessions::{Lease, NewSession, Session, SessionFilter, SweepReason, SweptSession};
pub use crate::status::{CallOutcome, SessionPolicy, SessionStatus, TaskStatus};
pub use crate::store::{
    Batch, CommitCounter, Counter, Durability, RoundTripCounter, Store, StoreOptions,
};
pub use crate::tasks::{NewTask, Task, TaskFilter};
pub use crate::tls::TlsError;
pub use crate::transcripts::StoredTranscript;
pub use crate::units::{Cost, Timestamp, Totals};
pub use crate::verifications::{NewVerification, Verification};
pub use crate::workspaces::{CheckProcess, TaskWorkspace};
