//! Turning a run's events into text, with no terminal in sight: the log line an event adds,
//! the state of the running tasks it changes, and the lines of the live view. Every function
//! here is pure (the time is a parameter), so that tables of cases can test them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use agent::{AgentEvent, Usage};
use orchestrator::RunEvent;
use session_store::{Cost, SweptSession, TaskId, TaskStatus};

use crate::human;
use crate::views;

/// How a log line is coloured on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Bad,
    Warn,
    Bold,
}

/// A line of the log, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub text: String,
    pub tone: Tone,
}

/// What the live view knows: the running tasks, and the run's progress as a whole.
#[derive(Debug)]
pub struct Board {
    /// The running tasks.
    pub tasks: BTreeMap<TaskId, TaskState>,
    /// Each task's iteration budget, for `iter 2/5`; the run's tasks are its keys.
    budgets: HashMap<TaskId, u32>,
    /// Tasks that reached a state the run leaves them in (not those put back to pending).
    done: usize,
    /// What the run's finished calls cost.
    spent: Cost,
    /// Whether a watching run has nothing to do and waits for work.
    waiting: bool,
}

/// What the live view shows about one running task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub title: String,
    pub iteration: u32,
    pub action: String,
    /// Usage of the calls that finished.
    pub usage: Usage,
    /// Usage the running call has streamed so far.
    pub call_usage: Usage,
    pub cost: Cost,
    pub started: Instant,
}

/// The log line `event` adds, if it adds one. With a live view (`live`), agent calls starting
/// and tools used show in the view rather than in the log.
pub fn log_line(event: &RunEvent, live: bool) -> Option<LogLine> {
    let line = |text: String, tone: Tone| Some(LogLine { text, tone });
    match event {
        RunEvent::Recovered {
            swept,
            stopped_agent,
        } => line(recovered(swept, *stopped_agent), Tone::Warn),
        RunEvent::TaskStarted { task, title } => {
            line(format!("task {task} started: {title}"), Tone::Bold)
        }
        RunEvent::SessionOpened {
            task,
            session,
            policy,
            reopened,
        } => {
            let verb = if *reopened { "reopened" } else { "opened" };
            let text = format!("task {task}: {verb} session {session} ({policy} policy)");
            line(text, Tone::Plain)
        }
        RunEvent::CallStarted {
            task,
            session,
            iteration,
            plan,
        } => (!live).then(|| LogLine {
            text: format!("task {task} iteration {iteration}: agent call ({plan} {session})"),
            tone: Tone::Plain,
        }),
        RunEvent::Agent { task, event, .. } => match event {
            AgentEvent::ToolUse { name, summary } if !live => line(
                format!(
                    "task {task}: {}",
                    human::truncate(&tool_action(name, summary), 100)
                ),
                Tone::Plain,
            ),
            _ => None,
        },
        RunEvent::CallFinished { .. } => call_finished(event),
        RunEvent::CheckStarted { .. } => None,
        RunEvent::CheckFinished { .. } => check_finished(event),
        RunEvent::Decision {
            task,
            iteration,
            decision,
        } => line(
            format!("task {task} iteration {iteration}: {decision}"),
            Tone::Plain,
        ),
        RunEvent::SessionClosed { .. } | RunEvent::TaskFinished { .. } => ended(event),
        RunEvent::Waiting => line(String::from(WAITING), Tone::Plain),
    }
}

/// What a watching run says when it has nothing to do.
const WAITING: &str = "waiting for work: new tasks, and those a stopped runner left, start as they come (Ctrl-C stops)";

/// The line of a session recovery abandoned.
fn recovered(swept: &SweptSession, stopped_agent: bool) -> String {
    let stopped = if stopped_agent {
        "; stopped the agent it left running"
    } else {
        ""
    };
    format!(
        "recovered: abandoned session {} of task {} ({}){stopped}",
        swept.id,
        swept.task,
        views::why_swept(swept.reason)
    )
}

