//! The audit: reads a ledger after a run and checks the invariants of session ownership,
//! each failure a [`Violation`] that says what is wrong, where.
//!
//! - [`check_ledger`] needs nothing but the ledger: every call's session was opened before
//!   the call started and belongs to the call's task; the session id the agent reported is
//!   the recorded one; no session is left open, leased or with an agent process, and no task
//!   running; no two calls on one session overlap in time; every session's and task's totals
//!   are the sum of their calls.
//! - [`check_witness`] compares the ledger with what the agent was seen to do (see
//!   `timeline`): the session was committed when its call was handed over, the agent
//!   reported the session it was given, calls on one session never overlapped, no more calls
//!   ran at once than allowed, and every call the agent made is recorded with the figures it
//!   reported.
//! - [`check_script`] checks that each task ended the way its script implies.
//! - [`check_served`] compares each call's recorded usage and cost with what the agent
//!   served for the call's scripted reply: the witness sees only what the adapter returned,
//!   so a figure the adapter lost or misread shows here and nowhere else.
//! - [`check_transcripts`] and [`check_standin`] compare the ledger with the agent's own
//!   record: `mock-claude`'s transcript files, or the requests the stand-in received from
//!   the real CLI.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::Instant;

use agent::{SessionId, Usage};
use api_standin::RecordedRequest;
use session_store::{
    CallOutcome, Cost, MilestoneId, RecordedCall, Session, SessionFilter, SessionPolicy,
    SessionStatus, Store, StoreError, Task, TaskFilter, TaskId, TaskStatus, Totals, Verification,
};

use crate::stress::agents::{self, AgentKind};
use crate::stress::script::{self, Plan, ScriptedTask};
use crate::stress::timeline::{Mark, Seen};

/// Which invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invariant {
    /// Every agent call belongs to a session that was opened (committed) before it started.
    OpenedBeforeCall,
    /// The session id a call used, as the agent reported it, is the recorded one.
    ReportedSession,
    /// No session is left open (or leased, or with an agent process); no task left running.
    NothingLeftOpen,
    /// No two calls on one session overlap in time.
    NoOverlap,
    /// Each task's and session's totals equal the sum of their calls.
    Totals,
    /// Each task ended the way its script implies.
    Scripted,
    /// Every call the agent made is recorded, with the figures it reported.
    EveryCallRecorded,
    /// The agent's own record (transcripts, requests) matches the ledger.
    AgentRecord,
    /// No more calls ran at once than the run's concurrency.
    Concurrency,
    /// Each call records exactly the usage and cost the agent served for its scripted reply.
    Served,
    /// No task, milestone or run spent past its budget by more than one response per call in
    /// flight.
    Budget,
}

impl Invariant {
    pub const fn as_str(self) -> &'static str {
        match self {
            Invariant::OpenedBeforeCall => "opened-before-call",
            Invariant::ReportedSession => "reported-session",
            Invariant::NothingLeftOpen => "nothing-left-open",
            Invariant::NoOverlap => "no-overlap",
            Invariant::Totals => "totals",
            Invariant::Scripted => "scripted-outcome",
            Invariant::EveryCallRecorded => "every-call-recorded",
            Invariant::AgentRecord => "agent-record",
            Invariant::Concurrency => "concurrency",
            Invariant::Served => "served",
            Invariant::Budget => "budget",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken invariant, with what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.invariant, self.detail)
    }
}

fn violation(invariant: Invariant, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// Everything the audit reads from a ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub tasks: Vec<Task>,
    pub sessions: Vec<Session>,
    /// Every call, by id.
    pub calls: Vec<RecordedCall>,
    pub verifications: HashMap<TaskId, Vec<Verification>>,
}

impl Ledger {
    pub fn read(store: &Store) -> Result<Ledger, StoreError> {
        let tasks = store.tasks(&TaskFilter::default())?;
        let sessions = store.sessions(&SessionFilter::default())?;
        let mut calls = Vec::new();
        let mut verifications = HashMap::new();
        for task in &tasks {
            calls.extend(store.calls_for_task(task.id)?);
            verifications.insert(task.id, store.verifications_for_task(task.id)?);
        }
        calls.sort_by_key(|call| call.id);
        Ok(Ledger {
            tasks,
            sessions,
            calls,
            verifications,
        })
    }

