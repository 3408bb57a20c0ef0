//! Each scenario outcome of `mock-claude`, per-call steps, and the ways a call can misbehave.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use agent::SessionId;
use agent_mock::scenario::{Rule, Step};
use agent_mock::{Outcome, Scenario};
use serde_json::json;

use crate::support::{Sandbox, drain, kill, wait_bounded};

fn sandbox_with(step: Step) -> Sandbox {
    let mut sandbox = Sandbox::new();
    sandbox.scenario(&Scenario::steps([step]));
    sandbox
}

fn start_args(session: &str) -> Vec<&str> {
    vec!["--session-id", session]
}

#[test]
fn success_reports_the_scripted_figures() {
    let sandbox = sandbox_with(Step {
        usage: Some(agent::Usage {
            input_tokens: 1000,
            output_tokens: 200,
            cache_read_tokens: 30,
            cache_creation_tokens: 4,
        }),
        cost_usd: Some(0.5),
        num_turns: Some(3),
        context_window: Some(1_000_000),
        permission_denials: vec!["Bash".into()],
        ..Step::success("all done")
    });
    let session = SessionId::new_v4().to_string();
    let run = sandbox.stream(&start_args(&session), "go");
    assert_eq!(run.code(), Some(0));
    let result = run.result();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "all done");
    assert_eq!(result["num_turns"], 3);
    assert_eq!(result["total_cost_usd"], 0.5);
    assert_eq!(result["terminal_reason"], "completed");
    assert_eq!(
        (
            &result["usage"]["input_tokens"],
            &result["usage"]["output_tokens"],
            &result["usage"]["cache_read_input_tokens"],
            &result["usage"]["cache_creation_input_tokens"],
        ),
        (&json!(1000), &json!(200), &json!(30), &json!(4))
    );
    assert_eq!(
        result["modelUsage"]["claude-mock-1"]["contextWindow"],
        1_000_000
    );
    assert_eq!(result["permission_denials"][0]["tool_name"], "Bash");
}

#[test]
fn max_turns_is_an_error_result_with_exit_1() {
    let sandbox = sandbox_with(Step::outcome(Outcome::MaxTurns));
    let session = SessionId::new_v4().to_string();
    let mut args = start_args(&session);
    args.extend(["--max-turns", "2"]);
    let run = sandbox.stream(&args, "go");
    assert_eq!(run.code(), Some(1));
    let result = run.result();
    assert_eq!(result["subtype"], "error_max_turns");
    assert_eq!(result["is_error"], true);
    assert_eq!(
        result["errors"],
        json!(["Reached maximum number of turns (2)"])
    );
    assert_eq!(
        result["num_turns"], 3,
        "the real CLI counts the turn it stopped at"
    );
    assert_eq!(result["terminal_reason"], "max_turns");
    assert!(
        result.get("result").is_none(),
        "no result text, as observed"
    );
    assert_eq!(result["usage"]["input_tokens"], 100);
}

#[test]
fn a_success_that_needs_more_turns_than_allowed_ends_at_max_turns() {
    let sandbox = sandbox_with(Step {
        num_turns: Some(5),
        ..Step::success("needs five")
    });
    let tight = sandbox.stream(&["--max-turns", "4"], "go");
    assert_eq!(tight.code(), Some(1));
    assert_eq!(tight.result()["subtype"], "error_max_turns");
    let enough = sandbox.stream(&["--max-turns", "5"], "go");
    assert_eq!(enough.code(), Some(0));
    assert_eq!(enough.result()["subtype"], "success");
}

#[test]
fn api_error_is_success_with_is_error_and_a_status() {
    let sandbox = sandbox_with(Step {
        api_error_status: Some(529),
        message: Some("Overloaded".into()),
        ..Step::outcome(Outcome::ApiError)
    });
    let run = sandbox.stream(&[], "go");
    assert_eq!(
        run.code(),
        Some(1),
        "exit 1, as observed on the pinned version"
    );
    let result = run.result();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["terminal_reason"], "api_error");
    assert_eq!(result["api_error_status"], 529);
    assert_eq!(
        result["result"],
        "API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again \
         in a moment. If it persists, check your inference gateway (api.anthropic.com)."
    );
    assert_eq!(result["total_cost_usd"], 0.0);
    assert_eq!(result["modelUsage"], json!({}));
    let assistant = &run.of_type("assistant")[0];
    assert_eq!(assistant["is_api_error_message"], true);
    assert_eq!(assistant["message"]["model"], "<synthetic>");
}