/// The line of a finished verification command.
fn check_finished(event: &RunEvent) -> Option<LogLine> {
    let RunEvent::CheckFinished {
        task,
        iteration,
        command,
        passed,
        duration,
    } = event
    else {
        return None;
    };
    let (word, tone) = if *passed {
        ("passed", Tone::Good)
    } else {
        ("failed", Tone::Bad)
    };
    let text = format!(
        "task {task} iteration {iteration}: check {word}: {} ({})",
        human::truncate(command, 80),
        human::duration(*duration)
    );
    Some(LogLine { text, tone })
}

/// The line of a finished agent call: its outcome, turns, tokens, cost and time.
fn call_finished(event: &RunEvent) -> Option<LogLine> {
    let RunEvent::CallFinished {
        task,
        iteration,
        outcome,
        usage,
        cost_usd,
        turns,
        duration,
        ..
    } = event
    else {
        return None;
    };
    let text = format!(
        "task {task} iteration {iteration}: agent call {outcome}: {turns} {}, {} in / {} out, {}, {}",
        views::plural(u64::from(*turns), "turn", "turns"),
        human::tokens(usage.prompt_tokens()),
        human::tokens(usage.output_tokens),
        human::dollars(Cost::from_usd(*cost_usd)),
        human::duration(*duration)
    );
    let tone = if outcome.is_success() {
        Tone::Plain
    } else {
        Tone::Bad
    };
    Some(LogLine { text, tone })
}

/// The line of a session or a task that ended.
fn ended(event: &RunEvent) -> Option<LogLine> {
    match event {
        RunEvent::SessionClosed {
            task,
            session,
            status,
            reason,
        } => {
            let reason = match reason.trim() {
                "" => String::new(),
                reason => format!(": {reason}"),
            };
            Some(LogLine {
                text: format!("task {task}: closed session {session} as {status}{reason}"),
                tone: Tone::Plain,
            })
        }
        RunEvent::TaskFinished {
            task,
            status,
            reason,
        } => {
            let tone = match status {
                TaskStatus::Completed => Tone::Good,
                TaskStatus::Failed => Tone::Bad,
                _ => Tone::Warn,
            };
            let reason = reason.as_deref().map(str::trim).unwrap_or_default();
            let text = match status {
                TaskStatus::Pending => {
                    format!("task {task} stopped: it is pending and resumes on the next run")
                }
                _ if !reason.is_empty() => format!("task {task} {status}: {reason}"),
                _ => format!("task {task} {status}"),
            };
            Some(LogLine { text, tone })
        }
        _ => None,
    }
}

/// What a task does when it uses a tool: `Bash cargo test`.
fn tool_action(name: &str, summary: &str) -> String {
    format!("{name} {summary}")
}

impl Board {
    /// A board for a run of the tasks `budgets` names.
    pub fn new(budgets: HashMap<TaskId, u32>) -> Board {
        Board {
            tasks: BTreeMap::new(),
            budgets,
            done: 0,
            spent: Cost::ZERO,
            waiting: false,
        }
    }

    /// Takes in what `event` says about the running tasks; `now` is when it arrived.
    pub fn apply(&mut self, event: &RunEvent, now: Instant) {
        match event {
            RunEvent::TaskStarted { task, title } => {
                let state = TaskState {
                    title: title.clone(),
                    iteration: 0,
                    action: String::from("starting"),
                    usage: Usage::ZERO,
                    call_usage: Usage::ZERO,
                    cost: Cost::ZERO,
                    started: now,
                };
                self.tasks.insert(*task, state);
                self.waiting = false;
            }
            RunEvent::Waiting => self.waiting = true,
            RunEvent::CallFinished {
                task,
                usage,
                cost_usd,
                ..
            } => {
                let cost = Cost::from_usd(*cost_usd);
                self.spent += cost;
                if let Some(state) = self.tasks.get_mut(task) {
                    state.usage += *usage;
                    state.call_usage = Usage::ZERO;
                    state.cost += cost;
                    state.action = String::from("verifying");
                }
            }
            RunEvent::TaskFinished { task, status, .. } => {
                self.tasks.remove(task);
                if *status != TaskStatus::Pending {
                    self.done += 1;
                }
            }
            _ => self.act(event),
        }
    }

