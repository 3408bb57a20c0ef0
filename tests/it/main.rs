//! Cross-crate integration tests, in one binary.

mod contract;
