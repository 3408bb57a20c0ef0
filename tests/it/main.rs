//! Cross-crate integration tests, in one binary.

mod contract;
mod handoff;
mod stress;
