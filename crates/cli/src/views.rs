//! What the ledger's records look like in `--json` output, and the lookups the views share.
//!
//! The field names are a contract scripts rely on (docs/user-guide.md lists them): fields
//! are added, never renamed or removed. Times are RFC 3339 in UTC, money is `cost_usd` in
//! dollars, durations are `*_ms` in milliseconds, and ids are numbers (tasks) or UUIDs
//! (sessions).

use std::collections::{BTreeMap, HashMap};

use agent::{ExitInfo, SessionId};
use serde_json::{Map, Value, json};
use session_store::{
    Milestone, MilestoneId, RecordedCall, Session, SessionFilter, Store, StoreError, Task, TaskId,
    Timestamp, Totals, Verification,
};

use crate::human;

/// Milestone names by id, for showing a milestone by its name.
#[derive(Debug, Default)]
pub struct MilestoneNames {
    names: HashMap<MilestoneId, String>,
}

impl MilestoneNames {
    pub fn load(store: &Store) -> Result<MilestoneNames, StoreError> {
        Ok(MilestoneNames {
            names: store
                .milestones()?
                .into_iter()
                .map(|milestone| (milestone.id, milestone.name))
                .collect(),
        })
    }

    pub fn name(&self, id: Option<MilestoneId>) -> Option<&str> {
        id.and_then(|id| self.names.get(&id)).map(String::as_str)
    }
}

/// The sessions each task worked in: the ones it opened, and milestone sessions other tasks
/// opened that its calls went to. In the order the sessions started.
pub fn sessions_by_task(
    store: &Store,
    tasks: &[Task],
) -> Result<BTreeMap<TaskId, Vec<SessionId>>, StoreError> {
    let sessions = store.sessions(&SessionFilter::default())?;
    let order: HashMap<SessionId, usize> = sessions
        .iter()
        .enumerate()
        .map(|(index, session)| (session.id, index))
        .collect();
    let mut by_task: BTreeMap<TaskId, Vec<SessionId>> = BTreeMap::new();
    for task in tasks {
        let mut ids: Vec<SessionId> = sessions
            .iter()
            .filter(|session| session.task == task.id)
            .map(|session| session.id)
            .collect();
        if task.totals.agent_calls > 0 && task.milestone.is_some() {
            for call in store.calls_for_task(task.id)? {
                if !ids.contains(&call.session) {
                    ids.push(call.session);
                }
            }
        }
        ids.sort_by_key(|id| order.get(id).copied().unwrap_or(usize::MAX));
        by_task.insert(task.id, ids);
    }
    Ok(by_task)
}

/// A task, with its usage totals and the sessions it worked in.
pub fn task(task: &Task, milestone: Option<&str>, sessions: &[SessionId]) -> Value {
    let mut object = json!({
        "id": task.id.get(),
        "title": task.title,
        "status": task.status.as_str(),
        "milestone": milestone,
        "prompt": task.prompt,
        "working_dir": task.working_dir.to_string_lossy(),
        "verify": task.verify_commands,
        "after": task.after.iter().map(|id| id.get()).collect::<Vec<_>>(),
        "policy": task.policy.map(|policy| policy.as_str()),
        "max_iterations": task.max_iterations,
        "max_turns": task.max_turns,
        "iterations": task.iterations,
        "sessions": sessions.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "failure_reason": task.failure_reason,
        "guidance": task.guidance,
        "runner": task.runner.as_ref().map(|runner| json!({ "pid": runner.pid, "host": runner.host })),
        "created_at": human::rfc3339(task.created_at),
        "started_at": task.started_at.map(human::rfc3339),
        "finished_at": task.finished_at.map(human::rfc3339),
    });
    add_totals(&mut object, &task.totals);
    object
}

/// A session, with its usage totals.
pub fn session(session: &Session, milestone: Option<&str>) -> Value {
    let mut object = json!({
        "id": session.id.to_string(),
        "task_id": session.task.get(),
        "milestone": milestone,
        "status": session.status.as_str(),
        "policy": session.policy.as_str(),
        "started_at": human::rfc3339(session.started_at),
        "ended_at": session.ended_at.map(human::rfc3339),
        "end_reason": session.end_reason,
        "lease": session.lease.as_ref().map(|lease| json!({
            "pid": lease.owner.pid,
            "host": lease.owner.host,
            "expires_at": human::rfc3339(lease.expires_at),
        })),
    });
    add_totals(&mut object, &session.totals);
    object
}

