//! The fault-injection suite: scenarios that run the real `baton` program against faults, bad
//! input and attempts to leak or escalate, and check that nothing is lost and no one is let in.
//!
//! Each [`Scenario`] sets up its own hermetic [`lab::Lab`] (temp dirs, private HOME,
//! `mock-claude` as the agent, loopback only), does its damage, and returns a one-line account
//! of what it observed, or an error saying which promise broke. `cargo xtask chaos` runs them
//! all and prints the table ([`render`]); the `tests` package's `it/chaos.rs` runs each as its
//! own test.

pub mod faults;
pub mod input;
pub mod lab;
pub mod safety;
pub mod stops;
pub mod worktrees;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::chaos::faults::Misbehaviour;
pub use crate::chaos::lab::Binaries;

/// What a scenario is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Fault,
    Input,
    Safety,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Fault => "fault",
            Area::Input => "input",
            Area::Safety => "safety",
        }
    }
}

/// One scenario: what it does and what must hold.
pub struct Scenario {
    /// A stable kebab-case name, also the test's name (with `_`).
    pub name: &'static str,
    pub area: Area,
    /// What must happen, in a sentence.
    pub expect: &'static str,
    run: fn(&Binaries) -> anyhow::Result<String>,
}

impl Scenario {
    /// Runs the scenario; `Ok` carries what was observed.
    pub fn run(&self, bins: &Binaries) -> Outcome {
        let started = Instant::now();
        let result = (self.run)(bins).map_err(|error| format!("{error:#}"));
        Outcome {
            name: self.name,
            area: self.area,
            took: started.elapsed(),
            result,
        }
    }
}

/// How a scenario went.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub area: Area,
    pub took: Duration,
    /// What was observed, or what went wrong.
    pub result: Result<String, String>,
}

