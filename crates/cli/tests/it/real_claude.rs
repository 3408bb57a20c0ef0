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
    let store = session_store::Store::open(project.join(".baton/baton.db")).unwrap();
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
