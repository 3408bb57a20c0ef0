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
    // `settings` keeps its shape: a table per section, lists for lists, null for unset.
    let settings = &json["settings"];
    assert_eq!(settings["agent"]["kind"], "mock");
    assert_eq!(settings["agent"]["model"], serde_json::Value::Null);
    assert_eq!(settings["agent"]["allowed_tools"], serde_json::json!([]));
    assert_eq!(settings["agent"]["env"], serde_json::json!([]));
    assert_eq!(settings["agent"]["timeout"], "30m");
    assert_eq!(settings["agent"]["max_turns"], 50);
    assert_eq!(settings["run"]["concurrency"], 1);
    assert_eq!(settings["run"]["session_policy"], "task");
    assert_eq!(settings["run"]["context_rotation_threshold"], 0.8);
    assert_eq!(settings["run"]["verify_timeout"], "10m");
    assert_eq!(settings["tasks"]["max_iterations"], 5);
    assert!(
        settings["config_file"]
            .as_str()
            .unwrap()
            .ends_with(".baton/config.toml")
    );
    assert_eq!(
        json["keys"][0],
        serde_json::json!({"key": "agent.kind", "value": "mock", "source": "file"})
    );
}

#[test]
fn doctor_says_where_every_setting_came_from() {
    let mut world = World::with_workspace();
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# durability = \"full\"", "durability = \"normal\""),
    )
    .unwrap();
    world.set("BATON_BUSY_TIMEOUT", "5s");
    let json = world
        .baton(&["doctor", "--json", "--db", ".baton/baton.db"])
        .success()
        .json();
    let source = |key: &str| {
        let entry = json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["key"] == key)
            .unwrap_or_else(|| panic!("{key} is not listed"));
        (
            entry["value"].clone(),
            entry["source"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        source("ledger.path"),
        (
            serde_json::json!(world.work().join(".baton/baton.db")),
            String::from("flag")
        )
    );
    assert_eq!(
        source("ledger.busy_timeout"),
        (serde_json::json!("5s"), String::from("environment"))
    );
    assert_eq!(
        source("ledger.durability"),
        (serde_json::json!("normal"), String::from("file"))
    );
    assert_eq!(
        source("run.concurrency"),
        (serde_json::json!(1), String::from("default"))
    );
    assert_eq!(json["settings"]["ledger"]["durability"], "normal");
    // What SQLite was really given, read back from the open ledger.
    let ledger_check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "ledger")
        .unwrap();
    assert!(
        ledger_check["detail"]
            .as_str()
            .unwrap()
            .contains("durability normal,"),
        "{ledger_check}"
    );

    let text = world.baton(&["doctor"]).success().stdout;
    for line in [
        "  agent.kind                      mock (config file)\n",
        "  ledger.busy_timeout             5s (environment)\n",
        "  ledger.durability               normal (config file)\n",
    ] {
        assert!(text.contains(line), "{text}");
    }
}

#[test]
fn a_key_the_file_may_not_set_is_refused_naming_what_sets_it() {
    let world = World::with_workspace();
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}path = \"other.db\"\n")).unwrap();
    let refused = world.baton(&["task", "list"]).code(2);
    assert!(
        refused
            .stderr
            .contains("`ledger.path` cannot be set in the configuration file; set it with `--db` or `BATON_DB`"),
        "{}",
        refused.stderr
    );
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
