//! The stress run's report, as `cargo xtask stress-test` prints it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::stress::StressRun;
use crate::stress::audit::Invariant;

/// How many violations of one invariant are printed; the rest are counted.
const SHOWN_PER_INVARIANT: usize = 20;

/// The report of `run`: what ran, what the ledger holds, how fast, and what the audit found.
pub fn render(run: &StressRun) -> String {
    let config = &run.config;
    let summary = &run.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stress-test: {} tasks, concurrency {}, {} iterations, agent {}, policy {}, seed {}",
        config.tasks,
        config.concurrency,
        config.iterations,
        config.agent,
        config.policy,
        config.seed
    );
    let _ = writeln!(out, "  ledger:             {}", run.ledger);
    let kinds: Vec<String> = run
        .plan
        .kind_counts()
        .into_iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    let _ = writeln!(
        out,
        "  script:             {}{}",
        kinds.join(", "),
        if config.verify {
            ""
        } else {
            " (no verification)"
        }
    );
    let _ = writeln!(
        out,
        "  tasks by status:    {}",
        counts(&summary.tasks_by_status)
    );
    let _ = writeln!(
        out,
        "  agent calls:        {} ({})",
        summary.calls,
        counts(&summary.calls_by_outcome)
    );
    let _ = writeln!(
        out,
        "  sessions by status: {}",
        counts(&summary.sessions_by_status)
    );
    let errors = summary.errors_by_kind();
    let _ = writeln!(
        out,
        "  errors by kind:     {}",
        if errors.is_empty() {
            String::from("none")
        } else {
            counts(&errors)
        }
    );
    let usage = &summary.usage;
    let _ = writeln!(
        out,
        "  usage:              {} input, {} output, {} cache read, {} cache write tokens; {}",
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_creation_tokens,
        summary.cost
    );
    let seconds = run.wall.as_secs_f64().max(f64::EPSILON);
    let _ = writeln!(
        out,
        "  throughput:         {} tasks in {seconds:.2} s = {:.1} tasks/s, {:.1} agent calls/s",
        summary.tasks_by_status.values().sum::<usize>(),
        config.tasks as f64 / seconds,
        summary.calls as f64 / seconds,
    );
    let overhead = &run.overhead;
    let _ = writeln!(
        out,
        "  orchestrator overhead per agent call: p50 {}, p99 {}, mean {}, max {} \
         ({} calls; agent time {:.1} s, verification {:.1} s, orchestrator {:.1} s)",
        millis(overhead.percentile(50.0)),
        millis(overhead.percentile(99.0)),
        millis(overhead.mean()),
        millis(overhead.percentile(100.0)),
        overhead.samples.len(),
        overhead.agent_time.as_secs_f64(),
        overhead.check_time.as_secs_f64(),
        overhead.total().as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "  scheduler, with no task under way: {:.2} s of the run ({} per task)",
        run.outside_tasks.as_secs_f64(),
        millis(run.outside_tasks / u32::try_from(config.tasks).unwrap_or(u32::MAX).max(1)),
    );
    let audited = &run.audited;
    let _ = writeln!(
        out,
        "  audit:              {} tasks, {} sessions, {} calls ({} witnessed), against {}",
        audited.tasks,
        audited.sessions,
        audited.calls,
        audited.witnessed_calls,
        audited.agent_record
    );
    if let Some(path) = &run.kept_ledger {
        let _ = writeln!(out, "  ledger kept at:     {}", path.display());
    }
    if run.violations.is_empty() {
        out.push_str("no violations\n");
        return out;
    }
    let mut by_invariant: BTreeMap<Invariant, Vec<&str>> = BTreeMap::new();
    for violation in &run.violations {
        by_invariant
            .entry(violation.invariant)
            .or_default()
            .push(&violation.detail);
    }
    for (invariant, details) in &by_invariant {
        for detail in details.iter().take(SHOWN_PER_INVARIANT) {
            let _ = writeln!(out, "violation [{invariant}]: {detail}");
        }
        if details.len() > SHOWN_PER_INVARIANT {
            let _ = writeln!(
                out,
                "violation [{invariant}]: … and {} more",
                details.len() - SHOWN_PER_INVARIANT
            );
        }
    }
    let _ = writeln!(out, "{} violations", run.violations.len());
    out
}

fn counts(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(word, count)| format!("{word} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn millis(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}
