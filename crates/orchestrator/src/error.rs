//! What can stop a run as a whole (as opposed to failing one task).

use session_store::StoreError;

/// A run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The ledger failed; nothing more can be recorded, so nothing more is run.
    #[error("the ledger failed")]
    Store(#[from] StoreError),

    /// The run's configuration is unusable.
    #[error("invalid run configuration: {field} {reason}")]
    Config { field: &'static str, reason: String },
}
