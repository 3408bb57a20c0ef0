//! `mock-claude`'s CLI contract: flags, refusals with the real texts, transcripts, output formats.

use agent::SessionId;
use agent_mock::scenario::{LOG_ENV, Step};
use agent_mock::transcript::{Role, project_dir_name, read_transcript};
use agent_mock::{Outcome, Scenario};
use serde_json::Value;

use crate::support::Sandbox;

fn id() -> SessionId {
    SessionId::new_v4()
}

#[test]
fn version_reads_like_the_real_cli() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["--version"], "");
    assert_eq!(run.code(), Some(0));
    assert_eq!(
        run.stdout_text(),
        format!("{} (Claude Code)\n", agent_mock::claude::IMITATED_VERSION)
    );
}

#[test]
fn start_writes_the_transcript_under_the_mangled_directory_and_resume_appends() {
    let sandbox = Sandbox::new();
    let session = id();
    let first = sandbox.stream(&["--session-id", &session.to_string()], "first prompt");
    assert_eq!(first.code(), Some(0), "{}", first.stderr);

    let path = sandbox.transcript(session);
    let dir_name = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(dir_name, project_dir_name(&sandbox.work));
    // `/…/my_project.v2/work dir`: the dot, the underscore and the space all became dashes.
    assert!(dir_name.ends_with("-my-project-v2-work-dir"), "{dir_name}");
    assert!(path.is_file(), "{}", path.display());

    let second = sandbox.stream(&["--resume", &session.to_string()], "second prompt");
    assert_eq!(second.code(), Some(0), "{}", second.stderr);
    assert_eq!(second.result()["session_id"], session.to_string());

    let messages: Vec<_> = read_transcript(&path)
        .unwrap()
        .into_iter()
        .map(|message| (message.role, message.text))
        .collect();
    assert_eq!(
        messages,
        vec![
            (Role::User, "first prompt".to_owned()),
            (Role::Assistant, "Done.".to_owned()),
            (Role::User, "second prompt".to_owned()),
            (Role::Assistant, "Done.".to_owned()),
        ]
    );
}

#[test]
fn starting_a_known_session_is_refused_with_the_real_text() {
    let sandbox = Sandbox::new();
    let session = id();
    assert_eq!(
        sandbox
            .run(&["-p", "--session-id", &session.to_string()], "hi")
            .code(),
        Some(0)
    );
    for format in ["text", "json", "stream-json"] {
        let run = sandbox.run(
            &[
                "-p",
                "--verbose",
                "--output-format",
                format,
                "--session-id",
                &session.to_string(),
            ],
            "again",
        );
        assert_eq!(run.code(), Some(1), "{format}");
        assert_eq!(run.stdout, b"", "{format}");
        assert_eq!(
            run.stderr,
            format!("Error: Session ID {session} is already in use.\n")
        );
    }
}

#[test]
fn an_empty_transcript_file_is_enough_to_be_in_use() {
    // Observed: the real CLI refuses an id whose transcript file exists, even empty.
    let sandbox = Sandbox::new();
    let session = id();
    let path = sandbox.transcript(session);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "").unwrap();
    let run = sandbox.run(&["-p", "--session-id", &session.to_string()], "hi");
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr.contains("is already in use"), "{}", run.stderr);
}

