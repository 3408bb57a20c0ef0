//! Errors a person can hit: each says what went wrong, with which id, path or key, what to do,
//! and exits with its documented code.

use crate::snapshot;
use crate::support::World;

#[test]
fn outside_a_workspace_is_not_found() {
    let world = World::new();
    snapshot!(
        "no_workspace",
        world.baton(&["task", "list"]).code(3).normalised()
    );
}

#[test]
fn unknown_ids_are_not_found() {
    let world = World::with_workspace();
    snapshot!(
        "unknown_task",
        world.baton(&["task", "show", "42"]).code(3).normalised()
    );
    snapshot!(
        "unknown_session",
        world
            .baton(&["session", "show", "0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f"])
            .code(3)
            .normalised()
    );
    snapshot!(
        "unknown_milestone",
        world
            .baton(&["task", "add", "t", "--milestone", "nope"])
            .code(3)
            .normalised()
    );
    snapshot!(
        "unknown_after",
        world
            .baton(&["task", "add", "t", "--after", "9"])
            .code(3)
            .normalised()
    );
}

#[test]
fn a_malformed_uuid_is_a_usage_error() {
    let world = World::with_workspace();
    snapshot!(
        "malformed_uuid",
        world
            .baton(&["session", "show", "not-a-uuid"])
            .code(2)
            .normalised()
    );
}

#[test]
fn a_missing_prompt_file_names_the_path() {
    let world = World::with_workspace();
    snapshot!(
        "missing_prompt_file",
        world
            .baton(&["task", "add", "t", "--prompt-file", "nope.md"])
            .code(3)
            .normalised()
    );
    snapshot!(
        "missing_workdir",
        world
            .baton(&["task", "add", "t", "--workdir", "no/such/dir"])
            .code(3)
            .normalised()
    );
}

#[test]
fn a_dependency_cycle_is_refused() {
    let world = World::with_workspace();
    world.add_task(&["A"]);
    world.add_task(&["B", "--after", "1"]);
    world.add_task(&["C", "--after", "2"]);
    snapshot!(
        "dependency_cycle",
        world
            .baton(&["task", "depend", "1", "--on", "3"])
            .code(2)
            .normalised()
    );
}

#[test]
fn an_unknown_config_key_names_the_key_the_line_and_the_file() {
    let world = World::with_workspace();
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[run]\n", "[run]\nconcurency = 4\n")).unwrap();
    snapshot!(
        "unknown_config_key",
        world.baton(&["task", "list"]).code(2).normalised()
    );
}

#[test]
fn a_password_in_the_configured_ledger_url_is_refused_without_showing_it() {
    let world = World::with_workspace();
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[ledger]\n",
        "[ledger]\nurl = \"postgres://baton:s3cret-pw@db.invalid/baton\"\n",
    );
    std::fs::write(&config, &text).unwrap();
    let output = world.baton(&["task", "list"]).code(2);
    let said = format!("{}{}", output.stdout, output.stderr);
    for expected in ["ledger.url", "holds a password", "PGPASSWORD", "~/.pgpass"] {
        assert!(
            said.contains(expected),
            "`{expected}` missing from:\n{said}"
        );
    }
    assert!(!said.contains("s3cret-pw"), "{said}");

    // Without the password, the URL is taken (and the ledger found unreachable later).
    std::fs::write(&config, text.replace("baton:s3cret-pw@", "baton@")).unwrap();
    let output = world.baton(&["task", "list"]);
    assert_ne!(output.code, 2, "{}", output.stderr);
}

#[test]
fn a_bad_config_value_names_the_key() {
    let world = World::with_workspace();
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# timeout = \"30m\"", "timeout = \"30 mintues\""),
    )
    .unwrap();
    snapshot!(
        "bad_config_value",
        world.baton(&["run"]).code(2).normalised()
    );
    std::fs::write(
        &config,
        text.replace(
            "# context_rotation_threshold = 0.8",
            "context_rotation_threshold = 2",
        ),
    )
    .unwrap();
    snapshot!(
        "bad_config_threshold",
        world.baton(&["doctor"]).code(2).normalised()
    );
}

#[test]
fn a_missing_ledger_is_not_found() {
    let world = World::with_workspace();
    std::fs::remove_file(world.work().join(".baton/baton.db")).unwrap();
    snapshot!(
        "missing_ledger",
        world.baton(&["task", "list"]).code(3).normalised()
    );
    let elsewhere = world.root().join("none.db");
    world
        .baton(&["--db", elsewhere.to_str().unwrap(), "usage"])
        .code(3);
}

