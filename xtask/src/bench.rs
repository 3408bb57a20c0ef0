//! `cargo xtask bench`: runs every benchmark in release mode and lets each print its figures.

use crate::{cargo, run_command};

/// The benchmarks, as (package, bench target).
const BENCHES: &[(&str, &str)] = &[("session-store", "cycle")];

pub fn run() -> anyhow::Result<()> {
    for (package, bench) in BENCHES {
        run_command(cargo().args(["bench", "--package", package, "--bench", bench]))?;
    }
    Ok(())
}