    /// Each session's calls, oldest first.
    pub fn calls_by_session(&self) -> BTreeMap<SessionId, Vec<&RecordedCall>> {
        let mut by_session: BTreeMap<SessionId, Vec<&RecordedCall>> = BTreeMap::new();
        for call in &self.calls {
            by_session.entry(call.session).or_default().push(call);
        }
        by_session
    }

    pub fn calls_of(&self, task: TaskId) -> Vec<&RecordedCall> {
        self.calls.iter().filter(|call| call.task == task).collect()
    }

    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.iter().find(|task| task.id == id)
    }
}

/// What the ledger holds, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub tasks_by_status: BTreeMap<String, usize>,
    pub calls: usize,
    pub calls_by_outcome: BTreeMap<String, usize>,
    pub sessions_by_status: BTreeMap<String, usize>,
    pub usage: Usage,
    pub cost: Cost,
}

impl Summary {
    pub fn of(ledger: &Ledger) -> Summary {
        let mut summary = Summary {
            calls: ledger.calls.len(),
            ..Summary::default()
        };
        for task in &ledger.tasks {
            *summary
                .tasks_by_status
                .entry(task.status.to_string())
                .or_default() += 1;
        }
        for session in &ledger.sessions {
            *summary
                .sessions_by_status
                .entry(session.status.to_string())
                .or_default() += 1;
        }
        for call in &ledger.calls {
            *summary
                .calls_by_outcome
                .entry(call.outcome.to_string())
                .or_default() += 1;
            summary.usage += call.usage;
            summary.cost += call.cost;
        }
        summary
    }

    /// The calls that failed, by error kind.
    pub fn errors_by_kind(&self) -> BTreeMap<String, usize> {
        self.calls_by_outcome
            .iter()
            .filter(|(outcome, _)| outcome.as_str() != CallOutcome::Success.to_string())
            .map(|(outcome, count)| (outcome.clone(), *count))
            .collect()
    }
}

