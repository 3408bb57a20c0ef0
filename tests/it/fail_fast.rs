//! The real Claude Code CLI, run by the real `baton`, against a stand-in that refuses the
//! way the API refuses a bad key, a key without permission, an empty account or an unknown
//! model: the run stops within seconds of the first answer, asks the API a handful of times
//! at most, exits 5 naming the cause, and leaves every task pending; once the stand-in is
//! fixed, the next run completes them all, in their original sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use api_standin::{Answer, ClaudeEnv, Script, StandIn};
use tests::chaos::Binaries;
use tests::chaos::lab::Lab;

const TASKS: usize = 10;

fn bins() -> Binaries {
    Binaries {
        baton: env!("CARGO_BIN_EXE_chaos-baton").into(),
        mock_claude: env!("CARGO_BIN_EXE_contract-mock-claude").into(),
    }
}

/// A stand-in that answers `refusal` until it is fixed, then with text.
fn refusing_until_fixed(refusal: Answer) -> (StandIn, Arc<AtomicBool>) {
    let fixed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&fixed);
    // The CLI's non-streaming fallback after a 404 is refused too, as the API would; once
    // fixed, the streaming request succeeds and there is no fallback.
    let whole_messages = refusal.clone();
    let script = Script::from_fn(move |_| {
        if flag.load(Ordering::SeqCst) {
            Answer::text("Done.")
        } else {
            refusal.clone()
        }
    });
    let standin = StandIn::start(script.with_whole_messages(whole_messages));
    (standin, fixed)
}

