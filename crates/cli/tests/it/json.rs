//! The `--json` contract: for each command, the fields docs/user-guide.md ("JSON output")
//! documents, no others, each of the JSON type it has.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::runs::RunInProgress;
use crate::support::World;

/// The usage fields every record with totals carries.
const USAGE: &str = "agent_calls:integer turns:integer input_tokens:integer output_tokens:integer \
    cache_read_tokens:integer cache_creation_tokens:integer cost_usd:number";

const TASK: &str = "id:integer title:string status:string milestone:string|null prompt:string \
    working_dir:string verify:array after:array policy:string|null max_iterations:integer \
    max_turns:integer|null iterations:integer sessions:array failure_reason:string|null \
    guidance:string|null runner:object|null created_at:time started_at:time|null \
    finished_at:time|null branch:string|null worktree:string|null base_commit:string|null \
    head_commit:string|null delivery:string|null";

const SESSION: &str = "id:uuid task_id:integer milestone:string|null status:string policy:string \
    started_at:time ended_at:time|null end_reason:string|null lease:object|null";

const CALL: &str = "id:integer session_id:uuid task_id:integer iteration:integer plan:string \
    outcome:string subtype:string|null error_message:string|null reported_session_id:uuid|null \
    turns:integer input_tokens:integer output_tokens:integer cache_read_tokens:integer \
    cache_creation_tokens:integer cost_usd:number duration_ms:integer exit:string|null \
    started_at:time ended_at:time prompt:string result_text:string|null";

const VERIFICATION: &str = "id:integer iteration:integer command:string passed:bool \
    exit:string|null timed_out:bool duration_ms:integer output_tail:string recorded_at:time";

const MILESTONE: &str = "id:integer name:string description:string policy:string|null \
    task_count:integer task_states:object created_at:time";