#[test]
fn the_same_id_may_start_in_another_directory() {
    // Observed: "in use" is checked in the working directory's project dir only.
    let sandbox = Sandbox::new();
    let session = id().to_string();
    assert_eq!(
        sandbox.run(&["-p", "--session-id", &session], "a").code(),
        Some(0)
    );
    let elsewhere = sandbox.other_dir("elsewhere");
    let run = crate::support::run_to_end(
        sandbox.command_in(&elsewhere, &["-p", "--session-id", &session]),
        "b",
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
}

#[test]
fn resuming_an_unknown_session_is_refused_with_the_real_text() {
    let sandbox = Sandbox::new();
    let session = id();
    let expected = format!("No conversation found with session ID: {session}\n");

    let json = sandbox.run(
        &[
            "-p",
            "--output-format",
            "json",
            "--resume",
            &session.to_string(),
        ],
        "hi",
    );
    assert_eq!(json.code(), Some(1));
    assert_eq!(json.stdout, b"", "json prints nothing on stdout");
    assert_eq!(json.stderr, expected);

    // With stream-json the real CLI also prints an error_during_execution result.
    let stream = sandbox.stream(&["--resume", &session.to_string()], "hi");
    assert_eq!(stream.code(), Some(1));
    assert_eq!(stream.stderr, expected);
    let lines = stream.lines();
    assert_eq!(lines.len(), 1);
    let result = &lines[0];
    assert_eq!(result["type"], "result");
    assert_eq!(result["subtype"], "error_during_execution");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["session_id"], session.to_string());
    assert_eq!(
        result["errors"],
        serde_json::json!([format!("No conversation found with session ID: {session}")])
    );
    assert!(!sandbox.transcript(session).exists());
}

#[test]
fn resume_finds_a_session_started_in_another_directory() {
    // Observed on 2.1.328: --resume looks in every project dir and appends to the original.
    let sandbox = Sandbox::new();
    let session = id();
    let origin = sandbox.other_dir("origin");
    let start = crate::support::run_to_end(
        sandbox.command_in(&origin, &["-p", "--session-id", &session.to_string()]),
        "started elsewhere",
    );
    assert_eq!(start.code(), Some(0));

    let resume = sandbox.run(&["-p", "--resume", &session.to_string()], "resumed here");
    assert_eq!(resume.code(), Some(0), "{}", resume.stderr);
    assert!(!sandbox.transcript(session).exists());
    let original = sandbox.transcripts().path(&origin, session);
    let prompts: Vec<_> = read_transcript(&original)
        .unwrap()
        .into_iter()
        .filter(|message| message.role == Role::User)
        .map(|message| message.text)
        .collect();
    assert_eq!(prompts, ["started elsewhere", "resumed here"]);
}

#[test]
fn refusals_of_bad_command_lines_use_the_real_texts() {
    let sandbox = Sandbox::new();
    let session = id().to_string();
    let cases: [(&[&str], &str, &str); 8] = [
        (
            &["-p", "--output-format", "stream-json"],
            "hi",
            "Error: When using --print, --output-format=stream-json requires --verbose",
        ),
        (
            &["-p", "--session-id", &session, "--resume", &session],
            "hi",
            "Error: --session-id with --continue or --resume also needs --fork-session.",
        ),
        (
            &["-p", "--session-id", "not-a-uuid"],
            "hi",
            "Error: Invalid session ID. Must be a valid UUID.",
        ),
        (
            &["-p", "--resume", "not-a-uuid"],
            "hi",
            "Error: --resume requires a valid session ID or session title when used with --print. \
             Usage: claude -p --resume <session-id|title>. Provided value \"not-a-uuid\" is not a \
             UUID and does not match any session title.",
        ),
        (
            &["-p"],
            "",
            "Error: Input must be provided either through stdin or as a prompt argument when using --print",
        ),
        (&["-p", "--bogus"], "hi", "error: unknown option '--bogus'"),
        (
            &["-p", "--max-turns", "many"],
            "hi",
            "error: option '--max-turns <turns>' argument 'many' is invalid. must be a number",
        ),
        (
            &["-p", "--output-format", "xml"],
            "hi",
            "error: option '--output-format <format>' argument 'xml' is invalid. Allowed choices are text, json, stream-json.",
        ),
    ];
    for (args, prompt, text) in cases {
        let run = sandbox.run(args, prompt);
        assert_eq!(run.code(), Some(1), "{args:?}");
        assert_eq!(run.stdout, b"", "{args:?}");
        assert_eq!(run.stderr, format!("{text}\n"), "{args:?}");
    }
    // Nothing was started by any of them.
    assert!(!sandbox.transcripts().projects_dir().exists());
}