fn check(what: &str, refusal: Answer, says: &[&str]) {
    let Some(claude) = api_standin::require_claude(what) else {
        return;
    };
    let (standin, fixed) = refusing_until_fixed(refusal);
    let env = ClaudeEnv::new(&standin);
    let mut lab = Lab::with_workspace(&bins()).unwrap();
    for (name, value) in env.vars() {
        // Baton sets the CLI's retries itself (api.cli_retries); the harness's 0 would hide
        // whether it does.
        if name != "CLAUDE_CODE_MAX_RETRIES" {
            lab.set(&name, value);
        }
    }
    lab.set("BATON_CLAUDE_BIN", claude);
    for n in 0..TASKS {
        lab.add_task(&[&format!("Task {n}")]).unwrap();
    }

    let started = Instant::now();
    let ran = lab.baton(&["run"]).unwrap();
    let took = started.elapsed();
    ran.expect_code(5)
        .and_then(|ran| ran.expect_stderr(says))
        .unwrap_or_else(|error| panic!("{what}: {error:#}\n{}", ran.stdout));
    assert!(took < Duration::from_secs(20), "{what}: took {took:?}");
    let asked = standin.message_requests().len();
    assert!(
        (1..=4).contains(&asked),
        "{what}: the API was asked {asked} times"
    );
    let pending = lab
        .count("SELECT count(*) FROM tasks WHERE status = 'pending'")
        .unwrap();
    assert_eq!(pending, TASKS as i64, "{what}");
    let open = lab
        .count("SELECT count(*) FROM sessions WHERE status = 'open'")
        .unwrap();
    assert_eq!(open, 0, "{what}");
    let first_session: String = lab
        .ledger()
        .unwrap()
        .query_row(
            "SELECT session_id FROM agent_calls ORDER BY id LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();

    fixed.store(true, Ordering::SeqCst);
    lab.baton(&["run"]).unwrap().expect_code(0).unwrap();
    let completed = lab
        .count("SELECT count(*) FROM tasks WHERE status = 'completed'")
        .unwrap();
    assert_eq!(completed, TASKS as i64, "{what}");
    let continued = lab
        .count(&format!(
            "SELECT count(*) FROM agent_calls WHERE session_id = '{first_session}' AND plan = 'resume' AND outcome = 'success'"
        ))
        .unwrap();
    assert_eq!(
        continued, 1,
        "{what}: the refused task continues its session {first_session}"
    );
    lab.expect_intact().unwrap();
}

#[test]
fn a_bad_key_stops_the_run_at_once() {
    check(
        "a_bad_key_stops_the_run_at_once",
        Answer::error(401, "authentication_error", "invalid x-api-key"),
        &["Invalid API key", "HTTP 401", "claude auth login"],
    );
}

#[test]
fn a_key_without_permission_stops_the_run_at_once() {
    check(
        "a_key_without_permission_stops_the_run_at_once",
        Answer::error(
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        &["does not have permission", "HTTP 403"],
    );
}

#[test]
fn an_empty_account_stops_the_run_at_once() {
    check(
        "an_empty_account_stops_the_run_at_once",
        Answer::error(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
        ),
        &["Credit balance is too low", "HTTP 400", "Plans & Billing"],
    );
}

#[test]
fn an_unknown_model_stops_the_run_at_once() {
    check(
        "an_unknown_model_stops_the_run_at_once",
        Answer::error(404, "not_found_error", "model: claude-nonexistent-9"),
        &["issue with the selected model", "HTTP 404", "pick a model"],
    );
}

/// A lab whose `baton` runs the real CLI against `base_url`, with short outage pauses.
fn real_cli_lab(claude: std::path::PathBuf, env: &ClaudeEnv, max_outage: &str) -> Lab {
    let mut lab = Lab::with_workspace(&bins()).unwrap();
    for (name, value) in env.vars() {
        if name != "CLAUDE_CODE_MAX_RETRIES" {
            lab.set(&name, value);
        }
    }
    lab.set("BATON_CLAUDE_BIN", claude);
    lab.edit_config("# outage_pause = \"10s\"", "outage_pause = \"200ms\"")
        .unwrap();
    lab.edit_config(
        "# max_outage = \"30m\"",
        &format!("max_outage = \"{max_outage}\""),
    )
    .unwrap();
    lab.edit_config("# concurrency = 1", "concurrency = 3")
        .unwrap();
    lab
}

#[test]
fn an_overloaded_api_pauses_the_run_once_and_every_task_completes() {
    let Some(claude) = api_standin::require_claude(
        "an_overloaded_api_pauses_the_run_once_and_every_task_completes",
    ) else {
        return;
    };
    // Eight overloaded answers (the CLI's own retry included), then the API recovers.
    let standin = StandIn::start(
        Script::queue((0..8).map(|_| Answer::overloaded())).then_always(Answer::text("Done.")),
    );
    let env = ClaudeEnv::new(&standin);
    let lab = real_cli_lab(claude, &env, "1m");
    for n in 0..4 {
        lab.add_task(&[&format!("Task {n}")]).unwrap();
    }
    let ran = lab.baton(&["run"]).unwrap();
    ran.expect_code(0)
        .unwrap_or_else(|error| panic!("{error:#}\n{}", ran.stdout));
    assert!(
        ran.stdout.contains("times in a row; waiting"),
        "{}",
        ran.stdout
    );
    let completed = lab
        .count("SELECT count(*) FROM tasks WHERE status = 'completed' AND iterations = 1")
        .unwrap();
    assert_eq!(completed, 4, "every task completes in its first iteration");
    let failed = lab
        .count("SELECT count(*) FROM agent_calls WHERE outcome = 'api_error'")
        .unwrap();
    assert!(
        failed >= 3,
        "the ledger shows the failed attempts: {failed}"
    );
    lab.expect_intact().unwrap();
}

#[test]
fn no_server_at_all_is_a_lasting_outage() {
    let Some(claude) = api_standin::require_claude("no_server_at_all_is_a_lasting_outage") else {
        return;
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = ClaudeEnv::for_base_url(base_url);
    let lab = real_cli_lab(claude, &env, "1s");
    for n in 0..TASKS {
        lab.add_task(&[&format!("Task {n}")]).unwrap();
    }
    let started = Instant::now();
    let ran = lab.baton(&["run"]).unwrap();
    ran.expect_code(5)
        .and_then(|ran| ran.expect_stderr(&["Connection refused", "api.max_outage"]))
        .unwrap_or_else(|error| panic!("{error:#}\n{}", ran.stdout));
    assert!(started.elapsed() < Duration::from_secs(30));
    let pending = lab
        .count("SELECT count(*) FROM tasks WHERE status = 'pending'")
        .unwrap();
    assert_eq!(pending, TASKS as i64);
    let open = lab
        .count("SELECT count(*) FROM sessions WHERE status = 'open'")
        .unwrap();
    assert_eq!(open, 0);
}

#[test]
fn sigterm_to_baton_then_its_process_group_is_one_request_to_stop() {
    let outcome =
        tests::chaos::stops::stopped(&bins(), tests::chaos::stops::StoppedBy::ProcessGroup);
    if let Err(error) = outcome {
        panic!("{error:#}");
    }
}