/// One recorded agent call.
pub fn call(call: &RecordedCall) -> Value {
    json!({
        "id": call.id.get(),
        "session_id": call.session.to_string(),
        "task_id": call.task.get(),
        "iteration": call.iteration,
        "plan": call.plan.as_str(),
        "outcome": call.outcome.as_str(),
        "subtype": call.subtype,
        "error_message": call.error_message,
        "reported_session_id": call.reported_session.map(|id| id.to_string()),
        "turns": call.turns,
        "input_tokens": call.usage.input_tokens,
        "output_tokens": call.usage.output_tokens,
        "cache_read_tokens": call.usage.cache_read_tokens,
        "cache_creation_tokens": call.usage.cache_creation_tokens,
        "cost_usd": call.cost.as_usd(),
        "duration_ms": millis(call.duration),
        "exit": call.exit.map(exit_text),
        "started_at": human::rfc3339(call.started_at),
        "ended_at": human::rfc3339(call.ended_at),
        "prompt": call.prompt,
        "result_text": call.result_text,
    })
}

/// One recorded verification run.
pub fn verification(verification: &Verification) -> Value {
    json!({
        "id": verification.id.get(),
        "iteration": verification.iteration,
        "command": verification.command,
        "passed": verification.passed(),
        "exit": verification.exit.map(exit_text),
        "timed_out": verification.timed_out,
        "duration_ms": millis(verification.duration),
        "output_tail": verification.output_tail,
        "recorded_at": human::rfc3339(verification.recorded_at),
    })
}

/// A milestone, with its usage and how many of its tasks are in each state.
pub fn milestone(milestone: &Milestone, tasks: &[Task], totals: &Totals) -> Value {
    let mut states = Map::new();
    for task in tasks {
        let count = states
            .entry(task.status.as_str())
            .or_insert(Value::from(0u64));
        *count = Value::from(count.as_u64().unwrap_or(0) + 1);
    }
    let mut object = json!({
        "id": milestone.id.get(),
        "name": milestone.name,
        "description": milestone.description,
        "policy": milestone.policy.map(|policy| policy.as_str()),
        "task_count": tasks.len(),
        "task_states": states,
        "created_at": human::rfc3339(milestone.created_at),
    });
    add_totals(&mut object, totals);
    object
}

/// The usage fields every record with totals carries.
pub fn totals(totals: &Totals) -> Value {
    let mut object = json!({});
    add_totals(&mut object, totals);
    object
}

fn add_totals(object: &mut Value, totals: &Totals) {
    if let Value::Object(map) = object {
        let usage = &totals.usage;
        for (key, value) in [
            ("agent_calls", Value::from(totals.agent_calls)),
            ("turns", Value::from(totals.turns)),
            ("input_tokens", Value::from(usage.input_tokens)),
            ("output_tokens", Value::from(usage.output_tokens)),
            ("cache_read_tokens", Value::from(usage.cache_read_tokens)),
            (
                "cache_creation_tokens",
                Value::from(usage.cache_creation_tokens),
            ),
            ("cost_usd", Value::from(totals.cost.as_usd())),
        ] {
            map.insert(key.to_owned(), value);
        }
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `exit 0`, `signal 9`: how a process ended, as text.
pub fn exit_text(exit: ExitInfo) -> String {
    match exit {
        ExitInfo::Code(code) => format!("exit {code}"),
        ExitInfo::Signal(signal) => format!("signal {signal}"),
    }
}

/// A task's token figures for a table cell: `12.3k / 1.2k`.
pub fn tokens_cell(totals: &Totals) -> String {
    format!(
        "{} / {}",
        human::tokens(totals.usage.prompt_tokens()),
        human::tokens(totals.usage.output_tokens)
    )
}

/// One line of usage for `show` commands: calls, turns, tokens in (and where they came
/// from), tokens out, cost.
pub fn usage_line(totals: &Totals) -> String {
    let usage = &totals.usage;
    format!(
        "{} {}, {} {}, {} tokens in ({} new, {} cache read, {} cache write), {} out, {}",
        totals.agent_calls,
        plural(totals.agent_calls, "call", "calls"),
        totals.turns,
        plural(totals.turns, "turn", "turns"),
        human::tokens(usage.prompt_tokens()),
        human::tokens(usage.input_tokens),
        human::tokens(usage.cache_read_tokens),
        human::tokens(usage.cache_creation_tokens),
        human::tokens(usage.output_tokens),
        human::dollars(totals.cost),
    )
}

pub fn plural<'a>(count: u64, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

/// `2025-11-24 04:05:06Z`, or `-`.
pub fn time_cell(at: Option<Timestamp>) -> String {
    at.map_or_else(|| String::from("-"), human::time)
}