#[test]
fn json_prints_only_the_result_object() {
    let sandbox = Sandbox::new();
    let session = id();
    let run = sandbox.run(
        &[
            "-p",
            "--output-format",
            "json",
            "--session-id",
            &session.to_string(),
        ],
        "hi",
    );
    assert_eq!(run.code(), Some(0));
    let lines = run.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "result");
    assert_eq!(lines[0]["subtype"], "success");
    assert_eq!(lines[0]["is_error"], false);
    assert_eq!(lines[0]["session_id"], session.to_string());
    assert_eq!(lines[0]["result"], "Done.");
    // `model_usage_since_last_result` was seen in stream-json only.
    assert!(lines[0].get("model_usage_since_last_result").is_none());
}

#[test]
fn stream_json_is_init_then_messages_then_the_result() {
    let mut sandbox = Sandbox::new();
    sandbox.scenario(&Scenario::steps([Step {
        files: [("notes/a.txt".to_owned(), "alpha\n".to_owned())].into(),
        ..Step::success("wrote a file")
    }]));
    let session = id();
    let run = sandbox.stream(
        &[
            "--session-id",
            &session.to_string(),
            "--model",
            "claude-test-9",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Read,Write",
        ],
        "write it",
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let lines = run.lines();
    let kinds: Vec<_> = lines
        .iter()
        .map(|line| line["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["system", "assistant", "user", "assistant", "result"]
    );
    let init = &lines[0];
    assert_eq!(init["subtype"], "init");
    assert_eq!(init["cwd"], sandbox.work.to_str().unwrap());
    assert_eq!(init["model"], "claude-test-9");
    assert_eq!(init["permissionMode"], "acceptEdits");
    for line in &lines {
        assert_eq!(line["session_id"], session.to_string(), "{line}");
    }
    let tool_use = &lines[1]["message"]["content"][0];
    assert_eq!(tool_use["type"], "tool_use");
    assert_eq!(tool_use["name"], "Write");
    let written = sandbox.work.join("notes/a.txt");
    assert_eq!(tool_use["input"]["file_path"], written.to_str().unwrap());
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "alpha\n");
    assert_eq!(lines[2]["message"]["content"][0]["type"], "tool_result");
    assert_eq!(lines[3]["message"]["content"][0]["text"], "wrote a file");
    let result = &lines[4];
    assert_eq!(
        result["num_turns"], 2,
        "one turn for the write, one for the answer"
    );
    assert_eq!(
        result["modelUsage"]["claude-test-9"]["contextWindow"],
        200_000
    );
    assert!(result["model_usage_since_last_result"]["claude-test-9"].is_object());
}

#[test]
fn text_format_prints_the_answer() {
    let mut sandbox = Sandbox::new();
    sandbox.env("MOCK_CLAUDE_RESULT", "plain answer");
    let run = sandbox.run(&["-p", "hello", "as", "arguments"], "");
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout_text(), "plain answer\n");
}

