//! The commands that read and write the ledger: init, tasks, milestones, sessions, usage,
//! recover and doctor.

use std::os::unix::fs::PermissionsExt;

use crate::snapshot;
use crate::support::World;

#[test]
fn init_creates_a_private_workspace_with_a_commented_config() {
    let world = World::new();
    let output = world.baton(&["init"]).success();
    snapshot!("init", output.normalised());
    let dir = world.work().join(".baton");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("config.toml")), 0o600);
    assert_eq!(mode(&dir.join("baton.db")), 0o600);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("kind = \"claude\""));
    assert!(config.contains("# permission_mode = \"acceptEdits\""));

    let again = world.baton(&["init"]).code(2);
    snapshot!("init_again", again.normalised());
}

#[test]
fn commands_find_the_workspace_from_a_subdirectory() {
    let world = World::with_workspace();
    let nested = world.work().join("src/deep");
    std::fs::create_dir_all(&nested).unwrap();
    let output = world
        .baton_in(&nested, &["task", "add", "From below", "--json"])
        .success();
    assert_eq!(output.json()["id"], 1);
    // The task works in the directory that holds .baton/, not where it was added.
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(
        task["working_dir"].as_str().unwrap(),
        std::fs::canonicalize(world.work())
            .unwrap()
            .to_str()
            .unwrap()
    );
}

#[test]
fn db_flag_and_env_point_elsewhere() {
    let mut world = World::new();
    let ledger = world.root().join("elsewhere.db");
    let ledger = ledger.to_str().unwrap();
    world
        .baton(&["init", "--agent", "mock", "--db", ledger])
        .success();
    assert!(std::path::Path::new(ledger).is_file());
    assert!(!world.work().join(".baton/baton.db").exists());
    world.baton(&["--db", ledger, "task", "add", "t"]).success();
    world.set("BATON_DB", ledger);
    let tasks = world
        .baton_in(&world.root(), &["task", "list", "--json"])
        .success()
        .json();
    assert_eq!(tasks.as_array().unwrap().len(), 1);
}

#[test]
fn tasks_are_added_listed_and_shown() {
    let world = World::with_workspace();
    world
        .baton(&["milestone", "add", "m1", "--description", "First steps"])
        .success();
    let prompt_file = world.work().join("prompt.md");
    std::fs::write(&prompt_file, "Write the parser.\nKeep it small.\n").unwrap();
    assert_eq!(
        world.add_task(&[
            "Parser",
            "--prompt-file",
            "prompt.md",
            "--verify",
            "cargo test",
            "--verify",
            "cargo clippy",
            "--milestone",
            "m1",
            "--max-iterations",
            "3",
            "--max-turns",
            "20"
        ]),
        1
    );
    assert_eq!(
        world.add_task(&[
            "Docs",
            "--prompt",
            "Document the parser.",
            "--after",
            "1",
            "--session-policy",
            "fresh"
        ]),
        2
    );
    let added = world.baton(&["task", "add", "Third", "--json"]).success();
    assert_eq!(added.stdout, "{\n  \"id\": 3\n}\n");

    snapshot!(
        "task_list",
        world.baton(&["task", "list"]).success().normalised()
    );
    snapshot!(
        "task_list_milestone",
        world
            .baton(&["task", "list", "--milestone", "m1"])
            .success()
            .normalised()
    );
    snapshot!(
        "task_list_status",
        world
            .baton(&["task", "list", "--status", "running"])
            .success()
            .normalised()
    );
    snapshot!(
        "task_show",
        world.baton(&["task", "show", "1"]).success().normalised()
    );
    snapshot!(
        "task_show_json",
        world
            .baton(&["task", "show", "2", "--json"])
            .success()
            .normalised()
    );

    let list = world.baton(&["task", "list", "--json"]).success().json();
    let first = &list[0];
    for key in [
        "id",
        "title",
        "status",
        "milestone",
        "iterations",
        "sessions",
        "failure_reason",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    ] {
        assert!(first.get(key).is_some(), "task JSON lacks `{key}`: {first}");
    }
    assert_eq!(first["milestone"], "m1");
    assert_eq!(
        first["verify"],
        serde_json::json!(["cargo test", "cargo clippy"])
    );
    assert_eq!(list[1]["after"], serde_json::json!([1]));
    assert_eq!(list[1]["policy"], "fresh");
    assert_eq!(
        list[2]["prompt"], "Third",
        "the title is the prompt when none is given"
    );
}