#[test]
fn api_error_texts_follow_the_status_like_the_real_cli() {
    let cases = [
        (400, "API Error: 400 scripted failure"),
        (
            401,
            "Failed to authenticate. API Error: 401 scripted failure",
        ),
        (
            404,
            "There's an issue with the selected model (claude-mock-1). It may not exist or you \
             may not have access to it. Run --model to pick a different model.",
        ),
        (
            502,
            "API Error: 502 scripted failure. This is a server-side issue, usually temporary — \
             try again in a moment. If it persists, check your inference gateway \
             (127.0.0.1:4000).",
        ),
    ];
    for (status, text) in cases {
        let mut sandbox = sandbox_with(Step {
            api_error_status: Some(status),
            ..Step::outcome(Outcome::ApiError)
        });
        sandbox.env("ANTHROPIC_BASE_URL", "http://127.0.0.1:4000/");
        let result = sandbox.stream(&[], "go").result();
        assert_eq!(result["result"], text);
        assert_eq!(result["api_error_status"], status);
    }
}

#[test]
fn an_api_error_can_exit_0_as_older_versions_were_reported_to() {
    let sandbox = sandbox_with(Step {
        exit_code: Some(0),
        ..Step::outcome(Outcome::ApiError)
    });
    let run = sandbox.stream(&[], "go");
    assert_eq!(run.code(), Some(0));
    assert_eq!(run.result()["api_error_status"], 500);
}

#[test]
fn rate_limit_is_a_429_with_an_optional_reset_event() {
    let sandbox = sandbox_with(Step {
        rate_limit_reset: Some(1_900_000_000),
        ..Step::outcome(Outcome::RateLimit)
    });
    let run = sandbox.stream(&[], "go");
    assert_eq!(run.code(), Some(1));
    let result = run.result();
    assert_eq!(result["api_error_status"], 429);
    assert_eq!(result["terminal_reason"], "api_error");
    assert_eq!(
        result["result"],
        "API Error: Request rejected (429) · scripted failure"
    );
    let event = &run.of_type("rate_limit_event")[0];
    assert_eq!(event["rate_limit_info"]["resetsAt"], 1_900_000_000u64);
    assert_eq!(run.of_type("assistant")[0]["error"], "rate_limit");

    let without_reset = sandbox_with(Step::outcome(Outcome::RateLimit)).stream(&[], "go");
    assert!(without_reset.of_type("rate_limit_event").is_empty());
}

#[test]
fn execution_and_budget_errors_carry_their_errors() {
    let execution = sandbox_with(Step {
        errors: vec!["tool exploded".into()],
        ..Step::outcome(Outcome::ExecutionError)
    })
    .stream(&[], "go");
    assert_eq!(execution.code(), Some(1));
    let result = execution.result();
    assert_eq!(result["subtype"], "error_during_execution");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["errors"], json!(["tool exploded"]));

    let budget = sandbox_with(Step::outcome(Outcome::BudgetExceeded)).stream(&[], "go");
    assert_eq!(budget.code(), Some(1));
    assert_eq!(budget.result()["subtype"], "error_max_budget_usd");
}

#[test]
fn crash_exits_with_no_result_line() {
    let sandbox = sandbox_with(Step {
        exit_code: Some(7),
        stderr: Some("TypeError: boom".into()),
        ..Step::outcome(Outcome::Crash)
    });
    let run = sandbox.stream(&[], "go");
    assert_eq!(run.code(), Some(7));
    assert_eq!(run.stderr, "TypeError: boom\n");
    let kinds: Vec<_> = run.lines().iter().map(|l| l["type"].clone()).collect();
    assert_eq!(kinds, [json!("system")]);
}

#[test]
fn crash_can_die_from_a_signal() {
    let sandbox = sandbox_with(Step {
        signal: Some(libc::SIGSEGV),
        ..Step::outcome(Outcome::Crash)
    });
    let run = sandbox.stream(&[], "go");
    assert_eq!(run.status.signal(), Some(libc::SIGSEGV));
    assert_eq!(run.code(), None);
}

#[test]
fn garbage_is_not_json_at_all() {
    let sandbox = sandbox_with(Step {
        garbage_lines: Some(5),
        ..Step::outcome(Outcome::Garbage)
    });
    let run = sandbox.stream(&[], "go");
    assert_eq!(run.code(), Some(0));
    let text = run.stdout_text();
    assert_eq!(text.lines().count(), 5);
    for line in text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "{line}"
        );
    }
}

