//! Cross-crate integration tests, in one binary.

mod chaos;
mod contract;
mod fail_fast;
mod handoff;
mod hosts;
mod stress;
mod transcript_handoff;
mod worktree_handoff;
