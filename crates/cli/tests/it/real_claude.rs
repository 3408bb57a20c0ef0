//! End to end: `baton` drives the real Claude Code CLI, which talks to the Messages-API
//! stand-in on 127.0.0.1 and really writes files, and the ledger is checked through `--json`.

use api_standin::{Answer, ClaudeEnv, Script, StandIn, Usage};
use serde_json::Value;

use crate::support::World;

fn usage(input: u64, output: u64, cache_read: u64, cache_creation: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_creation_tokens: cache_creation,
    }
}

#[test]
fn baton_runs_real_claude_with_feedback_and_keeps_an_exact_ledger() {
    let Some(claude) = api_standin::require_claude(
        "baton_runs_real_claude_with_feedback_and_keeps_an_exact_ledger",
    ) else {
        return;
    };
    let standin = StandIn::start(Script::queue([]));
    let claude_env = ClaudeEnv::new(&standin);
    let project = claude_env.work_dir("project");
    // Task 1 writes a file and is done. Task 2 writes the wrong answer, its verification fails,
    // and in the resumed session it writes the right one.
    standin.enqueue([
        Answer::write_file(project.join("hello.txt"), "hello\n")
            .with_usage(usage(310, 41, 0, 1_200)),
        Answer::text("Wrote hello.txt.").with_usage(usage(22, 9, 1_200, 64)),
        Answer::write_file(project.join("answer.txt"), "wrong\n")
            .with_usage(usage(305, 40, 1_000, 300)),
        Answer::text("Wrote answer.txt.").with_usage(usage(21, 8, 1_300, 70)),
        Answer::write_file(project.join("answer.txt"), "right\n")
            .with_usage(usage(502, 44, 1_370, 90)),
        Answer::text("Fixed answer.txt.").with_usage(usage(23, 7, 1_460, 60)),
    ]);

    let mut world = World::new();
    for (name, value) in claude_env.vars() {
        world.set(&name, value);
    }
    world.set("BATON_CLAUDE_BIN", claude.to_string_lossy());
    world.baton_in(&project, &["init"]).success();
    // Bound every call: a hung CLI fails the test instead of stalling it.
    let config = project.join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# timeout = \"30m\"", "timeout = \"3m\""),
    )
    .unwrap();
    world.baton_in(&project, &["doctor"]).success();
    let add = |args: &[&str]| {
        let mut all = vec!["task", "add"];
        all.extend_from_slice(args);
        world.baton_in(&project, &all).success()
    };
    add(&[
        "Say hello",
        "--prompt",
        "Create hello.txt containing hello.",
        "--verify",
        "grep -qx hello hello.txt",
    ]);
    add(&[
        "Answer",
        "--prompt",
        "Create answer.txt containing the right answer.",
        "--verify",
        "grep -qx right answer.txt || { echo \"answer.txt says: $(cat answer.txt)\"; exit 1; }",
        "--after",
        "1",
    ]);

    let run = world.baton_in(&project, &["run"]);
    assert_eq!(
        run.code, 0,
        "baton run failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(project.join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("answer.txt")).unwrap(),
        "right\n"
    );

    let tasks = world
        .baton_in(&project, &["task", "list", "--json"])
        .success()
        .json();
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    for task in tasks {
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(
            task["sessions"].as_array().unwrap().len(),
            1,
            "one session per task: {task}"
        );
    }
    assert_eq!(tasks[0]["iterations"], 1);
    assert_eq!(tasks[1]["iterations"], 2);
    let session_of = |task: &Value| task["sessions"][0].as_str().unwrap().to_owned();

    // The stand-in saw task 1's session, then task 2's, whose resumed call carried the
    // verification's output as feedback under the same session id.
    let requests = standin.message_requests();
    assert_eq!(requests.len(), 6, "one request per scripted answer");
    let ids: Vec<&str> = requests
        .iter()
        .map(|request| request.session_id().unwrap())
        .collect();
    let (first, second) = (session_of(&tasks[0]), session_of(&tasks[1]));
    assert_eq!(ids, [&first, &first, &second, &second, &second, &second]);
    let resumed = &requests[4];
    assert!(
        resumed.messages_contain("answer.txt says: wrong"),
        "the feedback reached the agent"
    );
    assert!(
        resumed.messages_contain("Create answer.txt containing the right answer."),
        "the resumed request carries the earlier conversation"
    );
    assert!(!requests[2].messages_contain("answer.txt says"));

    // The ledger's figures are exactly what the stand-in served.
    let sessions = world
        .baton_in(&project, &["session", "list", "--json"])
        .success()
        .json();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["id"], first.as_str());
    assert_eq!(sessions[1]["id"], second.as_str());
    assert_eq!(sessions[0]["agent_calls"], 1);
    assert_eq!(sessions[1]["agent_calls"], 2);
    let sum = |key: &str| -> u64 {
        sessions
            .iter()
            .map(|session| session[key].as_u64().unwrap())
            .sum()
    };
    let served = standin.served_usage();
    assert_eq!(sum("input_tokens"), served.input_tokens);
    assert_eq!(sum("output_tokens"), served.output_tokens);
    assert_eq!(sum("cache_read_tokens"), served.cache_read_tokens);
    assert_eq!(sum("cache_creation_tokens"), served.cache_creation_tokens);
    for session in sessions {
        assert_eq!(session["status"], "completed");
        assert_eq!(session["policy"], "task");
        assert!(session["cost_usd"].as_f64().unwrap() > 0.0);
    }
    let shown = world
        .baton_in(&project, &["session", "show", &second, "--json"])
        .success()
        .json();
    let plans: Vec<&str> = shown["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| call["plan"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["start", "resume"]);

    // The run recorded the version of the CLI that did the work.
    let store = session_store::Store::open_with(
        project.join(".baton/baton.db"),
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .unwrap();
    let runs: Vec<serde_json::Value> = store
        .events(&session_store::EventFilter::default())
        .unwrap()
        .into_iter()
        .filter(|event| event.kind == "run_started")
        .map(|event| serde_json::from_str(&event.detail).unwrap())
        .collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["agent"], "claude");
    let version = runs[0]["agent_version"].as_str().unwrap();
    assert!(version.starts_with("2."), "{version}");
}