#[test]
fn non_utf8_output_follows_the_init_line() {
    let run = sandbox_with(Step::outcome(Outcome::NonUtf8)).stream(&[], "go");
    assert_eq!(run.code(), Some(0));
    let lines: Vec<&[u8]> = run.stdout.split(|&b| b == b'\n').collect();
    assert!(serde_json::from_slice::<serde_json::Value>(lines[0]).is_ok());
    assert!(std::str::from_utf8(lines[1]).is_err());
    assert_eq!(lines[2], b"", "nothing after the bad line");
}

#[test]
fn no_result_exits_0_after_the_messages() {
    let run = sandbox_with(Step::outcome(Outcome::NoResult)).stream(&[], "go");
    assert_eq!(run.code(), Some(0));
    let kinds: Vec<_> = run.lines().iter().map(|l| l["type"].clone()).collect();
    assert_eq!(kinds, [json!("system"), json!("assistant")]);
}

#[test]
fn a_different_reported_session_shows_everywhere() {
    let other = SessionId::new_v4();
    let sandbox = sandbox_with(Step {
        session_id: Some(other),
        ..Step::default()
    });
    let assigned = SessionId::new_v4();
    let run = sandbox.stream(&["--session-id", &assigned.to_string()], "go");
    assert_eq!(run.code(), Some(0));
    for line in run.lines() {
        assert_eq!(line["session_id"], other.to_string(), "{line}");
    }
    // The transcript is under the id the "agent" used, so the assigned one cannot be resumed.
    assert!(sandbox.transcript(other).is_file());
    assert!(!sandbox.transcript(assigned).exists());
    let resume = sandbox.run(&["-p", "--resume", &assigned.to_string()], "again");
    assert_eq!(resume.code(), Some(1));
    assert!(resume.stderr.contains("No conversation found"));
}

#[test]
fn huge_output_is_streamed_in_full() {
    let sandbox = sandbox_with(Step {
        huge_output_mb: 8,
        ..Step::success("end")
    });
    let run = sandbox.stream(&[], "go");
    assert_eq!(run.code(), Some(0));
    assert!(
        run.stdout.len() >= 8 * 1024 * 1024,
        "{} bytes",
        run.stdout.len()
    );
    assert_eq!(run.result()["result"], "end");

    let json = sandbox.run(&["-p", "--output-format", "json"], "go");
    let result = json.lines().remove(0);
    assert!(result["result"].as_str().unwrap().len() >= 8 * 1024 * 1024);
}

#[test]
fn delay_holds_the_result_back() {
    let sandbox = sandbox_with(Step {
        delay_ms: 300,
        ..Step::default()
    });
    let started = Instant::now();
    let run = sandbox.stream(&[], "go");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(run.result()["duration_api_ms"], 300);
}

/// Starts a hanging call and waits (bounded) for its init line; the handle gives what it
/// printed after that line, once it has ended.
fn start_hanging(sandbox: &Sandbox) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = sandbox
        .command(&["-p", "--output-format", "stream-json", "--verbose", "wait"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let rest = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = sender.send(line);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
        rest
    });
    let line = receiver.recv_timeout(Duration::from_secs(10));
    let line = line.unwrap_or_else(|_| {
        kill(&mut child);
        panic!("no init line from a hanging call");
    });
    assert!(line.contains("\"init\""), "{line}");
    (child, rest)
}

#[test]
fn hang_keeps_running_until_killed() {
    let sandbox = sandbox_with(Step::outcome(Outcome::Hang));
    let (mut child, rest) = start_hanging(&sandbox);
    assert_eq!(wait_bounded(&mut child, Duration::from_millis(300)), None);
    // SIGTERM, as the adapter sends first, ends it.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_bounded(&mut child, Duration::from_secs(10)).expect("TERM ends the hang");
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert_eq!(rest.join().unwrap(), "", "nothing after the init line");
}

#[test]
fn hang_with_ignore_term_needs_kill() {
    let sandbox = sandbox_with(Step {
        ignore_term: true,
        ..Step::outcome(Outcome::Hang)
    });
    // SIGTERM is ignored before the init line is printed, so there is no race here.
    let (mut child, _rest) = start_hanging(&sandbox);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        wait_bounded(&mut child, Duration::from_millis(300)),
        None,
        "SIGTERM is ignored"
    );
    child.kill().unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(10)).expect("KILL ends it");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn a_hanging_call_leaves_a_resumable_transcript() {
    // Observed: the transcript is written as soon as a call starts, so a killed call can be
    // resumed.
    let mut sandbox = Sandbox::new();
    let session = SessionId::new_v4();
    sandbox.scenario(&Scenario {
        when: vec![Rule {
            plan: Some(agent::PlanKind::Start),
            step: Step::outcome(Outcome::Hang),
            ..Rule::default()
        }],
        steps: vec![Step::success("resumed fine")],
    });
    let mut child = sandbox
        .command(&[
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--session-id",
            &session.to_string(),
            "first",
        ])
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    // Wait (bounded) for the transcript to appear, then kill the hanging call.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sandbox.transcript(session).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(&mut child);
    drop(stdout.join());
    let resume = sandbox.stream(&["--resume", &session.to_string()], "second");
    assert_eq!(resume.code(), Some(0), "{}", resume.stderr);
    assert_eq!(resume.result()["result"], "resumed fine");
}

