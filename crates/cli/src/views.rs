//! What the ledger's records look like in `--json` output (one `Serialize` type each, which the
//! commands' own output types hold), the lookups they share, and the cells and lines of their
//! human forms.
//!
//! The field names are a contract scripts rely on (docs/user-guide.md lists them): fields
//! are added, never renamed or removed. Times are RFC 3339 in UTC, money is `cost_usd` in
//! dollars, durations are `*_ms` in milliseconds, and ids are numbers (tasks) or UUIDs
//! (sessions).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use agent::{ExitInfo, SessionId};
use serde::Serialize;
use session_store::{
    Budget, BudgetScope, BudgetStatus, Cost, Milestone, MilestoneId, RecordedCall, Session,
    SessionFilter, Store, StoreError, SweepReason, Task, TaskId, Timestamp, Totals, Verification,
    usd,
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
#[derive(Debug, Serialize)]
pub struct TaskJson<'a> {
    id: i64,
    title: &'a str,
    status: &'static str,
    milestone: Option<&'a str>,
    prompt: &'a str,
    working_dir: Cow<'a, str>,
    verify: &'a [String],
    after: Vec<i64>,
    policy: Option<&'static str>,
    max_iterations: u32,
    max_turns: Option<u32>,
    iterations: u32,
    sessions: Vec<String>,
    failure_reason: Option<&'a str>,
    guidance: Option<&'a str>,
    runner: Option<RunnerJson<'a>>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    #[serde(flatten)]
    totals: TotalsJson,
    #[serde(flatten)]
    workspace: WorkspaceJson,
    #[serde(flatten)]
    budget: BudgetJson,
}

/// A budget's limits, present only when set, so that records without a budget read as they
/// always did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BudgetJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
}

impl BudgetJson {
    pub fn new(budget: &Budget) -> BudgetJson {
        BudgetJson {
            max_cost_usd: budget.max_cost.map(Cost::as_usd),
            max_tokens: budget.max_tokens,
        }
    }
}

/// The budget of each of `tasks`, by id.
pub fn budgets_by_task(
    store: &Store,
    tasks: &[Task],
) -> Result<BTreeMap<TaskId, Budget>, StoreError> {
    tasks
        .iter()
        .map(|task| Ok((task.id, store.budget(BudgetScope::Task(task.id))?.budget)))
        .collect()
}

/// A budget and its spend for a person: `$0.05 of $2.00 spent, 1.2k of 500k tokens`; `None`
/// without a budget.
pub fn budget_line(status: &BudgetStatus) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(max) = status.budget.max_cost {
        parts.push(format!("{} of {} spent", usd(status.spent.cost), usd(max)));
    }
    if let Some(max) = status.budget.max_tokens {
        parts.push(format!(
            "{} of {} tokens",
            human::tokens(status.spent_tokens()),
            human::tokens(max)
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Where a task's work lives: its branch and worktree, the commits it started from and ended
/// at, and how it was delivered. All null for a task without a worktree.
#[derive(Debug, Serialize, Default)]
pub struct WorkspaceJson {
    branch: Option<String>,
    worktree: Option<String>,
    base_commit: Option<String>,
    head_commit: Option<String>,
    /// `pending`, `branch`, `merged`, `conflict`, `pushed`, `rejected` or `skipped`.
    delivery: Option<String>,
}

impl WorkspaceJson {
    pub fn new(workspace: Option<&session_store::TaskWorkspace>) -> WorkspaceJson {
        let Some(workspace) = workspace else {
            return WorkspaceJson::default();
        };
        WorkspaceJson {
            branch: workspace.branch.clone(),
            worktree: workspace.worktree_path.clone(),
            base_commit: workspace.base_commit.clone(),
            head_commit: workspace.head_commit.clone(),
            delivery: workspace.delivery.clone(),
        }
    }
}

/// The process that holds a task or a session.
#[derive(Debug, Serialize)]
struct RunnerJson<'a> {
    pid: u32,
    host: &'a str,
}

/// A session, with its usage totals.
#[derive(Debug, Serialize)]
pub struct SessionJson<'a> {
    id: String,
    task_id: i64,
    milestone: Option<&'a str>,
    status: &'static str,
    policy: &'static str,
    started_at: String,
    ended_at: Option<String>,
    end_reason: Option<&'a str>,
    lease: Option<LeaseJson<'a>>,
    #[serde(flatten)]
    totals: TotalsJson,
}

#[derive(Debug, Serialize)]
struct LeaseJson<'a> {
    pid: u32,
    host: &'a str,
    expires_at: String,
}