/// The invariants the ledger alone can show.
pub fn check_ledger(ledger: &Ledger) -> Vec<Violation> {
    let mut found = Vec::new();
    let sessions: HashMap<SessionId, &Session> = ledger
        .sessions
        .iter()
        .map(|session| (session.id, session))
        .collect();
    let milestones: HashMap<TaskId, Option<MilestoneId>> = ledger
        .tasks
        .iter()
        .map(|task| (task.id, task.milestone))
        .collect();

    for call in &ledger.calls {
        let Some(session) = sessions.get(&call.session) else {
            found.push(violation(
                Invariant::OpenedBeforeCall,
                format!(
                    "call {} (task {}) names session {}, which the ledger never opened",
                    call.id, call.task, call.session
                ),
            ));
            continue;
        };
        if session.started_at > call.started_at {
            found.push(violation(
                Invariant::OpenedBeforeCall,
                format!(
                    "call {} started at {} but its session {} was opened at {}",
                    call.id, call.started_at, call.session, session.started_at
                ),
            ));
        }
        let shared = session.policy == SessionPolicy::Milestone
            && session.milestone.is_some()
            && milestones.get(&call.task).copied().flatten() == session.milestone;
        if call.task != session.task && !shared {
            found.push(violation(
                Invariant::OpenedBeforeCall,
                format!(
                    "call {} of task {} was made in session {} of task {}",
                    call.id, call.task, call.session, session.task
                ),
            ));
        }
        if let Some(reported) = call.reported_session
            && reported != call.session
        {
            found.push(violation(
                Invariant::ReportedSession,
                format!(
                    "call {} was recorded in session {} but the agent reported session {reported}",
                    call.id, call.session
                ),
            ));
        }
    }

    for session in &ledger.sessions {
        if session.status == SessionStatus::Open {
            found.push(violation(
                Invariant::NothingLeftOpen,
                format!(
                    "session {} of task {} is still open",
                    session.id, session.task
                ),
            ));
        }
        if session.lease.is_some() {
            found.push(violation(
                Invariant::NothingLeftOpen,
                format!("session {} still has a lease", session.id),
            ));
        }
        if let Some(agent) = &session.agent {
            found.push(violation(
                Invariant::NothingLeftOpen,
                format!(
                    "session {} still names agent process {}",
                    session.id, agent.pid
                ),
            ));
        }
    }
    for task in &ledger.tasks {
        if task.status == TaskStatus::Running {
            found.push(violation(
                Invariant::NothingLeftOpen,
                format!("task {} is still running", task.id),
            ));
        }
    }

    for (session, calls) in ledger.calls_by_session() {
        let mut by_start = calls.clone();
        by_start.sort_by_key(|call| (call.started_at, call.id));
        for pair in by_start.windows(2) {
            if pair[1].started_at < pair[0].ended_at {
                found.push(violation(
                    Invariant::NoOverlap,
                    format!(
                        "calls {} ({} to {}) and {} ({} to {}) overlap in session {session}",
                        pair[0].id,
                        pair[0].started_at,
                        pair[0].ended_at,
                        pair[1].id,
                        pair[1].started_at,
                        pair[1].ended_at
                    ),
                ));
            }
        }
    }

    let mut session_sums: HashMap<SessionId, Totals> = HashMap::new();
    let mut task_sums: HashMap<TaskId, (Totals, u32)> = HashMap::new();
    for call in &ledger.calls {
        let figures = totals_of(call);
        *session_sums.entry(call.session).or_default() += figures;
        let (sum, iterations) = task_sums.entry(call.task).or_default();
        *sum += figures;
        *iterations = (*iterations).max(call.iteration);
    }
    for session in &ledger.sessions {
        let sum = session_sums.get(&session.id).copied().unwrap_or_default();
        if session.totals != sum {
            found.push(violation(
                Invariant::Totals,
                format!(
                    "session {} holds {} but its calls add up to {}",
                    session.id,
                    describe(&session.totals),
                    describe(&sum)
                ),
            ));
        }
    }
    for task in &ledger.tasks {
        let (sum, iterations) = task_sums.get(&task.id).copied().unwrap_or_default();
        if task.totals != sum {
            found.push(violation(
                Invariant::Totals,
                format!(
                    "task {} holds {} but its calls add up to {}",
                    task.id,
                    describe(&task.totals),
                    describe(&sum)
                ),
            ));
        }
        if task.iterations != iterations {
            found.push(violation(
                Invariant::Totals,
                format!(
                    "task {} counts {} iterations but its calls reach iteration {iterations}",
                    task.id, task.iterations
                ),
            ));
        }
    }
    found
}

fn totals_of(call: &RecordedCall) -> Totals {
    Totals {
        agent_calls: 1,
        turns: u64::from(call.turns),
        usage: call.usage,
        cost: call.cost,
    }
}

fn describe(totals: &Totals) -> String {
    let usage = &totals.usage;
    format!(
        "{} calls, {} turns, {}/{}/{}/{} tokens, {}",
        totals.agent_calls,
        totals.turns,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_creation_tokens,
        totals.cost
    )
}

/// One agent call as the witness saw it.
#[derive(Debug, Clone)]
struct SeenCall {
    handed_over: Instant,
    returned: Option<Instant>,
    reported: Option<SessionId>,
    outcome: Option<CallOutcome>,
    usage: Usage,
    cost: Cost,
}