/// A task whose agent never finishes, under `--max-cost 0.05`: blocked with its budget in the
/// reason, having spent at most the budget plus one API response; a raise continues the same
/// session, and the stand-in sees the earlier conversation.
#[test]
fn a_task_budget_holds_against_the_real_cli_and_a_raise_continues_its_session() {
    let Some(claude) = api_standin::require_claude(
        "a_task_budget_holds_against_the_real_cli_and_a_raise_continues_its_session",
    ) else {
        return;
    };
    let standin = StandIn::start(Script::queue([]));
    let claude_env = ClaudeEnv::new(&standin);
    let project = claude_env.work_dir("project");
    // Every answer is another tool call: left alone, the agent would never finish. About
    // $0.006 an answer at the pinned model's prices.
    let endless =
        Answer::write_file(project.join("loop.txt"), "x\n").with_usage(usage(1_000, 200, 0, 0));
    let one_answer = 0.006_f64;
    standin.enqueue(std::iter::repeat_n(endless, 80));

    let mut world = World::new();
    for (name, value) in claude_env.vars() {
        world.set(&name, value);
    }
    world.set("BATON_CLAUDE_BIN", claude.to_string_lossy());
    world.baton_in(&project, &["init"]).success();
    let config = project.join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# timeout = \"30m\"", "timeout = \"3m\"")
            .replace("# model = ", "model = "),
    )
    .unwrap();
    world
        .baton_in(
            &project,
            &[
                "task",
                "add",
                "Loop",
                "--prompt",
                "Keep writing loop.txt.",
                "--max-cost",
                "0.05",
            ],
        )
        .success();

    let run = world.baton_in(&project, &["run"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let task = world
        .baton_in(&project, &["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "blocked", "{task}");
    let reason = task["failure_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("budget spent: $") && reason.ends_with("of $0.05 (task)"),
        "{reason}"
    );
    let spent = task["cost_usd"].as_f64().unwrap();
    assert!(
        (0.05..=0.05 + one_answer + 1e-9).contains(&spent),
        "spent {spent}: at most the budget and one API response"
    );
    let session = task["sessions"][0].as_str().unwrap().to_owned();
    assert_eq!(task["sessions"].as_array().unwrap().len(), 1);
    let before = standin.message_requests().len();

    world
        .baton_in(&project, &["task", "retry", "1", "--max-cost", "0.10"])
        .success();
    world.baton_in(&project, &["run"]).code(1);
    let task = world
        .baton_in(&project, &["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "blocked");
    assert_eq!(task["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(
        task["sessions"][0],
        session.as_str(),
        "the same session continued"
    );
    let spent = task["cost_usd"].as_f64().unwrap();
    assert!(
        (0.10..=0.10 + one_answer + 1e-9).contains(&spent),
        "spent {spent}"
    );
    let requests = standin.message_requests();
    let resumed = &requests[before];
    assert_eq!(resumed.session_id(), Some(session.as_str()));
    assert!(
        resumed.messages_contain("Keep writing loop.txt."),
        "the resumed call carries the earlier conversation"
    );
}

/// A run budget across 10 endless tasks at concurrency 4: the run passes its budget by at
/// most one API response per call in flight, stops cleanly (no session open), leaves the tasks
/// it did not finish pending, and exits 1 naming the budget.
#[test]
fn a_run_budget_across_concurrent_real_calls_stops_the_run_cleanly() {
    let Some(claude) = api_standin::require_claude(
        "a_run_budget_across_concurrent_real_calls_stops_the_run_cleanly",
    ) else {
        return;
    };
    let standin = StandIn::start(Script::queue([]));
    let claude_env = ClaudeEnv::new(&standin);
    let project = claude_env.work_dir("project");
    let endless =
        Answer::write_file(project.join("loop.txt"), "x\n").with_usage(usage(1_000, 200, 0, 0));
    let one_answer = 0.006_f64;
    standin.enqueue(std::iter::repeat_n(endless, 200));

    let mut world = World::new();
    for (name, value) in claude_env.vars() {
        world.set(&name, value);
    }
    world.set("BATON_CLAUDE_BIN", claude.to_string_lossy());
    world.baton_in(&project, &["init"]).success();
    let config = project.join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# timeout = \"30m\"", "timeout = \"3m\"")
            .replace("# model = ", "model = "),
    )
    .unwrap();
    for n in 0..10 {
        let title = format!("Loop {n}");
        world
            .baton_in(
                &project,
                &["task", "add", &title, "--prompt", "Keep writing loop.txt."],
            )
            .success();
    }

    let run = world.baton_in(
        &project,
        &["run", "--concurrency", "4", "--max-cost", "0.1", "--json"],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let stopped = report["budget"]["stopped"].as_str().unwrap_or_default();
    assert!(
        stopped.starts_with("budget spent: $") && stopped.ends_with("of $0.10 (run)"),
        "{report}"
    );
    let tasks = world
        .baton_in(&project, &["task", "list", "--json"])
        .success()
        .json();
    let tasks = tasks.as_array().unwrap();
    let spent: f64 = tasks
        .iter()
        .map(|task| task["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(
        (spent - report["budget"]["spent_cost_usd"].as_f64().unwrap()).abs() < 1e-9,
        "the report's spend is the ledger's: {spent} vs {report}"
    );
    assert!(
        (0.1..=0.1 + 4.0 * one_answer + 1e-9).contains(&spent),
        "spent {spent}: past the budget by at most one response per call in flight"
    );
    for task in tasks {
        assert_eq!(
            task["status"], "pending",
            "a stopped run leaves tasks pending: {task}"
        );
    }
    let sessions = world
        .baton_in(&project, &["session", "list", "--json"])
        .success()
        .json();
    for session in sessions.as_array().unwrap() {
        assert_ne!(session["status"], "open", "the stop is clean: {session}");
    }
}

/// A token budget stops a real CLI call mid-stream: Baton watches the usage the CLI streams
/// and stops the call once it passes what is left, then blocks the task.
#[test]
fn a_token_budget_stops_a_real_call_mid_stream() {
    let Some(claude) = api_standin::require_claude("a_token_budget_stops_a_real_call_mid_stream")
    else {
        return;
    };
    let standin = StandIn::start(Script::queue([]));
    let claude_env = ClaudeEnv::new(&standin);
    let project = claude_env.work_dir("project");
    // 1,200 tokens an answer, and never done.
    let endless =
        Answer::write_file(project.join("loop.txt"), "x\n").with_usage(usage(1_000, 200, 0, 0));
    standin.enqueue(std::iter::repeat_n(endless, 40));

    let mut world = World::new();
    for (name, value) in claude_env.vars() {
        world.set(&name, value);
    }
    world.set("BATON_CLAUDE_BIN", claude.to_string_lossy());
    world.baton_in(&project, &["init"]).success();
    let config = project.join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# timeout = \"30m\"", "timeout = \"3m\""),
    )
    .unwrap();
    world
        .baton_in(
            &project,
            &[
                "task",
                "add",
                "Loop",
                "--prompt",
                "Keep writing loop.txt.",
                "--max-tokens",
                "3000",
            ],
        )
        .success();
    world.baton_in(&project, &["run"]).code(1);
    let task = world
        .baton_in(&project, &["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "blocked", "{task}");
    assert!(
        task["failure_reason"]
            .as_str()
            .unwrap()
            .ends_with("of 3000 tokens (task)"),
        "{task}"
    );
    let tokens = [
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
    ]
    .iter()
    .map(|name| task[name].as_u64().unwrap())
    .sum::<u64>();
    assert!(
        (3_000..=3_000 + 1_200).contains(&tokens),
        "stopped within one streamed answer of the budget: {tokens} tokens"
    );
    assert!(
        standin.message_requests().len() <= 4,
        "the call was stopped, not left to run: {} requests",
        standin.message_requests().len()
    );
}

/// `baton doctor` reports what `claude auth status` says and, with `--probe`, makes one
/// minimal call and prints its cost; without credentials the account check fails with exit 5.
#[test]
fn doctor_checks_the_account_and_probes_it() {
    let Some(claude) = api_standin::require_claude("doctor_checks_the_account_and_probes_it")
    else {
        return;
    };
    let standin = StandIn::start(Script::always(
        Answer::text("ok").with_usage(usage(12, 1, 0, 0)),
    ));
    let claude_env = ClaudeEnv::new(&standin);
    let project = claude_env.work_dir("project");
    let mut world = World::new();
    for (name, value) in claude_env.vars() {
        world.set(&name, value);
    }
    world.set("BATON_CLAUDE_BIN", claude.to_string_lossy());
    world.baton_in(&project, &["init"]).success();

    let report = world
        .baton_in(&project, &["doctor", "--probe", "--json"])
        .success()
        .json();
    assert_eq!(report["account"]["loggedIn"], true, "{report:#}");
    assert_eq!(report["account"]["authMethod"], "api_key");
    assert!(
        report["probe"]["cost_usd"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert_eq!(report["probe"]["input_tokens"], 12);
    let text = world
        .baton_in(&project, &["doctor", "--probe"])
        .success()
        .stdout;
    assert!(
        text.contains("logged in (api_key, key from ANTHROPIC_API_KEY)"),
        "{text}"
    );
    assert!(text.contains("costing $0.0"), "{text}");

    let mut logged_out = World::new();
    for (name, value) in claude_env.vars() {
        if name != "ANTHROPIC_API_KEY" {
            logged_out.set(&name, value);
        }
    }
    logged_out.set("BATON_CLAUDE_BIN", claude.to_string_lossy());
    let refused = logged_out.baton_in(&project, &["doctor"]).code(5);
    assert!(
        refused.stdout.contains("not logged in"),
        "{}",
        refused.stdout
    );
    assert!(
        refused.stdout.contains("claude auth login"),
        "{}",
        refused.stdout
    );
}