/// One recorded agent call.
#[derive(Debug, Serialize)]
pub struct CallJson<'a> {
    id: i64,
    session_id: String,
    task_id: i64,
    iteration: u32,
    plan: &'static str,
    outcome: &'static str,
    subtype: Option<&'a str>,
    error_message: Option<&'a str>,
    reported_session_id: Option<String>,
    turns: u32,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    cost_usd: f64,
    duration_ms: u64,
    exit: Option<String>,
    started_at: String,
    ended_at: String,
    prompt: &'a str,
    result_text: Option<&'a str>,
}

/// One recorded verification run.
#[derive(Debug, Serialize)]
pub struct VerificationJson<'a> {
    id: i64,
    iteration: u32,
    command: &'a str,
    passed: bool,
    exit: Option<String>,
    timed_out: bool,
    duration_ms: u64,
    output_tail: &'a str,
    recorded_at: String,
}

/// A milestone, with its usage and how many of its tasks are in each state.
#[derive(Debug, Serialize)]
pub struct MilestoneJson<'a> {
    id: i64,
    name: &'a str,
    description: &'a str,
    policy: Option<&'static str>,
    task_count: usize,
    task_states: BTreeMap<&'static str, u64>,
    created_at: String,
    #[serde(flatten)]
    totals: TotalsJson,
    #[serde(flatten)]
    budget: BudgetJson,
}

/// The usage fields every record with totals carries.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TotalsJson {
    agent_calls: u64,
    turns: u64,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    cost_usd: f64,
}

impl<'a> TaskJson<'a> {
    /// The task with its budget's limits.
    pub fn with_budget(mut self, budget: &Budget) -> Self {
        self.budget = BudgetJson::new(budget);
        self
    }

    pub fn new(task: &'a Task, milestone: Option<&'a str>, sessions: &[SessionId]) -> Self {
        TaskJson {
            id: task.id.get(),
            title: &task.title,
            status: task.status.as_str(),
            milestone,
            prompt: &task.prompt,
            working_dir: task.working_dir.to_string_lossy(),
            verify: &task.verify_commands,
            after: task.after.iter().map(|id| id.get()).collect(),
            policy: task.policy.map(|policy| policy.as_str()),
            max_iterations: task.max_iterations,
            max_turns: task.max_turns,
            iterations: task.iterations,
            sessions: sessions.iter().map(ToString::to_string).collect(),
            failure_reason: task.failure_reason.as_deref(),
            guidance: task.guidance.as_deref(),
            runner: task.runner.as_ref().map(|runner| RunnerJson {
                pid: runner.pid,
                host: &runner.host,
            }),
            created_at: human::rfc3339(task.created_at),
            started_at: task.started_at.map(human::rfc3339),
            finished_at: task.finished_at.map(human::rfc3339),
            totals: TotalsJson::new(&task.totals),
            workspace: WorkspaceJson::default(),
            budget: BudgetJson::default(),
        }
    }

    /// This task's JSON with where its work lives.
    pub fn with_workspace(self, workspace: Option<&session_store::TaskWorkspace>) -> Self {
        TaskJson {
            workspace: WorkspaceJson::new(workspace),
            ..self
        }
    }

    /// Each of `tasks`, with its milestone's name and its sessions.
    pub fn all(
        tasks: &'a [Task],
        names: &'a MilestoneNames,
        sessions: &BTreeMap<TaskId, Vec<SessionId>>,
    ) -> Vec<Self> {
        tasks
            .iter()
            .map(|task| {
                TaskJson::new(
                    task,
                    names.name(task.milestone),
                    sessions_of(sessions, task.id),
                )
            })
            .collect()
    }
}

impl<'a> SessionJson<'a> {
    pub fn new(session: &'a Session, milestone: Option<&'a str>) -> Self {
        SessionJson {
            id: session.id.to_string(),
            task_id: session.task.get(),
            milestone,
            status: session.status.as_str(),
            policy: session.policy.as_str(),
            started_at: human::rfc3339(session.started_at),
            ended_at: session.ended_at.map(human::rfc3339),
            end_reason: session.end_reason.as_deref(),
            lease: session.lease.as_ref().map(|lease| LeaseJson {
                pid: lease.owner.pid,
                host: &lease.owner.host,
                expires_at: human::rfc3339(lease.expires_at),
            }),
            totals: TotalsJson::new(&session.totals),
        }
    }