/// Compares the ledger with what the witness saw; `concurrency` is the most calls allowed at
/// once.
pub fn check_witness(
    ledger: &Ledger,
    marks: &[(Instant, Mark)],
    concurrency: usize,
) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut seen: BTreeMap<SessionId, Vec<SeenCall>> = BTreeMap::new();
    let mut in_flight = 0usize;
    let mut peak = 0usize;
    for (at, mark) in marks {
        match mark {
            Mark::Handover {
                session,
                seen: state,
                ..
            } => {
                if *state != Seen::Open {
                    found.push(violation(
                        Invariant::OpenedBeforeCall,
                        format!(
                            "when a call in session {session} was handed to the agent, the ledger \
                             (read on a connection of its own) showed the session as {state:?}"
                        ),
                    ));
                }
                let calls = seen.entry(*session).or_default();
                if let Some(running) = calls.iter().find(|call| call.returned.is_none()) {
                    found.push(violation(
                        Invariant::NoOverlap,
                        format!(
                            "a call in session {session} was handed over {:.3} ms after another \
                             call in it started, before that one returned",
                            at.saturating_duration_since(running.handed_over)
                                .as_secs_f64()
                                * 1000.0
                        ),
                    ));
                }
                calls.push(SeenCall {
                    handed_over: *at,
                    returned: None,
                    reported: None,
                    outcome: None,
                    usage: Usage::ZERO,
                    cost: Cost::ZERO,
                });
                in_flight += 1;
                peak = peak.max(in_flight);
            }
            Mark::Returned {
                session,
                reported,
                outcome,
                usage,
                cost_usd,
            } => {
                in_flight = in_flight.saturating_sub(1);
                if let Some(reported) = reported
                    && reported != session
                {
                    found.push(violation(
                        Invariant::ReportedSession,
                        format!("the agent was given session {session} and reported {reported}"),
                    ));
                }
                let call = seen
                    .get_mut(session)
                    .and_then(|calls| calls.iter_mut().find(|call| call.returned.is_none()));
                if let Some(call) = call {
                    call.returned = Some(*at);
                    call.reported = *reported;
                    call.outcome = Some(*outcome);
                    call.usage = *usage;
                    call.cost = Cost::from_usd(*cost_usd);
                }
            }
            Mark::Run(_) => {}
        }
    }
    if peak > concurrency {
        found.push(violation(
            Invariant::Concurrency,
            format!("{peak} agent calls ran at once; the run allows {concurrency}"),
        ));
    }

    let recorded = ledger.calls_by_session();
    let sessions: HashSet<SessionId> = seen.keys().chain(recorded.keys()).copied().collect();
    for session in sessions {
        let made = seen.get(&session).map(Vec::as_slice).unwrap_or_default();
        let kept = recorded
            .get(&session)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if made.len() != kept.len() {
            found.push(violation(
                Invariant::EveryCallRecorded,
                format!(
                    "the agent made {} calls in session {session}; the ledger records {}",
                    made.len(),
                    kept.len()
                ),
            ));
            continue;
        }
        for (made, kept) in made.iter().zip(kept) {
            let same = made.outcome == Some(kept.outcome)
                && made.usage == kept.usage
                && made.cost == kept.cost
                && made.reported == kept.reported_session;
            if !same {
                found.push(violation(
                    Invariant::EveryCallRecorded,
                    format!(
                        "call {} in session {session} is recorded as {} with {:?}, {} (reported \
                         session {:?}); the agent answered {:?} with {:?}, {} (reported {:?})",
                        kept.id,
                        kept.outcome,
                        kept.usage,
                        kept.cost,
                        kept.reported_session,
                        made.outcome,
                        made.usage,
                        made.cost,
                        made.reported
                    ),
                ));
            }
        }
    }
    found
}

/// Where a plan's tasks and milestones landed in the ledger.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub tasks: Vec<(TaskId, ScriptedTask)>,
    /// By the plan's milestone index.
    pub milestones: Vec<MilestoneId>,
}

