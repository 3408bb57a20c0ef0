//! Snapshots of the command line each plan and option set becomes.

use agent::{AgentCall, PermissionMode, SessionId, SessionPlan};
use agent_claude::build_argv;

fn snapshot(name: &str, call: &AgentCall) {
    insta::with_settings!({
        filters => vec![(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[SESSION_ID]",
        )],
    }, {
        insta::assert_snapshot!(name, build_argv(call).join("\n"));
    });
}

fn call(plan: SessionPlan) -> AgentCall {
    AgentCall::new("the prompt is never an argument", plan, "/work")
}

#[test]
fn start_with_defaults() {
    snapshot(
        "start_defaults",
        &call(SessionPlan::Start(SessionId::new_v4())),
    );
}

#[test]
fn resume_with_defaults() {
    snapshot(
        "resume_defaults",
        &call(SessionPlan::Resume(SessionId::new_v4())),
    );
}

#[test]
fn start_with_every_option() {
    let mut call = call(SessionPlan::Start(SessionId::new_v4()));
    call.max_turns = Some(25);
    call.model = Some("claude-sonnet-4-5".into());
    call.permission_mode = Some(PermissionMode::AcceptEdits);
    call.allowed_tools = vec!["Read".into(), "Write".into(), "Bash(git log:*)".into()];
    snapshot("start_every_option", &call);
}

#[test]
fn resume_with_a_larger_turn_budget_in_plan_mode() {
    let mut call = call(SessionPlan::Resume(SessionId::new_v4()));
    call.max_turns = Some(50);
    call.permission_mode = Some(PermissionMode::Plan);
    snapshot("resume_max_turns_plan_mode", &call);
}

#[test]
fn every_permission_mode_is_spelled_as_the_cli_wants() {
    for mode in PermissionMode::ALL {
        let mut call = call(SessionPlan::Start(SessionId::new_v4()));
        call.permission_mode = Some(mode);
        snapshot(&format!("permission_mode_{}", mode.as_str()), &call);
    }
}
