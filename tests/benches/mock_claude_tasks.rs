//! Tasks per second through `mock-claude` subprocesses, at concurrency 1 and 4.
//!
//! The stress harness runs N tasks that each pass at once, with no verification command, so a
//! task is one `mock-claude` process driven through `agent-claude`'s adapter plus the
//! orchestrator's and the ledger's work around it. The audit still runs; its findings are
//! printed, not fatal: benchmarks report.
//!
//! Run with `cargo bench -p tests --bench mock_claude_tasks [-- --tasks N]` (default 300).

use std::path::PathBuf;

use tests::stress::{self, AgentKind, Mix, StressConfig};

const MOCK_CLAUDE: &str = env!("CARGO_BIN_EXE_contract-mock-claude");
const DEFAULT_TASKS: usize = 300;

fn main() {
    let tasks = tasks_from_args();
    for concurrency in [1, 4] {
        let config = StressConfig {
            tasks,
            concurrency,
            mix: Mix::AllPass,
            verify: false,
            program: Some(PathBuf::from(MOCK_CLAUDE)),
            ..StressConfig::new(AgentKind::MockClaude)
        };
        let run = match stress::run(&config) {
            Ok(run) => run,
            Err(err) => {
                println!(
                    "tasks through mock-claude (concurrency {concurrency}): not measured: {err:#}"
                );
                continue;
            }
        };
        let seconds = run.wall.as_secs_f64();
        println!(
            "tasks through mock-claude (concurrency {concurrency}): {:.1} tasks/s ({tasks} tasks \
             in {seconds:.2} s; orchestrator overhead per call p50 {:.2} ms, p99 {:.2} ms)",
            tasks as f64 / seconds,
            run.overhead.percentile(50.0).as_secs_f64() * 1000.0,
            run.overhead.percentile(99.0).as_secs_f64() * 1000.0,
        );
        for violation in &run.violations {
            println!("  audit: {violation}");
        }
    }
}

/// Reads `--tasks N`; cargo also passes `--bench`, which is ignored.
fn tasks_from_args() -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--tasks" {
            return args
                .next()
                .and_then(|value| value.parse().ok())
                .filter(|tasks| *tasks > 0)
                .expect("--tasks needs a positive number");
        }
    }
    DEFAULT_TASKS
}
