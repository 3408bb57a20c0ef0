//! The contract between Baton and a coding agent.
//!
//! Baton owns session identity: it mints a [`SessionId`], commits it to its ledger, and only
//! then hands it to an agent inside an [`AgentCall`] as [`SessionPlan::Start`] or
//! [`SessionPlan::Resume`]. An [`Agent`] holds no session state of its own; every call names
//! its session explicitly, and every [`AgentReply`] says which session the agent reports it
//! used so the caller can verify it.
//!
//! This crate has no runtime, no database and spawns no processes: it is types and one trait.

mod call;
mod error;
mod event;
mod reply;
mod session;
mod transcript;

pub use crate::call::{AgentCall, DEFAULT_CALL_TIMEOUT, ParsePermissionModeError, PermissionMode};
pub use crate::error::{AgentError, ErrorKind, ExitInfo, Refusal};
pub use crate::event::{AgentEvent, EventSink};
pub use crate::reply::{AgentReply, PermissionDenial, Usage};
pub use crate::session::{ParseSessionIdError, PlanKind, SessionId, SessionPlan};
pub use crate::transcript::{
    MAX_PROJECT_DIR_LEN, Restored, Transcript, TranscriptError, project_dir_name,
};

pub use tokio_util::sync::CancellationToken;

/// What a health probe learned about an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// A short name for the kind of agent, such as `claude` or `mock`.
    pub name: String,
    /// The version the agent reports about itself.
    pub version: String,
    /// The executable that answered, when the agent is an external program.
    pub program: Option<std::path::PathBuf>,
}

/// A coding agent that Baton can drive.
///
/// Implementations must be stateless about sessions: everything a call needs is in the
/// [`AgentCall`]. Two calls on different sessions may run at once; the caller guarantees that
/// two calls on one session never do.
#[async_trait::async_trait]
pub trait Agent: Send + Sync {
    /// Runs one agent call to completion.
    ///
    /// Progress is reported through `events` while the call runs. When `cancel` fires the call
    /// stops whatever it is doing, leaves nothing running behind it, and returns
    /// [`AgentError::Cancelled`].
    async fn call(
        &self,
        call: AgentCall,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<AgentReply, AgentError>;

    /// Checks that the agent can be run at all, and reports its version.
    async fn probe(&self) -> Result<AgentInfo, AgentError>;

    /// The transcript the agent keeps of `call`'s session, read after the call, so that the
    /// session can continue on another host; `Ok(None)` when there is none. `call` is the
    /// call just made: its working directory and environment say where the agent keeps it.
    ///
    /// An optional capability: the default is [`TranscriptError::Unsupported`].
    async fn read_transcript(
        &self,
        call: &AgentCall,
    ) -> Result<Option<Transcript>, TranscriptError> {
        let _ = call;
        Err(TranscriptError::Unsupported)
    }

    /// Whether the agent has a transcript of `call`'s session where a resume finds it.
    ///
    /// An optional capability: the default is [`TranscriptError::Unsupported`].
    async fn has_transcript(&self, call: &AgentCall) -> Result<bool, TranscriptError> {
        let _ = call;
        Err(TranscriptError::Unsupported)
    }

    /// Puts `transcript` where resuming `call`'s session finds it, before that call. A
    /// transcript of the session the agent has already is kept, unless `transcript`
    /// [extends](Transcript::extends) it (the session went on on another host since): then
    /// the copy replaces it.
    ///
    /// An optional capability: the default is [`TranscriptError::Unsupported`].
    async fn restore_transcript(
        &self,
        call: &AgentCall,
        transcript: &Transcript,
    ) -> Result<Restored, TranscriptError> {
        let _ = (call, transcript);
        Err(TranscriptError::Unsupported)
    }
}
