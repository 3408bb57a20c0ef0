//! Shared support for the cross-crate tests in `it/`, and the stress harness (`stress`) that
//! `cargo xtask stress-test` and the end-to-end benchmarks run.

pub mod chaos;
pub mod hosts;
pub mod stress;
