//! Budgets from the command line: flags and their refusals, a spent task budget blocking the
//! task, a raise that continues it, and a run stopped by its own budget.

use crate::support::World;

#[test]
fn bad_amounts_are_refused_with_exit_2_naming_the_flag() {
    let world = World::with_workspace();
    for (flag, value) in [
        ("--max-cost", "-1"),
        ("--max-cost", "0"),
        ("--max-cost", "NaN"),
        ("--max-cost", "inf"),
        ("--max-cost", "lots"),
        ("--max-cost", "1e3"),
        ("--max-tokens", "0"),
        ("--max-tokens", "-5"),
        ("--max-tokens", "many"),
    ] {
        for command in [
            vec!["task", "add", "t", flag, value],
            vec!["milestone", "add", "m", flag, value],
            vec!["run", flag, value],
        ] {
            let output = world.baton(&command).code(2);
            assert!(
                output.stderr.contains(flag),
                "{command:?}: the error names {flag}:\n{}",
                output.stderr
            );
        }
    }
    // Nothing was added by the refused commands.
    let tasks = world.baton(&["task", "list", "--json"]).success().json();
    assert_eq!(tasks.as_array().unwrap().len(), 0);
}

#[test]
fn a_spent_task_budget_blocks_it_and_a_raise_continues_the_same_session() {
    let world = World::with_workspace();
    // The built-in mock agent costs $0.0105 a call; the check never passes.
    let id = world.add_task(&["Endless", "--verify", "false", "--max-cost", "0.015"]);
    let id = id.to_string();
    let shown = world
        .baton(&["task", "show", &id, "--json"])
        .success()
        .json();
    assert_eq!(shown["max_cost_usd"], 0.015);

    let output = world.baton(&["run"]).code(1);
    assert!(
        output
            .stdout
            .contains("budget spent: $0.0150 of $0.0150 (task)"),
        "{}",
        output.stdout
    );
    let shown = world
        .baton(&["task", "show", &id, "--json"])
        .success()
        .json();
    assert_eq!(shown["status"], "blocked");
    assert_eq!(shown["cost_usd"], 0.015, "spent exactly the budget");
    let sessions = shown["sessions"].clone();
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    let human = world.baton(&["task", "show", &id]).success();
    assert!(
        human.stdout.contains("$0.0150 of $0.0150 spent"),
        "{}",
        human.stdout
    );

    let refused = world
        .baton(&["task", "retry", &id, "--max-cost", "0.01"])
        .code(2);
    assert!(
        refused.stderr.contains("already spent $0.0150"),
        "{}",
        refused.stderr
    );
    world
        .baton(&["task", "retry", &id, "--max-cost", "0.03"])
        .success();
    world.baton(&["run"]).code(1);
    let shown = world
        .baton(&["task", "show", &id, "--json"])
        .success()
        .json();
    assert_eq!(shown["max_cost_usd"], 0.03);
    assert_eq!(shown["cost_usd"], 0.03);
    assert_eq!(
        shown["sessions"], sessions,
        "the raise continued the same session"
    );
}

#[test]
fn a_spent_run_budget_stops_the_run_and_leaves_unstarted_tasks_pending() {
    let world = World::with_workspace();
    for title in ["One", "Two", "Three", "Four"] {
        world.add_task(&[title]);
    }
    let output = world
        .baton(&["run", "--max-cost", "0.02", "--json"])
        .code(1);
    let report = output.json();
    assert_eq!(report["completed"], false);
    assert_eq!(report["budget"]["max_cost_usd"], 0.02);
    assert_eq!(report["budget"]["spent_cost_usd"], 0.02);
    assert_eq!(
        report["budget"]["stopped"],
        "budget spent: $0.02 of $0.02 (run)"
    );
    let tasks = world.baton(&["task", "list", "--json"]).success().json();
    let pending = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|task| task["status"] == "pending")
        .count();
    assert!(pending >= 2, "unstarted tasks stay pending: {tasks}");
    let sessions = world.baton(&["session", "list", "--json"]).success().json();
    for session in sessions.as_array().unwrap() {
        assert_ne!(session["status"], "open", "the stop is clean");
    }
}