    /// Keeps up with what a running task is doing.
    fn act(&mut self, event: &RunEvent) {
        let (task, action) = match event {
            RunEvent::CallStarted {
                task, iteration, ..
            } => {
                if let Some(state) = self.tasks.get_mut(task) {
                    state.iteration = *iteration;
                    state.call_usage = Usage::ZERO;
                }
                (task, String::from("calling the agent"))
            }
            RunEvent::Agent { task, event, .. } => match event {
                AgentEvent::ToolUse { name, summary } => (task, tool_action(name, summary)),
                AgentEvent::Text { text } => (task, format!("says: {}", human::truncate(text, 60))),
                AgentEvent::Usage { usage } => {
                    if let Some(state) = self.tasks.get_mut(task) {
                        state.call_usage += *usage;
                    }
                    return;
                }
                AgentEvent::Spawned { .. }
                | AgentEvent::Init { .. }
                | AgentEvent::ToolResult { .. } => return,
            },
            RunEvent::CheckStarted { task, command, .. } => {
                (task, format!("checking {}", human::truncate(command, 50)))
            }
            RunEvent::Decision { task, decision, .. } => (task, human::truncate(decision, 60)),
            _ => return,
        };
        if let Some(state) = self.tasks.get_mut(task) {
            state.action = action;
        }
    }

    /// The live view's line for the running task `id`, at most `width` columns:
    /// `task 3  Fix the parser  iter 2/5  Bash cargo test  12.3k in / 1.2k out  $0.0123  0:42`.
    pub fn task_line(&self, id: TaskId, now: Instant, width: usize) -> Option<String> {
        let state = self.tasks.get(&id)?;
        let usage = state.usage + state.call_usage;
        let budget = self
            .budgets
            .get(&id)
            .map_or_else(String::new, |max| format!("/{max}"));
        let line = format!(
            "task {id}  {}  iter {}{budget}  {}  {} in / {} out  {}  {}",
            human::truncate(&state.title, 28),
            state.iteration.max(1),
            human::truncate(&state.action, 40),
            human::tokens(usage.prompt_tokens()),
            human::tokens(usage.output_tokens),
            human::dollars(state.cost),
            human::clock(now.saturating_duration_since(state.started)),
        );
        Some(human::truncate(&line, width))
    }