/// Every scenario, in the order the table shows them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "sigkill-mid-call",
        area: Area::Fault,
        expect: "agent dies with baton; next run abandons the session and completes the task; finished calls kept, no half call",
        run: faults::sigkill_mid_call,
    },
    Scenario {
        name: "sigint-mid-call",
        area: Area::Fault,
        expect: "exit 130; agent stopped; session abandoned; task pending, completed by the next run",
        run: |bins| faults::interrupted_mid_call(bins, libc::SIGINT),
    },
    Scenario {
        name: "sigterm-mid-call",
        area: Area::Fault,
        expect: "exit 143; agent stopped; session abandoned; task pending, completed by the next run",
        run: |bins| faults::interrupted_mid_call(bins, libc::SIGTERM),
    },
    Scenario {
        name: "agent-hangs",
        area: Area::Fault,
        expect: "the call times out, the agent is killed, the task fails saying so, the next task runs",
        run: |bins| {
            faults::agent_misbehaves(
                bins,
                &Misbehaviour {
                    step: serde_json::json!({"outcome": "hang", "ignore_term": true}),
                    agent_config: "timeout = \"2s\"",
                    task_ends: "failed",
                    reason: &["timed out"],
                    max_rss_mib: 64,
                    outcome: "timeout",
                    answer: None,
                },
            )
        },
    },
    Scenario {
        name: "agent-crashes-mid-stream",
        area: Area::Fault,
        expect: "the task fails naming the crash; the call is recorded; the next task runs",
        run: |bins| {
            faults::agent_misbehaves(
                bins,
                &Misbehaviour {
                    step: serde_json::json!({"outcome": "crash", "signal": 9}),
                    agent_config: "",
                    task_ends: "failed",
                    reason: &["signal 9"],
                    max_rss_mib: 64,
                    outcome: "crashed",
                    answer: None,
                },
            )
        },
    },
    Scenario {
        name: "agent-prints-garbage",
        area: Area::Fault,
        expect: "the task fails saying the output was not the stream protocol; the next task runs",
        run: |bins| {
            faults::agent_misbehaves(
                bins,
                &Misbehaviour {
                    step: serde_json::json!({"outcome": "garbage", "garbage_lines": 50}),
                    agent_config: "",
                    task_ends: "failed",
                    reason: &["result"],
                    max_rss_mib: 64,
                    outcome: "malformed_output",
                    answer: None,
                },
            )
        },
    },
    Scenario {
        name: "agent-prints-nothing",
        area: Area::Fault,
        expect: "the task fails saying the agent printed no result; the next task runs",
        run: |bins| {
            faults::agent_misbehaves(
                bins,
                &Misbehaviour {
                    step: serde_json::json!({"outcome": "garbage", "garbage_lines": 0}),
                    agent_config: "",
                    task_ends: "failed",
                    reason: &["result"],
                    max_rss_mib: 64,
                    outcome: "crashed",
                    answer: None,
                },
            )
        },
    },
    Scenario {
        name: "agent-prints-non-utf8",
        area: Area::Fault,
        expect: "invalid bytes do not crash baton; the task fails with a reason; the next task runs",
        run: |bins| {
            faults::agent_misbehaves(
                bins,
                &Misbehaviour {
                    step: serde_json::json!({"outcome": "non_utf8"}),
                    agent_config: "",
                    task_ends: "failed",
                    reason: &["result"],
                    max_rss_mib: 64,
                    outcome: "malformed_output",
                    answer: None,
                },
            )
        },
    },
    Scenario {
        name: "agent-floods-300-mib",
        area: Area::Fault,
        expect: "300 MiB of stream output: baton's memory stays bounded; the call's answer is recorded",
        run: |bins| {
            faults::agent_misbehaves(
                bins,
                &Misbehaviour {
                    step: serde_json::json!({"huge_output_mb": 300, "result": "survived the flood"}),
                    agent_config: "",
                    task_ends: "completed",
                    reason: &[],
                    max_rss_mib: 64,
                    outcome: "success",
                    answer: Some("survived the flood"),
                },
            )
        },
    },
    Scenario {
        name: "agent-exits-0-without-result",
        area: Area::Fault,
        expect: "exit 0 without a result line is a failure, not a success; the next task runs",
        run: |bins| {
            faults::agent_misbehaves(
                bins,
                &Misbehaviour {
                    step: serde_json::json!({"outcome": "no_result"}),
                    agent_config: "",
                    task_ends: "failed",
                    reason: &["result"],
                    max_rss_mib: 64,
                    outcome: "crashed",
                    answer: None,
                },
            )
        },
    },
    Scenario {
        name: "two-runs-one-ledger",
        area: Area::Fault,
        expect: "no task run twice, no session used by both, no lock error, both exit 0",
        run: faults::two_runs_one_ledger,
    },
    Scenario {
        name: "ledger-locked",
        area: Area::Fault,
        expect: "a short lock is waited out; past the busy timeout: exit 4, says locked, ledger unchanged",
        run: faults::ledger_locked,
    },
    Scenario {
        name: "ledger-read-only",
        area: Area::Fault,
        expect: "writing fails with exit 4 naming the file; nothing changes",
        run: faults::ledger_read_only,
    },
    Scenario {
        name: "disk-full",
        area: Area::Fault,
        expect: "exit 4 saying the disk is full; ledger intact and unchanged; works again with room",
        run: faults::disk_full,
    },
    Scenario {
        name: "newer-schema",
        area: Area::Fault,
        expect: "exit 4 asking for a newer baton; the file is not touched",
        run: faults::newer_schema,
    },
    Scenario {
        name: "workdir-deleted-while-queued",
        area: Area::Fault,
        expect: "that task fails naming the directory, without an agent call; the others go on",
        run: faults::workdir_deleted,
    },
    Scenario {
        name: "unknown-ids",
        area: Area::Input,
        expect: "exit 3 naming the id; ledger unchanged",
        run: input::unknown_ids,
    },
    Scenario {
        name: "malformed-ids",
        area: Area::Input,
        expect: "exit 2 naming the bad value; ledger unchanged",
        run: input::malformed_ids,
    },
    Scenario {
        name: "bad-config",
        area: Area::Input,
        expect: "exit 2 naming the file, line and key; ledger unchanged",
        run: input::bad_config,
    },
    Scenario {
        name: "missing-claude",
        area: Area::Input,
        expect: "exit 5 naming the program before any task starts; ledger unchanged",
        run: input::missing_claude,
    },
    Scenario {
        name: "bad-prompt-files",
        area: Area::Input,
        expect: "missing: exit 3; binary, NUL, empty, a directory: exit 2; ledger unchanged",
        run: input::bad_prompt_files,
    },
    Scenario {
        name: "huge-prompt-on-stdin",
        area: Area::Input,
        expect: "an 8 MiB prompt is stored whole and reaches the agent on stdin, not argv",
        run: input::huge_prompt_on_stdin,
    },
    Scenario {
        name: "shell-metacharacters",
        area: Area::Input,
        expect: "titles, prompts, names and paths kept byte for byte; nothing in them runs",
        run: input::shell_metacharacters,
    },
    Scenario {
        name: "dependency-cycle",
        area: Area::Input,
        expect: "exit 2 naming the cycle; ledger unchanged",
        run: input::dependency_cycle,
    },
    Scenario {
        name: "zero-and-negative-limits",
        area: Area::Input,
        expect: "flags and config keys out of range: exit 2 naming them; ledger unchanged",
        run: input::zero_and_negative_limits,
    },
    Scenario {
        name: "secrets-stay-out",
        area: Area::Safety,
        expect: "a fake key and token appear in no ledger file and no output; shown redacted",
        run: safety::secrets_stay_out,
    },
    Scenario {
        name: "owner-only-files",
        area: Area::Safety,
        expect: "under umask 000, .baton/ is 0700 and every file in it 0600",
        run: safety::owner_only_files,
    },
    Scenario {
        name: "permissions-only-when-configured",
        area: Area::Safety,
        expect: "no bypassPermissions or --dangerously-skip-permissions unless configured",
        run: safety::permissions_only_when_configured,
    },
    Scenario {
        name: "verification-runs-in-a-shell",
        area: Area::Safety,
        expect: "verification commands, and only they, run in sh -c",
        run: safety::verification_runs_in_a_shell,
    },
    Scenario {
        name: "sigkill-in-worktree",
        area: Area::Fault,
        expect: "the next run reuses the task's worktree path and resumes its session; nothing left locked or running",
        run: worktrees::sigkill_in_worktree,
    },
    Scenario {
        name: "check-outlives-baton",
        area: Area::Fault,
        expect: "a check left running by a SIGKILLed baton is stopped, its whole process group, by recovery",
        run: worktrees::check_outlives_baton,
    },
    Scenario {
        name: "worktree-deleted-by-hand",
        area: Area::Fault,
        expect: "the retry re-creates the worktree at the same path from the task's branch and completes",
        run: worktrees::worktree_deleted_by_hand,
    },
    Scenario {
        name: "repository-locked",
        area: Area::Fault,
        expect: "another git process's index.lock blocks the task naming the lock; no work lost; the retry completes",
        run: worktrees::repository_locked,
    },
    Scenario {
        name: "disk-full-while-committing",
        area: Area::Fault,
        expect: "the task is blocked with git's message, its work kept in the worktree; the retry commits it",
        run: worktrees::disk_full_while_committing,
    },
    Scenario {
        name: "bad-key",
        area: Area::Fault,
        expect: "10 tasks, a key the API refuses (401): exit 5 after one call, naming the cause and `claude auth login`; all pending, nothing open; fixed, the next run completes them in their sessions",
        run: |bins| {
            stops::refused(
                bins,
                &stops::Refused {
                    status: 401,
                    message: "invalid x-api-key",
                    says: &["Invalid API key", "claude auth login", "ANTHROPIC_API_KEY"],
                    kind: "authentication_error",
                },
            )
        },
    },
    Scenario {
        name: "empty-account",
        area: Area::Fault,
        expect: "10 tasks, an account out of credit (400): exit 5 after one call, naming the cause and billing; all pending, nothing open; fixed, the next run completes them",
        run: |bins| {
            stops::refused(
                bins,
                &stops::Refused {
                    status: 400,
                    message: "Your credit balance is too low to access the Anthropic API.",
                    says: &["Credit balance is too low", "Plans & Billing"],
                    kind: "billing_error",
                },
            )
        },
    },
    Scenario {
        name: "api-down-for-a-minute",
        area: Area::Fault,
        expect: "the API fails 6 calls (529) then recovers: the run pauses for all tasks and says so; every task completes in one iteration; each attempt recorded",
        run: stops::api_down_for_a_while,
    },
    Scenario {
        name: "api-gone",
        area: Area::Fault,
        expect: "the API never answers (503): past api.max_outage the run stops with exit 5; tasks pending, nothing open",
        run: stops::api_gone,
    },
    Scenario {
        name: "stopped-by-timeout",
        area: Area::Fault,
        expect: "`timeout` stops the run mid-call (SIGTERM to baton, then its group): one request, exit 143; call recorded as cancelled, session abandoned, task pending; next run resumes it",
        run: |bins| stops::stopped(bins, stops::StoppedBy::Timeout),
    },
    Scenario {
        name: "stopped-like-a-service",
        area: Area::Fault,
        expect: "SIGTERM to baton and its agent at once (systemd, docker stop): exit 143 within 10 s; the agent's death is the shutdown, not a crash; task pending; next run resumes it",
        run: |bins| stops::stopped(bins, stops::StoppedBy::Service),
    },
    Scenario {
        name: "two-hosts-200-tasks",
        area: Area::Fault,
        expect: "two hosts (network namespaces) share a PostgreSQL ledger, 200 tasks at concurrency 4 each: every task done once, no session on both, audit clean",
        run: crate::hosts::scenarios::two_hosts_share_a_ledger,
    },
    Scenario {
        name: "host-dies",
        area: Area::Fault,
        expect: "a host killed whole mid-call: past the TTL the other host's watching runner rescues the task and completes it once",
        run: crate::hosts::scenarios::host_dies,
    },
    Scenario {
        name: "host-cut-off",
        area: Area::Fault,
        expect: "a host's link down mid-call past the TTL: the other host completes the task; back online, the cut-off runner stops its agent and writes nothing",
        run: crate::hosts::scenarios::host_cut_off,
    },
    Scenario {
        name: "server-restarts",
        area: Area::Fault,
        expect: "the PostgreSQL server restarts under two hosts' runs of 40 tasks: the runs wait for it and complete; no call lost, none recorded twice",
        run: crate::hosts::scenarios::server_restarts,
    },
];

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|scenario| scenario.name == name)
}