#[test]
fn steps_follow_the_call_number_and_rules_come_first() {
    let mut sandbox = Sandbox::new();
    sandbox.scenario(&Scenario {
        when: vec![Rule {
            prompt_contains: Some("verification failed".into()),
            step: Step::success("fixed after feedback"),
            ..Rule::default()
        }],
        steps: vec![
            Step::outcome(Outcome::MaxTurns),
            Step::success("second"),
            Step::success("third and after"),
        ],
    });
    let answers: Vec<String> = ["a", "b", "the verification failed: x", "c", "d"]
        .iter()
        .map(|prompt| {
            let result = sandbox.stream(&[], prompt).result();
            result["result"].as_str().map_or_else(
                || result["subtype"].as_str().unwrap().to_owned(),
                str::to_owned,
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            "error_max_turns",
            "second",
            "fixed after feedback",
            "third and after",
            "third and after"
        ]
    );
}

#[test]
fn parallel_calls_each_take_their_own_step() {
    let mut sandbox = Sandbox::new();
    let steps = (0..12).map(|index| Step::success(format!("answer {index}")));
    sandbox.scenario(&Scenario::steps(steps));
    let sandbox = &sandbox;
    let mut answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(move || {
                    let run = sandbox.stream(&[], "go");
                    run.result()["result"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    answers.sort_by_key(|answer| answer[7..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..12).map(|index| format!("answer {index}")).collect();
    assert_eq!(answers, expected);
}

#[test]
fn env_overrides_script_a_call_without_a_file() {
    let mut sandbox = Sandbox::new();
    sandbox.env("MOCK_CLAUDE_OUTCOME", "api_error");
    sandbox.env("MOCK_CLAUDE_DELAY_MS", "20");
    let run = sandbox.stream(&[], "go");
    assert_eq!(run.result()["terminal_reason"], "api_error");
    assert_eq!(run.result()["duration_api_ms"], 20);

    sandbox.env("MOCK_CLAUDE_OUTCOME", "explode");
    let broken = sandbox.stream(&[], "go");
    assert_eq!(
        broken.code(),
        Some(i32::from(agent_mock::claude::MOCK_FAILURE_EXIT))
    );
    assert!(
        broken.stderr.contains("`explode` is not an outcome"),
        "{}",
        broken.stderr
    );
}

#[test]
fn a_broken_scenario_file_fails_loudly() {
    let mut sandbox = Sandbox::new();
    let path = sandbox.scenario(&Scenario::default());
    std::fs::write(&path, r#"{"outcome": "success", "typo": 1}"#).unwrap();
    let run = sandbox.stream(&[], "go");
    assert_eq!(
        run.code(),
        Some(i32::from(agent_mock::claude::MOCK_FAILURE_EXIT))
    );
    assert!(
        run.stderr.contains("is not a valid scenario"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("typo"), "{}", run.stderr);
}

#[test]
fn max_budget_usd_stops_a_call_that_would_spend_past_it() {
    let sandbox = sandbox_with(Step {
        cost_usd: Some(0.5),
        ..Step::success("expensive")
    });
    let session = SessionId::new_v4().to_string();
    let mut args = start_args(&session);
    args.extend(["--max-budget-usd", "0.02"]);
    let run = sandbox.stream(&args, "go");
    assert_eq!(run.code(), Some(1), "the real CLI exits 1");
    let result = run.result();
    assert_eq!(result["subtype"], "error_max_budget_usd");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["terminal_reason"], "budget_exhausted");
    assert_eq!(result["errors"], json!(["Reached maximum budget ($0.02)"]));
    assert!(
        result.get("result").is_none(),
        "no result text, as observed"
    );
    assert_eq!(result["total_cost_usd"], 0.02, "it spent up to the limit");

    let cheap = sandbox.stream(&["--max-budget-usd", "0.75"], "go");
    assert_eq!(cheap.code(), Some(0), "a call under its limit succeeds");
    for bad in ["0", "-1", "lots"] {
        let refused = sandbox.stream(&["--max-budget-usd", bad], "go");
        assert_ne!(refused.code(), Some(0), "`{bad}` is refused");
    }
}