/// Checks that every task ended as its script implies: its status, its calls (iteration and
/// outcome, in order, each reporting its session), its checks, and its sessions under the
/// plan's policy.
pub fn check_script(ledger: &Ledger, plan: &Plan, placement: &Placement) -> Vec<Violation> {
    let mut found = Vec::new();
    for (id, scripted) in &placement.tasks {
        let expected = scripted.expected(plan);
        let name = format!("task {id} ({}, {})", scripted.title(), scripted.kind);
        let Some(task) = ledger.task(*id) else {
            found.push(violation(Invariant::Scripted, format!("{name} is missing")));
            continue;
        };
        if task.status != expected.status {
            found.push(violation(
                Invariant::Scripted,
                format!(
                    "{name} ended {} ({}); its script implies {}",
                    task.status,
                    task.failure_reason.as_deref().unwrap_or("no reason given"),
                    expected.status
                ),
            ));
        }
        let calls = ledger.calls_of(*id);
        let made: Vec<(u32, CallOutcome)> = calls
            .iter()
            .map(|call| (call.iteration, call.outcome))
            .collect();
        if made != expected.calls {
            found.push(violation(
                Invariant::Scripted,
                format!(
                    "{name} made the calls {} ; its script implies {}",
                    describe_calls(&made),
                    describe_calls(&expected.calls)
                ),
            ));
        }
        for call in calls.iter().filter(|call| call.reported_session.is_none()) {
            found.push(violation(
                Invariant::ReportedSession,
                format!(
                    "call {} of {name} has no session id from the agent, though every scripted \
                     reply reports one",
                    call.id
                ),
            ));
        }
        let checks: Vec<bool> = ledger
            .verifications
            .get(id)
            .map(|checks| checks.iter().map(Verification::passed).collect())
            .unwrap_or_default();
        if checks != expected.checks {
            found.push(violation(
                Invariant::Scripted,
                format!(
                    "{name} has verifications {checks:?}; its script implies {:?}",
                    expected.checks
                ),
            ));
        }
        let sessions: Vec<&Session> = ledger
            .sessions
            .iter()
            .filter(|session| session.task == *id)
            .collect();
        let session_status = if expected.status == TaskStatus::Completed {
            SessionStatus::Completed
        } else {
            SessionStatus::Failed
        };
        match plan.policy {
            SessionPolicy::Task => {
                let statuses: Vec<SessionStatus> =
                    sessions.iter().map(|session| session.status).collect();
                if statuses != [session_status] {
                    found.push(violation(
                        Invariant::Scripted,
                        format!(
                            "{name} has sessions {statuses:?}; the task policy implies one, \
                             {session_status}"
                        ),
                    ));
                }
            }
            SessionPolicy::Fresh => {
                let mut iterations: Vec<u32> = expected.calls.iter().map(|(i, _)| *i).collect();
                iterations.dedup();
                let statuses: Vec<SessionStatus> =
                    sessions.iter().map(|session| session.status).collect();
                let mut implied = vec![SessionStatus::Completed; iterations.len()];
                if let Some(last) = implied.last_mut() {
                    *last = session_status;
                }
                if statuses != implied {
                    found.push(violation(
                        Invariant::Scripted,
                        format!(
                            "{name} has sessions {statuses:?}; the fresh policy implies \
                             {implied:?}, one per iteration"
                        ),
                    ));
                }
                for call in &calls {
                    let others = calls.iter().filter(|other| {
                        other.iteration != call.iteration && other.session == call.session
                    });
                    if let Some(other) = others.into_iter().next() {
                        found.push(violation(
                            Invariant::Scripted,
                            format!(
                                "{name}: iterations {} and {} share session {} under the fresh \
                                 policy",
                                call.iteration, other.iteration, call.session
                            ),
                        ));
                        break;
                    }
                }
            }
            SessionPolicy::Milestone => {}
        }
    }
    if plan.policy == SessionPolicy::Milestone {
        for (index, milestone) in placement.milestones.iter().enumerate() {
            let count = ledger
                .sessions
                .iter()
                .filter(|session| session.milestone == Some(*milestone))
                .count();
            if count != 1 {
                found.push(violation(
                    Invariant::Scripted,
                    format!(
                        "milestone {milestone} (number {index} of the plan) has {count} sessions; \
                         the milestone policy implies one, resumed task after task"
                    ),
                ));
            }
        }
    }
    found
}

/// Compares each call's recorded usage and cost with what the `kind` agent served for it:
/// the figures of the reply the script gives the call's prompt (see [`agents::served`]).
pub fn check_served(ledger: &Ledger, kind: AgentKind) -> Vec<Violation> {
    let mut found = Vec::new();
    for call in &ledger.calls {
        let reply = script::reply_for(&call.prompt);
        let (usage, cost) = agents::served(kind, reply);
        if call.usage != usage || call.cost != cost {
            found.push(violation(
                Invariant::Served,
                format!(
                    "call {} of task {} records {:?}, {}; the {kind} agent served {:?}, {} \
                     (its reply {reply:?})",
                    call.id, call.task, call.usage, call.cost, usage, cost
                ),
            ));
        }
    }
    found
}