#[test]
fn a_finished_task_cannot_be_cancelled_or_retried() {
    let world = World::with_workspace();
    world.add_task(&["A"]);
    world.baton(&["run"]).success();
    snapshot!(
        "cancel_completed",
        world.baton(&["task", "cancel", "1"]).code(2).normalised()
    );
    snapshot!(
        "retry_completed",
        world.baton(&["task", "retry", "1"]).code(2).normalised()
    );
}

#[test]
fn a_missing_claude_binary_stops_the_run_before_any_task_starts() {
    let mut world = World::new();
    world.baton(&["init"]).success();
    world.add_task(&["A"]);
    world.set("BATON_CLAUDE_BIN", "/nonexistent/claude");
    snapshot!("run_no_claude", world.baton(&["run"]).code(5).normalised());
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "pending", "nothing ran");
}

/// No task was added: what a refused `task add` must leave behind.
#[track_caller]
fn assert_no_tasks(world: &World) {
    let tasks = world.baton(&["task", "list", "--json"]).success().json();
    assert_eq!(tasks, serde_json::json!([]), "a refused task was written");
}

#[test]
fn a_prompt_that_is_not_text_is_refused() {
    let world = World::with_workspace();
    std::fs::write(world.work().join("bin.md"), b"# Fix it\n\xff\xfe\x00\x01").unwrap();
    std::fs::write(world.work().join("nul.md"), b"# Fix it\n\x00 and more").unwrap();
    std::fs::write(world.work().join("latin1.md"), b"# Caf\xe9\n").unwrap();
    snapshot!(
        "binary_prompt_file",
        world
            .baton(&["task", "add", "t", "--prompt-file", "bin.md"])
            .code(2)
            .normalised()
    );
    snapshot!(
        "nul_prompt_file",
        world
            .baton(&["task", "add", "t", "--prompt-file", "nul.md"])
            .code(2)
            .normalised()
    );
    snapshot!(
        "latin1_prompt_file",
        world
            .baton(&["task", "add", "t", "--prompt-file", "latin1.md"])
            .code(2)
            .normalised()
    );
    snapshot!(
        "binary_prompt_stdin",
        world
            .baton_with_stdin(&["task", "add", "t", "--prompt-file", "-"], b"ok \xc3\x28")
            .code(2)
            .normalised()
    );
    world
        .baton_with_stdin(&["task", "add", "t", "--prompt-file", "-"], b"a\x00b")
        .code(2);
    assert_no_tasks(&world);
    // Text from standard input is fine.
    world
        .baton_with_stdin(
            &["task", "add", "t", "--prompt-file", "-"],
            "Café ✓\n".as_bytes(),
        )
        .success();
}

#[test]
fn an_empty_title_or_prompt_is_refused() {
    let world = World::with_workspace();
    std::fs::write(world.work().join("blank.md"), " \n\t\n").unwrap();
    snapshot!(
        "empty_title",
        world
            .baton(&["task", "add", " ", "--prompt", "do it"])
            .code(2)
            .normalised()
    );
    snapshot!(
        "empty_prompt",
        world
            .baton(&["task", "add", "t", "--prompt", ""])
            .code(2)
            .normalised()
    );
    snapshot!(
        "blank_prompt_file",
        world
            .baton(&["task", "add", "t", "--prompt-file", "blank.md"])
            .code(2)
            .normalised()
    );
    world
        .baton_with_stdin(&["task", "add", "t", "--prompt-file", "-"], b"")
        .code(2);
    assert_no_tasks(&world);
}

#[test]
fn a_configured_concurrency_is_bounded_like_the_flag() {
    let world = World::with_workspace();
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# concurrency = 1", "concurrency = 100000"),
    )
    .unwrap();
    snapshot!(
        "config_concurrency_too_large",
        world.baton(&["run"]).code(2).normalised()
    );
    std::fs::write(
        &config,
        text.replace("# concurrency = 1", "concurrency = 64"),
    )
    .unwrap();
    world.baton(&["run"]).success();
    world.baton(&["run", "--concurrency", "65"]).code(2);
}

#[test]
fn a_bad_busy_timeout_names_the_variable() {
    let mut world = World::with_workspace();
    world.set("BATON_BUSY_TIMEOUT", "soon");
    snapshot!(
        "bad_busy_timeout",
        world.baton(&["task", "list"]).code(2).normalised()
    );
    let mut world = World::with_workspace();
    world.set("BATON_BUSY_TIMEOUT", "0s");
    let zero = world.baton(&["task", "list"]).code(2);
    assert!(zero.stderr.contains("longer than zero"), "{}", zero.stderr);
}
