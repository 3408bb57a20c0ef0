//! Baton's task loop: session policies and leases, verification, decisions, milestones,
//! concurrency and recovery.
//!
//! Not built yet: this crate is a placeholder in the workspace map until the orchestrator
//! issue lands. It exports nothing, so nothing can mistake it for a working loop.