    /// Each of `sessions`, with its milestone's name.
    pub fn all(sessions: &'a [Session], names: &'a MilestoneNames) -> Vec<Self> {
        sessions
            .iter()
            .map(|session| SessionJson::new(session, names.name(session.milestone)))
            .collect()
    }
}

impl<'a> CallJson<'a> {
    pub fn new(call: &'a RecordedCall) -> Self {
        CallJson {
            id: call.id.get(),
            session_id: call.session.to_string(),
            task_id: call.task.get(),
            iteration: call.iteration,
            plan: call.plan.as_str(),
            outcome: call.outcome.as_str(),
            subtype: call.subtype.as_deref(),
            error_message: call.error_message.as_deref(),
            reported_session_id: call.reported_session.map(|id| id.to_string()),
            turns: call.turns,
            input_tokens: call.usage.input_tokens,
            output_tokens: call.usage.output_tokens,
            cache_read_tokens: call.usage.cache_read_tokens,
            cache_creation_tokens: call.usage.cache_creation_tokens,
            cost_usd: call.cost.as_usd(),
            duration_ms: millis(call.duration),
            exit: call.exit.map(exit_text),
            started_at: human::rfc3339(call.started_at),
            ended_at: human::rfc3339(call.ended_at),
            prompt: &call.prompt,
            result_text: call.result_text.as_deref(),
        }
    }

    pub fn all(calls: &'a [RecordedCall]) -> Vec<Self> {
        calls.iter().map(CallJson::new).collect()
    }
}

impl<'a> VerificationJson<'a> {
    pub fn new(verification: &'a Verification) -> Self {
        VerificationJson {
            id: verification.id.get(),
            iteration: verification.iteration,
            command: &verification.command,
            passed: verification.passed(),
            exit: verification.exit.map(exit_text),
            timed_out: verification.timed_out,
            duration_ms: millis(verification.duration),
            output_tail: &verification.output_tail,
            recorded_at: human::rfc3339(verification.recorded_at),
        }
    }

    pub fn all(verifications: &'a [Verification]) -> Vec<Self> {
        verifications.iter().map(VerificationJson::new).collect()
    }
}

impl<'a> MilestoneJson<'a> {
    pub fn new(milestone: &'a Milestone, tasks: &[Task], totals: &Totals) -> Self {
        let mut task_states = BTreeMap::new();
        for task in tasks {
            *task_states.entry(task.status.as_str()).or_insert(0) += 1;
        }
        MilestoneJson {
            id: milestone.id.get(),
            name: &milestone.name,
            description: &milestone.description,
            policy: milestone.policy.map(|policy| policy.as_str()),
            task_count: tasks.len(),
            task_states,
            created_at: human::rfc3339(milestone.created_at),
            totals: TotalsJson::new(totals),
            budget: BudgetJson::default(),
        }
    }

    /// The milestone with its budget's limits.
    pub fn with_budget(mut self, budget: &Budget) -> Self {
        self.budget = BudgetJson::new(budget);
        self
    }
}

impl TotalsJson {
    pub fn new(totals: &Totals) -> TotalsJson {
        let usage = &totals.usage;
        TotalsJson {
            agent_calls: totals.agent_calls,
            turns: totals.turns,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_read_tokens: usage.cache_read_tokens,
            cache_creation_tokens: usage.cache_creation_tokens,
            cost_usd: totals.cost.as_usd(),
        }
    }
}

/// The sessions `task` worked in, from a map [`sessions_by_task`] made.
pub fn sessions_of(sessions: &BTreeMap<TaskId, Vec<SessionId>>, task: TaskId) -> &[SessionId] {
    sessions.get(&task).map(Vec::as_slice).unwrap_or_default()
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

/// Why recovery abandoned a session, in words.
pub fn why_swept(reason: SweepReason) -> &'static str {
    match reason {
        SweepReason::OwnerGone => "its runner is gone",
        SweepReason::LeaseExpired => "its lease expired",
        SweepReason::Unowned => "nobody held it",
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
