//! `chaos`: runs the fault-injection scenarios (see the `tests` library's `chaos` module) and
//! prints a table of what each did. `cargo xtask chaos` builds and runs it.
//!
//! Exits 0 when every scenario held, 1 when one broke (each failure is printed in full), and
//! 2 when the suite could not run at all.

use std::process::ExitCode;

use clap::Parser;
use tests::chaos::{self, Binaries, SCENARIOS};

/// Runs `baton` through faults, bad input and attempts to leak secrets or escalate
/// permissions, and prints what happened.
#[derive(Parser)]
#[command(name = "chaos")]
struct Args {
    /// Run only the scenarios whose names contain one of these words (default: all).
    filters: Vec<String>,
    /// List the scenarios and what each expects, without running them.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for scenario in SCENARIOS {
            println!(
                "{:<34} {:<6} {}",
                scenario.name,
                scenario.area.as_str(),
                scenario.expect
            );
        }
        return ExitCode::SUCCESS;
    }
    let bins = match std::env::current_exe()
        .map_err(anyhow::Error::from)
        .and_then(|exe| Binaries::beside(&exe))
    {
        Ok(bins) => bins,
        Err(error) => {
            eprintln!("chaos: {error:#}");
            return ExitCode::from(2);
        }
    };
    let chosen: Vec<_> = SCENARIOS
        .iter()
        .filter(|scenario| {
            args.filters.is_empty()
                || args
                    .filters
                    .iter()
                    .any(|filter| scenario.name.contains(filter.as_str()))
        })
        .collect();
    if chosen.is_empty() {
        eprintln!(
            "chaos: no scenario matches {:?}; `--list` shows them",
            args.filters
        );
        return ExitCode::from(2);
    }
    let mut outcomes = Vec::new();
    for scenario in chosen {
        eprintln!("chaos: {} …", scenario.name);
        outcomes.push(scenario.run(&bins));
    }
    print!("{}", chaos::render(&outcomes));
    if outcomes.iter().all(|outcome| outcome.result.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
