//! What Baton adds to a real Claude Code call: the wall time of one task through Baton against
//! the same prompt sent with `claude -p` directly, both answered by the Messages-API stand-in
//! on loopback.
//!
//! - Direct: `claude` with the argv Baton builds for the call (`-p`, stream-json,
//!   `--session-id`, `--max-turns`, `--permission-mode`), the prompt on stdin, timed from
//!   spawn to exit.
//! - Through Baton, in process: a one-task ledger, `Orchestrator::run` with `agent-claude`'s
//!   `ClaudeAgent`, timed from the start of the run to its end (recovery, the scheduler, the
//!   session opened and closed, the call recorded). This is what `baton run` does once its
//!   command line is parsed.
//! - Through the `baton` binary, when `BATON_BIN` names one: `baton run` of one task in a
//!   workspace made by `baton init --agent claude` and `baton task add`, timed as a process.
//!
//! Each side runs several times, alternating, after one warm-up each; the ratio is of the
//! medians. Without the CLI it says so and measures nothing. Run with
//! `cargo bench -p tests --bench claude_overhead [-- --rounds N]` (default 11).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{AgentCall, CancellationToken, PermissionMode, SessionId, SessionPlan};
use agent_claude::{ClaudeAgent, ClaudeConfig};
use api_standin::{Answer, ClaudeEnv, Script, StandIn};
use orchestrator::{Orchestrator, RunConfig, Selection};
use session_store::{NewTask, Store};

const PROMPT: &str = "Say done, then stop.";
const DEFAULT_ROUNDS: usize = 11;

fn main() {
    let rounds = rounds_from_args();
    let claude = match api_standin::claude_binary() {
        Ok(claude) => claude,
        Err(reason) => {
            println!("baton vs claude -p: not measured: {reason}");
            return;
        }
    };
    let standin = StandIn::start(Script::always(Answer::text("Done.")));
    let env = ClaudeEnv::new(&standin);
    let work = env.work_dir("bench");
    let baton = std::env::var_os("BATON_BIN").map(PathBuf::from);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let mut direct = Vec::new();
    let mut in_process = Vec::new();
    let mut binary = Vec::new();
    let mut binary_error = None;
    for round in 0..=rounds {
        let times = (
            claude_direct(&claude, &env, &work),
            runtime.block_on(through_orchestrator(&claude, &env, &work)),
            baton
                .as_deref()
                .map(|baton| through_baton(baton, &claude, &env, &work)),
        );
        // Round 0 warms the page cache and the CLI's own caches.
        if round == 0 {
            continue;
        }
        direct.push(times.0);
        in_process.push(times.1);
        match times.2 {
            Some(Ok(time)) => binary.push(time),
            Some(Err(err)) => binary_error = Some(err),
            None => {}
        }
    }
    let direct_median = median(&mut direct);
    let in_process_median = median(&mut in_process);
    println!(
        "claude -p directly: median {:.0} ms over {rounds} calls",
        direct_median.as_secs_f64() * 1000.0
    );
    println!(
        "one task through baton (orchestrator in process, real CLI): median {:.0} ms; ratio to \
         claude -p {:.3}",
        in_process_median.as_secs_f64() * 1000.0,
        in_process_median.as_secs_f64() / direct_median.as_secs_f64()
    );
    match (baton, binary_error) {
        (None, _) => println!(
            "one task through the baton binary: not measured (BATON_BIN is not set; \
             `cargo xtask bench` sets it when `baton` builds)"
        ),
        (Some(_), Some(err)) => {
            println!("one task through the baton binary: not measured: {err}");
        }
        (Some(_), None) => {
            let binary_median = median(&mut binary);
            println!(
                "one task through the baton binary (`baton run`, as a process): median {:.0} ms; \
                 ratio to claude -p {:.3}",
                binary_median.as_secs_f64() * 1000.0,
                binary_median.as_secs_f64() / direct_median.as_secs_f64()
            );
        }
    }
}

/// Reads `--rounds N`; cargo also passes `--bench`, which is ignored.
fn rounds_from_args() -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            return args
                .next()
                .and_then(|value| value.parse().ok())
                .filter(|rounds| *rounds > 0)
                .expect("--rounds needs a positive number");
        }
    }
    DEFAULT_ROUNDS
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// The call Baton makes for the task's first iteration, with `RunConfig`'s defaults.
fn first_call(work: &Path) -> AgentCall {
    let defaults = RunConfig::default();
    let mut call = AgentCall::new(PROMPT, SessionPlan::Start(SessionId::new_v4()), work);
    call.max_turns = defaults.max_turns;
    call.permission_mode = Some(PermissionMode::AcceptEdits);
    call
}

fn claude_direct(claude: &Path, env: &ClaudeEnv, work: &Path) -> Duration {
    let call = first_call(work);
    let started = Instant::now();
    let mut child = Command::new(claude)
        .args(agent_claude::build_argv(&call))
        .current_dir(work)
        .envs(env.vars())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("claude starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(PROMPT.as_bytes())
        .expect("the prompt is written");
    let output = child.wait_with_output().expect("claude ends");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "claude -p failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    elapsed
}

async fn through_orchestrator(claude: &Path, env: &ClaudeEnv, work: &Path) -> Duration {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("baton.db");
    let task = Store::open_with(
        &db,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .expect("the ledger opens")
    .add_task(&NewTask::new(
        redact::Redacted::trusted("bench"),
        redact::Redacted::trusted(PROMPT),
        work,
    ))
    .expect("the task is added");
    let mut config = ClaudeConfig::new(claude);
    config.env = env.vars();
    let orchestrator = Orchestrator::new(
        Store::open_with(
            &db,
            &session_store::StoreOptions::new(redact::Redactor::new()),
        )
        .expect("the ledger opens"),
        Arc::new(ClaudeAgent::new(config)),
        RunConfig::default(),
    )
    .expect("the orchestrator is set up");
    let started = Instant::now();
    let report = orchestrator
        .run(&Selection::all(), CancellationToken::new())
        .await
        .expect("the run succeeds");
    let elapsed = started.elapsed();
    assert!(
        report.all_completed(),
        "task {task} did not complete: {report:?}"
    );
    elapsed
}

/// `baton run` of one task in a new workspace; the set-up commands are not timed.
fn through_baton(
    baton: &Path,
    claude: &Path,
    env: &ClaudeEnv,
    work: &Path,
) -> Result<Duration, String> {
    let workspace = tempfile::tempdir().map_err(|err| err.to_string())?;
    let mut vars: BTreeMap<String, String> = env.vars();
    vars.insert(
        String::from("BATON_CLAUDE_BIN"),
        claude.to_string_lossy().into_owned(),
    );
    let baton_command = |args: &[&str]| {
        let mut command = Command::new(baton);
        command
            .args(args)
            .current_dir(workspace.path())
            .envs(&vars)
            .env_remove("BATON_DB")
            .stdin(Stdio::null());
        command
    };
    let work_text = work.to_string_lossy().into_owned();
    for args in [
        vec!["init", "--agent", "claude"],
        vec![
            "task",
            "add",
            "bench",
            "--prompt",
            PROMPT,
            "--workdir",
            &work_text,
        ],
    ] {
        let output = baton_command(&args)
            .output()
            .map_err(|err| format!("`baton {}` did not start: {err}", args[0]))?;
        if !output.status.success() {
            return Err(format!(
                "`baton {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    let started = Instant::now();
    let output = baton_command(&["run"])
        .output()
        .map_err(|err| format!("`baton run` did not start: {err}"))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "`baton run` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(elapsed)
}
