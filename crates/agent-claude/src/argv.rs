//! The command line a call becomes.

use agent::{AgentCall, SessionPlan};

/// The arguments after the program name for `call`.
///
/// Always print mode with the line-per-event output (`-p --output-format stream-json
/// --verbose`); then exactly one of `--session-id <id>` (a `Start`) or `--resume <id>` (a
/// `Resume`), never both; then the call's limits and options. The prompt is not here: it goes
/// on stdin, so it is never parsed as a flag, never shows in `ps`, and never meets a shell.
///
/// `--allowedTools` comes last and takes the tools as one comma-separated argument, which the
/// CLI splits itself (checked on 2.1.328 with `Read,Write` and `Bash(git log:*),Write`).
pub fn build_argv(call: &AgentCall) -> Vec<String> {
    let mut argv: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
        .into_iter()
        .map(String::from)
        .collect();
    let (flag, id) = match call.plan {
        SessionPlan::Start(id) => ("--session-id", id),
        SessionPlan::Resume(id) => ("--resume", id),
    };
    argv.push(flag.into());
    argv.push(id.to_string());
    if let Some(max_turns) = call.max_turns {
        argv.push("--max-turns".into());
        argv.push(max_turns.to_string());
    }
    if let Some(max_cost) = call.max_cost_usd {
        argv.push("--max-budget-usd".into());
        argv.push(budget_text(max_cost));
    }
    if let Some(model) = &call.model {
        argv.push("--model".into());
        argv.push(model.clone());
    }
    if let Some(mode) = call.permission_mode {
        argv.push("--permission-mode".into());
        argv.push(mode.as_str().into());
    }
    if !call.allowed_tools.is_empty() {
        argv.push("--allowedTools".into());
        argv.push(call.allowed_tools.join(","));
    }
    argv
}

/// A dollar amount as `--max-budget-usd` takes it: a plain decimal, never exponent notation,
/// rounded down to a nano-dollar so that the limit never exceeds what Baton has left.
fn budget_text(usd: f64) -> String {
    let nano = (usd.max(0.0) * 1e9).floor();
    format!("{:.9}", nano / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::SessionId;

    #[test]
    fn the_money_limit_is_a_plain_decimal() {
        let mut call = AgentCall::new("p", SessionPlan::Start(SessionId::new_v4()), "/w");
        assert!(!build_argv(&call).contains(&"--max-budget-usd".to_owned()));
        call.max_cost_usd = Some(0.05);
        let argv = build_argv(&call);
        let at = argv
            .iter()
            .position(|arg| arg == "--max-budget-usd")
            .unwrap();
        assert_eq!(argv[at + 1], "0.050000000");
        assert_eq!(budget_text(1e-12), "0.000000000");
    }

    #[test]
    fn start_and_resume_use_one_flag_each() {
        let id = SessionId::new_v4();
        let start = build_argv(&AgentCall::new("p", SessionPlan::Start(id), "/w"));
        let resume = build_argv(&AgentCall::new("p", SessionPlan::Resume(id), "/w"));
        assert!(start.contains(&"--session-id".to_owned()));
        assert!(!start.contains(&"--resume".to_owned()));
        assert!(resume.contains(&"--resume".to_owned()));
        assert!(!resume.contains(&"--session-id".to_owned()));
        assert!(start.contains(&id.to_string()) && resume.contains(&id.to_string()));
    }

    #[test]
    fn the_prompt_never_reaches_the_command_line() {
        let call = AgentCall::new(
            "--dangerously-skip-permissions; rm -rf /",
            SessionPlan::Start(SessionId::new_v4()),
            "/w",
        );
        assert!(
            build_argv(&call)
                .iter()
                .all(|arg| !arg.contains("dangerously"))
        );
    }
}