/// Asserts that `value` is an object with exactly the fields `specs` name, each of one of
/// the types named after its colon: `"id:integer milestone:string|null"`.
#[track_caller]
fn check(value: &Value, specs: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value:#}"));
    let mut expected: Vec<&str> = Vec::new();
    for field in specs.iter().flat_map(|spec| spec.split_whitespace()) {
        let (name, types) = field.split_once(':').expect("a spec is name:type");
        expected.push(name);
        let found = object
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` in {value:#}"));
        assert!(
            types.split('|').any(|kind| is(found, kind)),
            "`{name}` is {found}, not {types}, in {value:#}"
        );
    }
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected, "the fields of {value:#}");
}

/// Checks each element of the array `value`, which must not be empty.
#[track_caller]
fn check_each(value: &Value, specs: &[&str]) {
    let items = value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value:#}"));
    assert!(!items.is_empty(), "nothing to check");
    for item in items {
        check(item, specs);
    }
}

static TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").unwrap());
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$").unwrap()
});

fn is(value: &Value, kind: &str) -> bool {
    match kind {
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "bool" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        "time" => value.as_str().is_some_and(|text| TIME.is_match(text)),
        "uuid" => value.as_str().is_some_and(|text| UUID.is_match(text)),
        _ => panic!("unknown type `{kind}` in a spec"),
    }
}

/// A workspace after one run: milestone `m` holds task 1, which completed; task 2, outside any
/// milestone, failed its check; both have a session, a call and a verification.
fn after_a_run() -> World {
    let world = World::with_workspace();
    world.baton(&["milestone", "add", "m"]).success();
    world.add_task(&["Passes", "--verify", "true", "--milestone", "m"]);
    world.add_task(&[
        "Fails",
        "--verify",
        "echo no; exit 1",
        "--max-iterations",
        "1",
    ]);
    world.baton(&["run"]).code(1);
    world
}

fn json(world: &World, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    world.baton(&all).success().json()
}

#[test]
fn init() {
    let world = World::new();
    let output = world
        .baton(&["init", "--agent", "mock", "--json"])
        .success();
    check(
        &output.json(),
        &["workspace:string config:string ledger:string agent:string"],
    );
}

#[test]
fn doctor() {
    let world = World::with_workspace();
    let report = json(&world, &["doctor"]);
    check(
        &report,
        &[
            "checks:array ledger:string|null settings:object keys:array account:object|null probe:object|null",
        ],
    );
    check_each(
        &report["checks"],
        &["name:string status:string detail:string hint:string|null"],
    );
    for entry in report["keys"].as_array().unwrap() {
        let fields: Vec<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, ["key", "source", "value"], "{entry}");
        assert!(
            entry["key"].is_string() && entry["source"].is_string(),
            "{entry}"
        );
    }
}

#[test]
fn task_add() {
    let world = World::with_workspace();
    check(&json(&world, &["task", "add", "T"]), &["id:integer"]);
}

#[test]
fn task_list() {
    let world = after_a_run();
    check_each(&json(&world, &["task", "list"]), &[TASK, USAGE]);
}

#[test]
fn task_show() {
    let world = after_a_run();
    let task = json(&world, &["task", "show", "2"]);
    check(&task, &[TASK, USAGE, "calls:array verifications:array"]);
    check_each(&task["calls"], &[CALL]);
    check_each(&task["verifications"], &[VERIFICATION]);
}

#[test]
fn task_cancel() {
    let world = World::with_workspace();
    world.add_task(&["T"]);
    let cancelled = json(&world, &["task", "cancel", "1"]);
    check(&cancelled, &["id:integer status:string was:string"]);
    assert_eq!(
        (&cancelled["status"], &cancelled["was"]),
        (&"cancelled".into(), &"pending".into())
    );
}

#[test]
fn task_retry() {
    let world = after_a_run();
    let retried = json(&world, &["task", "retry", "2", "--message", "try harder"]);
    check(
        &retried,
        &["id:integer status:string was:string guidance:string|null"],
    );
    assert_eq!(retried["guidance"], "try harder");
}

#[test]
fn task_depend() {
    let world = World::with_workspace();
    world.add_task(&["A"]);
    world.add_task(&["B"]);
    let depends = json(&world, &["task", "depend", "2", "--on", "1"]);
    check(&depends, &["id:integer after:array"]);
    assert_eq!(depends["after"], serde_json::json!([1]));
}

#[test]
fn milestone_add() {
    let world = World::with_workspace();
    check(
        &json(&world, &["milestone", "add", "m"]),
        &["id:integer name:string"],
    );
}

#[test]
fn milestone_list() {
    let world = after_a_run();
    let milestones = json(&world, &["milestone", "list"]);
    check_each(&milestones, &[MILESTONE, USAGE]);
    assert_eq!(
        milestones[0]["task_states"],
        serde_json::json!({"completed": 1})
    );
}

#[test]
fn milestone_show() {
    let world = after_a_run();
    let milestone = json(&world, &["milestone", "show", "m"]);
    check(&milestone, &[MILESTONE, USAGE, "tasks:array"]);
    check_each(&milestone["tasks"], &[TASK, USAGE]);
}

#[test]
fn run() {
    let world = World::with_workspace();
    // Killed mid-run, it leaves a session for the next run's recovery.
    let (code, _) = RunInProgress::start(&world, 2).signal("-KILL");
    assert_eq!(code, None, "killed by a signal");
    let report = json(&world, &["run"]);
    check(
        &report,
        &[
            "completed:bool cancelled:bool interrupted_by:string|null tasks:array \
           recovered:array total:object",
        ],
    );
    check_each(
        &report["tasks"],
        &[TASK, USAGE, "outcome:string outcome_reason:string|null"],
    );
    check_each(
        &report["recovered"],
        &["task_id:integer session_id:uuid|null requeued:bool stopped_agent:bool"],
    );
    check(&report["total"], &[USAGE]);
}

#[test]
fn session_list() {
    let world = after_a_run();
    check_each(&json(&world, &["session", "list"]), &[SESSION, USAGE]);
}

#[test]
fn session_show() {
    let world = after_a_run();
    let sessions = json(&world, &["session", "list"]);
    let id = sessions[0]["id"].as_str().unwrap();
    let session = json(&world, &["session", "show", id]);
    check(&session, &[SESSION, USAGE, "calls:array"]);
    check_each(&session["calls"], &[CALL]);
}

#[test]
fn usage() {
    let world = after_a_run();
    for (by, row) in [
        ("task", "task_id:integer title:string status:string"),
        ("milestone", "milestone:string|null"),
        (
            "session",
            "session_id:uuid task_id:integer milestone:string|null status:string",
        ),
    ] {
        let usage = json(&world, &["usage", "--by", by]);
        check(&usage, &["by:string rows:array total:object"]);
        assert_eq!(usage["by"], by);
        check_each(&usage["rows"], &[row, USAGE]);
        check(&usage["total"], &[USAGE]);
    }
}

#[test]
fn recover() {
    let world = World::with_workspace();
    let (code, _) = RunInProgress::start(&world, 2).signal("-KILL");
    assert_eq!(code, None, "killed by a signal");
    let recovered = json(&world, &["recover"]);
    check(&recovered, &["recovered:array"]);
    check_each(
        &recovered["recovered"],
        &[
            "task_id:integer session_id:uuid|null reason:string|null stopped_agent:bool \
           requeued:bool",
        ],
    );
}

#[test]
fn quickstart() {
    let world = World::new();
    let output = world
        .baton(&["quickstart", "--dir", "demo", "--json"])
        .success();
    let quickstart = output.json();
    check(
        &quickstart,
        &["workspace:string run:object tasks:array sessions:array"],
    );
    check_each(&quickstart["tasks"], &[TASK, USAGE]);
    check_each(&quickstart["sessions"], &[SESSION, USAGE]);
    check_each(
        &quickstart["run"]["tasks"],
        &[TASK, USAGE, "outcome:string outcome_reason:string|null"],
    );
}