#[test]
fn the_prompt_can_be_the_last_argument() {
    let sandbox = Sandbox::new();
    let session = id();
    let run = sandbox.run(
        &[
            "-p",
            "--session-id",
            &session.to_string(),
            "prompt as argument",
        ],
        "",
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let messages = read_transcript(&sandbox.transcript(session)).unwrap();
    assert_eq!(messages[0].text, "prompt as argument");
}

#[test]
fn usage_is_per_call_but_cost_and_model_usage_cover_the_session_on_resume() {
    // Observed on 2.1.328 against a stand-in: on --resume, `total_cost_usd` and `modelUsage`
    // include the session's earlier calls, while `usage` is this process's alone.
    let mut sandbox = Sandbox::new();
    sandbox.scenario(&Scenario::steps([Step {
        usage: Some(agent::Usage {
            input_tokens: 11,
            output_tokens: 7,
            cache_read_tokens: 2,
            cache_creation_tokens: 3,
        }),
        cost_usd: Some(0.25),
        model: Some("m".into()),
        ..Step::default()
    }]));
    let session = id().to_string();
    let first = sandbox.run(
        &["-p", "--output-format", "json", "--session-id", &session],
        "1",
    );
    let second = sandbox.run(
        &["-p", "--output-format", "json", "--resume", &session],
        "2",
    );
    let third = sandbox.stream(&["--resume", &session], "3");
    let results: Vec<Value> = [first, second]
        .iter()
        .map(|run| run.lines().remove(0))
        .chain([third.result()])
        .collect();
    for (index, result) in results.iter().enumerate() {
        let calls = (index + 1) as f64;
        assert_eq!(result["usage"]["input_tokens"], 11);
        assert_eq!(result["usage"]["cache_read_input_tokens"], 2);
        assert_eq!(result["total_cost_usd"], 0.25 * calls);
        assert_eq!(result["modelUsage"]["m"]["inputTokens"], 11 * (index + 1));
        assert_eq!(result["modelUsage"]["m"]["costUSD"], 0.25 * calls);
    }
    assert_eq!(
        results[2]["model_usage_since_last_result"]["m"]["costUSD"],
        0.25
    );
}

#[test]
fn the_call_log_records_each_call() {
    let mut sandbox = Sandbox::new();
    let log = sandbox.home.join("calls.jsonl");
    sandbox.env(LOG_ENV, log.to_str().unwrap());
    sandbox.scenario(&Scenario::steps([Step::outcome(Outcome::Success)]));
    let session = id().to_string();
    sandbox.run(&["-p", "--session-id", &session, "--max-turns", "4"], "one");
    sandbox.run(&["-p", "--session-id", &session], "refused: in use");
    sandbox.run(&["-p", "--resume", &session, "--model", "x"], "two");
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["call"], 0);
    assert_eq!(lines[0]["plan"], "start");
    assert_eq!(lines[0]["session_id"], session);
    assert_eq!(lines[0]["prompt"], "one");
    assert_eq!(lines[0]["outcome"], "success");
    assert_eq!(
        lines[0]["argv"],
        serde_json::json!(["-p", "--session-id", session, "--max-turns", "4"])
    );
    assert_eq!(lines[0]["cwd"], sandbox.work.to_str().unwrap());
    // A refused call is logged and counted, with no prompt read and no outcome played.
    assert_eq!(lines[1]["call"], 1);
    assert_eq!(lines[1]["prompt"], Value::Null);
    assert_eq!(lines[2]["call"], 2);
    assert_eq!(lines[2]["plan"], "resume");
}

#[test]
fn without_home_it_fails_as_a_mock_and_says_why() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.command(&["-p", "hi"]);
    command.env_remove("HOME");
    let run = crate::support::run_to_end(command, "");
    assert_eq!(
        run.code(),
        Some(i32::from(agent_mock::claude::MOCK_FAILURE_EXIT))
    );
    assert!(
        run.stderr
            .starts_with("mock-claude: neither CLAUDE_CONFIG_DIR nor HOME"),
        "{}",
        run.stderr
    );
}

#[test]
fn claude_config_dir_moves_the_transcripts() {
    let sandbox = Sandbox::new();
    let config = sandbox.other_dir("config");
    let session = id();
    let mut command = sandbox.command(&["-p", "--session-id", &session.to_string()]);
    command.env("CLAUDE_CONFIG_DIR", &config);
    assert_eq!(crate::support::run_to_end(command, "hi").code(), Some(0));
    let transcripts = agent_mock::transcript::Transcripts::in_config_dir(&config);
    assert!(transcripts.path(&sandbox.work, session).is_file());
    assert!(!sandbox.transcript(session).exists());
}
