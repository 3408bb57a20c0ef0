//! Baton's task loop: session policies and leases, verification, decisions, milestones,
//! concurrency and recovery.
//!
//! Built so far: the prompts ([`prompt`]) and the verification runner ([`verify`]). The loop
//! that drives tasks through the store and an agent is not built yet.

pub mod prompt;
pub mod verify;