    /// The live view's last line, at most `width` columns: how far the run is, what it has
    /// spent, and how long it has taken; first, when a watching run is idle, that it waits.
    pub fn total_line(&self, elapsed: Duration, width: usize) -> String {
        let total = self.budgets.len().max(self.done + self.tasks.len());
        let waiting = if self.waiting && self.tasks.is_empty() {
            "waiting for work; "
        } else {
            ""
        };
        let line = format!(
            "{waiting}{} of {total} {} done, {} running, {} spent, {} elapsed",
            self.done,
            views::plural(total as u64, "task", "tasks"),
            self.tasks.len(),
            human::dollars(self.spent),
            human::clock(elapsed),
        );
        human::truncate(&line, width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::{PlanKind, SessionId};
    use session_store::{CallOutcome, SessionPolicy, SessionStatus, SweepReason};

    fn session() -> SessionId {
        "0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f".parse().unwrap()
    }

    fn usage() -> Usage {
        Usage {
            input_tokens: 1_200,
            output_tokens: 300,
            cache_read_tokens: 4_000,
            cache_creation_tokens: 800,
        }
    }

    fn call_finished(outcome: CallOutcome, turns: u32) -> RunEvent {
        RunEvent::CallFinished {
            task: TaskId(3),
            session: session(),
            iteration: 2,
            outcome,
            usage: usage(),
            cost_usd: 0.0105,
            turns,
            duration: Duration::from_millis(12_345),
        }
    }

    fn finished(status: TaskStatus, reason: Option<&str>) -> RunEvent {
        RunEvent::TaskFinished {
            task: TaskId(3),
            status,
            reason: reason.map(str::to_owned),
        }
    }

    fn tool_use() -> RunEvent {
        RunEvent::Agent {
            task: TaskId(3),
            session: session(),
            event: AgentEvent::ToolUse {
                name: String::from("Bash"),
                summary: String::from("cargo test"),
            },
        }
    }

    /// Every kind of event, and the line it adds to a plain log.
    fn cases() -> Vec<(RunEvent, Option<(&'static str, Tone)>)> {
        vec![
            (
                RunEvent::Recovered {
                    swept: SweptSession {
                        id: session(),
                        task: TaskId(3),
                        agent: None,
                        owner: None,
                        reason: SweepReason::OwnerGone,
                    },
                    stopped_agent: true,
                },
                Some((
                    "recovered: abandoned session 0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f of task 3 (its runner is gone); stopped the agent it left running",
                    Tone::Warn,
                )),
            ),
            (
                RunEvent::TaskStarted {
                    task: TaskId(3),
                    title: String::from("Fix the parser"),
                },
                Some(("task 3 started: Fix the parser", Tone::Bold)),
            ),
            (
                RunEvent::SessionOpened {
                    task: TaskId(3),
                    session: session(),
                    policy: SessionPolicy::Task,
                    reopened: true,
                },
                Some((
                    "task 3: reopened session 0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f (task policy)",
                    Tone::Plain,
                )),
            ),
            (
                RunEvent::CallStarted {
                    task: TaskId(3),
                    session: session(),
                    iteration: 2,
                    plan: PlanKind::Resume,
                },
                Some((
                    "task 3 iteration 2: agent call (resume 0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f)",
                    Tone::Plain,
                )),
            ),
            (tool_use(), Some(("task 3: Bash cargo test", Tone::Plain))),
            (
                RunEvent::Agent {
                    task: TaskId(3),
                    session: session(),
                    event: AgentEvent::Text {
                        text: String::from("Looking at the parser."),
                    },
                },
                None,
            ),
            (
                call_finished(CallOutcome::Success, 1),
                Some((
                    "task 3 iteration 2: agent call success: 1 turn, 6k in / 300 out, $0.0105, 12.3s",
                    Tone::Plain,
                )),
            ),
            (
                call_finished(CallOutcome::Failed(agent::ErrorKind::Timeout), 4),
                Some((
                    "task 3 iteration 2: agent call timeout: 4 turns, 6k in / 300 out, $0.0105, 12.3s",
                    Tone::Bad,
                )),
            ),
            (
                RunEvent::CheckStarted {
                    task: TaskId(3),
                    iteration: 2,
                    command: String::from("cargo test"),
                },
                None,
            ),
            (
                RunEvent::CheckFinished {
                    task: TaskId(3),
                    iteration: 2,
                    command: String::from("cargo test"),
                    passed: false,
                    duration: Duration::from_millis(850),
                },
                Some((
                    "task 3 iteration 2: check failed: cargo test (850ms)",
                    Tone::Bad,
                )),
            ),
            (
                RunEvent::Decision {
                    task: TaskId(3),
                    iteration: 2,
                    decision: String::from("checks failed; retrying with their output"),
                },
                Some((
                    "task 3 iteration 2: checks failed; retrying with their output",
                    Tone::Plain,
                )),
            ),
            (
                RunEvent::SessionClosed {
                    task: TaskId(3),
                    session: session(),
                    status: SessionStatus::Completed,
                    reason: String::from("  "),
                },
                Some((
                    "task 3: closed session 0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f as completed",
                    Tone::Plain,
                )),
            ),
            (
                finished(TaskStatus::Completed, None),
                Some(("task 3 completed", Tone::Good)),
            ),
            (
                finished(TaskStatus::Failed, Some(" out of iterations \n")),
                Some(("task 3 failed: out of iterations", Tone::Bad)),
            ),
            (
                finished(TaskStatus::Pending, Some("interrupted")),
                Some((
                    "task 3 stopped: it is pending and resumes on the next run",
                    Tone::Warn,
                )),
            ),
        ]
    }

    #[test]
    fn each_event_adds_its_line_to_the_plain_log() {
        for (event, expected) in cases() {
            let expected = expected.map(|(text, tone)| LogLine {
                text: text.to_owned(),
                tone,
            });
            assert_eq!(log_line(&event, false), expected, "{event:?}");
        }
    }

    #[test]
    fn with_a_live_view_calls_starting_and_tools_used_add_no_line() {
        let quiet: Vec<RunEvent> = cases()
            .into_iter()
            .map(|(event, _)| event)
            .filter(|event| log_line(event, false) != log_line(event, true))
            .collect();
        assert_eq!(quiet.len(), 2, "{quiet:?}");
        assert!(
            matches!(quiet[0], RunEvent::CallStarted { .. }),
            "{quiet:?}"
        );
        assert!(matches!(quiet[1], RunEvent::Agent { .. }), "{quiet:?}");
        for event in &quiet {
            assert_eq!(log_line(event, true), None);
        }
    }

    #[test]
    fn the_board_follows_a_task_from_start_to_finish() {
        let start = Instant::now();
        let mut board = Board::new(HashMap::from([(TaskId(3), 5), (TaskId(4), 5)]));
        let at = |seconds| start + Duration::from_secs(seconds);
        board.apply(
            &RunEvent::TaskStarted {
                task: TaskId(3),
                title: String::from("Fix the parser"),
            },
            at(0),
        );
        let steps: Vec<(RunEvent, &str)> = vec![
            (
                RunEvent::CallStarted {
                    task: TaskId(3),
                    session: session(),
                    iteration: 2,
                    plan: PlanKind::Resume,
                },
                "task 3  Fix the parser  iter 2/5  calling the agent  0 in / 0 out  $0  0:01",
            ),
            (
                tool_use(),
                "task 3  Fix the parser  iter 2/5  Bash cargo test  0 in / 0 out  $0  0:01",
            ),
            (
                RunEvent::Agent {
                    task: TaskId(3),
                    session: session(),
                    event: AgentEvent::Usage { usage: usage() },
                },
                "task 3  Fix the parser  iter 2/5  Bash cargo test  6k in / 300 out  $0  0:01",
            ),
            (
                call_finished(CallOutcome::Success, 1),
                "task 3  Fix the parser  iter 2/5  verifying  6k in / 300 out  $0.0105  0:01",
            ),
            (
                RunEvent::CheckStarted {
                    task: TaskId(3),
                    iteration: 2,
                    command: String::from("cargo test"),
                },
                "task 3  Fix the parser  iter 2/5  checking cargo test  6k in / 300 out  $0.0105  0:01",
            ),
        ];
        for (event, expected) in steps {
            board.apply(&event, at(1));
            assert_eq!(
                board.task_line(TaskId(3), at(1), 200).as_deref(),
                Some(expected),
                "after {event:?}"
            );
        }
        assert_eq!(
            board.total_line(Duration::from_secs(75), 200),
            "0 of 2 tasks done, 1 running, $0.0105 spent, 1:15 elapsed"
        );
        board.apply(&finished(TaskStatus::Completed, None), at(2));
        assert_eq!(board.task_line(TaskId(3), at(2), 200), None);
        assert_eq!(
            board.total_line(Duration::from_secs(76), 200),
            "1 of 2 tasks done, 0 running, $0.0105 spent, 1:16 elapsed"
        );
        // A narrow terminal cuts the line, and says so.
        assert_eq!(
            board.total_line(Duration::from_secs(76), 12),
            "1 of 2 task…"
        );
    }

    #[test]
    fn an_idle_watching_run_says_it_waits_for_work_until_a_task_starts() {
        let mut board = Board::new(HashMap::from([(TaskId(3), 5)]));
        let now = Instant::now();
        board.apply(&RunEvent::Waiting, now);
        assert_eq!(
            board.total_line(Duration::from_secs(5), 200),
            "waiting for work; 0 of 1 task done, 0 running, $0 spent, 0:05 elapsed"
        );
        assert_eq!(
            log_line(&RunEvent::Waiting, true).map(|line| line.text),
            Some(String::from(WAITING))
        );
        board.apply(
            &RunEvent::TaskStarted {
                task: TaskId(4),
                title: String::from("Added later"),
            },
            now,
        );
        assert_eq!(
            board.total_line(Duration::from_secs(6), 200),
            "0 of 1 task done, 1 running, $0 spent, 0:06 elapsed"
        );
    }
}