fn describe_calls(calls: &[(u32, CallOutcome)]) -> String {
    let words: Vec<String> = calls
        .iter()
        .map(|(iteration, outcome)| format!("{iteration}:{outcome}"))
        .collect();
    format!("[{}]", words.join(", "))
}

/// Compares the ledger with the transcripts an agent keeps under `projects_dir` (Claude Code's
/// `~/.claude/projects`): each session with a call has exactly one transcript, and there is
/// no transcript of a session the ledger does not know (an agent that made its own session).
pub fn check_transcripts(ledger: &Ledger, projects_dir: &Path) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut transcripts: HashMap<String, usize> = HashMap::new();
    let projects = match std::fs::read_dir(projects_dir) {
        Ok(projects) => projects,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if ledger.calls.is_empty() {
                return found;
            }
            return vec![violation(
                Invariant::AgentRecord,
                format!(
                    "there are calls but no transcripts at {}",
                    projects_dir.display()
                ),
            )];
        }
        Err(err) => {
            return vec![violation(
                Invariant::AgentRecord,
                format!("cannot list {}: {err}", projects_dir.display()),
            )];
        }
    };
    for project in projects.flatten() {
        let Ok(files) = std::fs::read_dir(project.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path
                .extension()
                .is_some_and(|extension| extension == "jsonl")
                && let Some(stem) = path.file_stem()
            {
                *transcripts
                    .entry(stem.to_string_lossy().into_owned())
                    .or_default() += 1;
            }
        }
    }
    let used: HashSet<String> = ledger
        .calls
        .iter()
        .map(|call| call.session.to_string())
        .collect();
    for session in &used {
        match transcripts.get(session).copied().unwrap_or(0) {
            1 => {}
            0 => found.push(violation(
                Invariant::AgentRecord,
                format!("session {session} has calls but the agent kept no transcript of it"),
            )),
            many => found.push(violation(
                Invariant::AgentRecord,
                format!("session {session} has {many} transcripts: it was started more than once"),
            )),
        }
    }
    let known: HashSet<String> = ledger
        .sessions
        .iter()
        .map(|session| session.id.to_string())
        .collect();
    for stem in transcripts.keys() {
        if !known.contains(stem) {
            found.push(violation(
                Invariant::AgentRecord,
                format!(
                    "the agent kept a transcript of session {stem}, which the ledger never opened"
                ),
            ));
        }
    }
    found
}

/// Compares the ledger with the requests the stand-in received from the real CLI: every
/// request names (in `X-Claude-Code-Session-Id`) a session of the ledger, every session with
/// a call was seen, and the usage recorded is exactly the usage served.
pub fn check_standin(
    ledger: &Ledger,
    requests: &[RecordedRequest],
    served: Usage,
) -> Vec<Violation> {
    let mut found = Vec::new();
    let known: HashSet<String> = ledger
        .sessions
        .iter()
        .map(|session| session.id.to_string())
        .collect();
    let mut asked: HashSet<String> = HashSet::new();
    for request in requests.iter().filter(|request| request.is_messages()) {
        match request.session_id() {
            Some(id) if known.contains(id) => {
                asked.insert(id.to_owned());
            }
            Some(id) => found.push(violation(
                Invariant::AgentRecord,
                format!("the CLI sent a request in session {id}, which the ledger never opened"),
            )),
            None => found.push(violation(
                Invariant::AgentRecord,
                String::from("the CLI sent a request that names no session"),
            )),
        }
    }
    for call in &ledger.calls {
        if !asked.contains(&call.session.to_string()) {
            found.push(violation(
                Invariant::AgentRecord,
                format!(
                    "call {} in session {} never reached the stand-in",
                    call.id, call.session
                ),
            ));
        }
    }
    let recorded = ledger
        .calls
        .iter()
        .fold(Usage::ZERO, |sum, call| sum + call.usage);
    if recorded != served {
        found.push(violation(
            Invariant::AgentRecord,
            format!("the ledger records {recorded:?}; the stand-in served {served:?}"),
        ));
    }
    found
}