#[test]
fn tasks_are_cancelled_retried_and_made_to_wait() {
    let world = World::with_workspace();
    world.add_task(&["One"]);
    world.add_task(&["Two"]);
    snapshot!(
        "task_depend",
        world
            .baton(&["task", "depend", "2", "--on", "1"])
            .success()
            .normalised()
    );
    snapshot!(
        "task_cancel",
        world.baton(&["task", "cancel", "1"]).success().normalised()
    );
    let retried = world
        .baton(&["task", "retry", "1", "--message", "Use the new API."])
        .success();
    snapshot!("task_retry", retried.normalised());
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "pending");
    assert_eq!(task["guidance"], "Use the new API.");
    snapshot!(
        "task_retry_pending",
        world.baton(&["task", "retry", "1"]).code(2).normalised()
    );
}

#[test]
fn milestones_are_created_listed_and_shown() {
    let world = World::with_workspace();
    world
        .baton(&[
            "milestone",
            "add",
            "alpha",
            "--description",
            "The first cut",
            "--session-policy",
            "milestone",
        ])
        .success();
    world.baton(&["milestone", "add", "beta"]).success();
    world.add_task(&["In alpha", "--milestone", "alpha"]);
    snapshot!(
        "milestone_list",
        world.baton(&["milestone", "list"]).success().normalised()
    );
    snapshot!(
        "milestone_show",
        world
            .baton(&["milestone", "show", "alpha"])
            .success()
            .normalised()
    );
    let list = world
        .baton(&["milestone", "list", "--json"])
        .success()
        .json();
    assert_eq!(list[0]["name"], "alpha");
    assert_eq!(list[0]["policy"], "milestone");
    assert_eq!(list[0]["task_count"], 1);
    let again = world.baton(&["milestone", "add", "alpha"]).code(2);
    snapshot!("milestone_exists", again.normalised());
}

#[test]
fn empty_ledgers_say_what_to_do() {
    let world = World::with_workspace();
    let mut text = String::new();
    for args in [
        &["task", "list"][..],
        &["milestone", "list"],
        &["session", "list"],
        &["usage"],
        &["recover"],
        &["run"],
    ] {
        text.push_str(&format!("$ baton {}\n", args.join(" ")));
        text.push_str(&world.baton(args).success().normalised());
    }
    snapshot!("empty", text);
    let sessions = world.baton(&["session", "list", "--json"]).success();
    assert_eq!(sessions.stdout, "[]\n");
}

#[test]
fn doctor_checks_the_workspace_with_the_mock_agent() {
    let world = World::with_workspace();
    snapshot!(
        "doctor_mock",
        world.baton(&["doctor"]).success().normalised()
    );
    let json = world.baton(&["doctor", "--json"]).success().json();
    let names: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["workspace", "config", "ledger", "agent"]);
}

#[test]
fn doctor_reports_a_missing_claude_binary_as_agent_unavailable() {
    let mut world = World::new();
    world.baton(&["init"]).success();
    world.set("BATON_CLAUDE_BIN", "/nonexistent/claude");
    let output = world.baton(&["doctor"]).code(5);
    snapshot!("doctor_no_claude", output.normalised());
}

#[test]
fn doctor_outside_a_workspace_says_so() {
    let world = World::new();
    let output = world.baton(&["doctor"]).code(3);
    assert!(
        output.stdout.contains("FAIL  workspace"),
        "{}",
        output.stdout
    );
}