/// Runs the scenario called `name` and panics, with what went wrong, unless it held: for tests.
#[track_caller]
pub fn check(name: &str, bins: &Binaries) {
    let scenario = scenario(name).unwrap_or_else(|| panic!("no chaos scenario `{name}`"));
    let outcome = scenario.run(bins);
    match outcome.result {
        Ok(observed) => eprintln!("{name}: {observed} ({:.1?})", outcome.took),
        Err(error) => panic!("{name} broke its promise ({}):\n{error}", scenario.expect),
    }
}

/// The table `cargo xtask chaos` prints: one row per scenario, then the failures in full.
pub fn render(outcomes: &[Outcome]) -> String {
    let rows: Vec<[String; 5]> = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| {
            let (result, observed) = match &outcome.result {
                Ok(observed) => ("pass", observed.clone()),
                Err(error) => ("FAIL", error.lines().next().unwrap_or_default().to_owned()),
            };
            [
                (index + 1).to_string(),
                format!("{} {}", outcome.area.as_str(), outcome.name),
                result.to_owned(),
                format!("{:.1}s", outcome.took.as_secs_f64()),
                observed,
            ]
        })
        .collect();
    let header = ["#", "scenario", "result", "time", "what happened"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row).take(4) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 5]| {
        let _ = writeln!(
            out,
            "| {:>w0$} | {:<w1$} | {:<w2$} | {:>w3$} | {} |",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    };
    line(&mut out, header);
    let _ = writeln!(
        out,
        "|{}:|{}|{}|{}:|---|",
        "-".repeat(widths[0] + 1),
        "-".repeat(widths[1] + 2),
        "-".repeat(widths[2] + 2),
        "-".repeat(widths[3] + 1),
    );
    for row in &rows {
        line(&mut out, [&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| outcome.result.is_err())
        .collect();
    let total: Duration = outcomes.iter().map(|outcome| outcome.took).sum();
    let _ = writeln!(
        out,
        "\n{} scenarios: {} passed, {} failed, in {:.1} s",
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len(),
        total.as_secs_f64()
    );
    for outcome in failed {
        if let Err(error) = &outcome.result {
            let _ = writeln!(out, "\n{} failed:\n{error}", outcome.name);
        }
    }
    out
}
