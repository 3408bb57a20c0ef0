//! What a person sees while `baton run` works: a log of what happened, one line per event,
//! and on a terminal a live block under it with each running task's iteration, the agent's
//! latest action, the tokens and cost so far, and the time it has taken.
//!
//! The orchestrator reports [`RunEvent`]s on its own tasks; they are sent over a channel to a
//! renderer thread, which owns the output, so that reporting never waits on the terminal.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::{AgentEvent, Usage};
use orchestrator::{RunEvent, RunEvents};
use session_store::{Cost, SweepReason, TaskId, TaskStatus};

use crate::human;
use crate::output;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A terminal: log lines above a live block that is redrawn in place.
    Live { color: bool, width: usize },
    /// Plain lines, each prefixed with the time since the run started, for logs and pipes.
    Lines { to_stderr: bool },
}

/// A running renderer. [`Progress::finish`] stops it and clears the live block.
pub struct Progress {
    sender: mpsc::Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

enum Message {
    Event(Box<RunEvent>),
    Note(String),
    Stop,
}

impl Progress {
    /// Starts rendering. `max_iterations` gives each task's iteration budget, for `2/5`.
    pub fn start(mode: Mode, max_iterations: HashMap<TaskId, u32>) -> Progress {
        let (sender, receiver) = mpsc::channel();
        let renderer = Renderer {
            mode,
            started: Instant::now(),
            tasks: BTreeMap::new(),
            max_iterations,
            live_lines: 0,
            last_draw: None,
        };
        let thread = std::thread::Builder::new()
            .name(String::from("baton-progress"))
            .spawn(move || renderer.run(&receiver))
            .ok();
        Progress { sender, thread }
    }

    /// Where the orchestrator sends its events.
    pub fn events(&self) -> RunEvents {
        let sender = self.sender.clone();
        RunEvents::new(move |event| {
            let _ = sender.send(Message::Event(Box::new(event)));
        })
    }

    /// A function that shows a line of baton's own, for code that cannot hold the progress.
    pub fn notifier(&self) -> impl Fn(String) + Send + 'static {
        let sender = self.sender.clone();
        move |text| {
            let _ = sender.send(Message::Note(text));
        }
    }

    /// Shows every event sent so far, clears the live block, and stops the renderer.
    pub fn finish(mut self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the live block shows about one running task.
struct TaskView {
    title: String,
    iteration: u32,
    action: String,
    /// Usage of the calls that finished.
    usage: Usage,
    /// Usage the running call has streamed so far.
    call_usage: Usage,
    cost: Cost,
    started: Instant,
}

struct Renderer {
    mode: Mode,
    started: Instant,
    tasks: BTreeMap<TaskId, TaskView>,
    max_iterations: HashMap<TaskId, u32>,
    /// How many lines the live block took when it was last drawn.
    live_lines: usize,
    last_draw: Option<Instant>,
}

/// How often the live block is redrawn, at most.
const FRAME: Duration = Duration::from_millis(120);

impl Renderer {
    fn run(mut self, receiver: &mpsc::Receiver<Message>) {
        loop {
            match receiver.recv_timeout(FRAME) {
                Ok(Message::Event(event)) => self.event(*event),
                Ok(Message::Note(text)) => self.line(&text, None),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.last_draw.is_none_or(|at| at.elapsed() >= FRAME) {
                self.draw();
            }
        }
        // Anything still queued was sent before the stop.
        self.clear();
    }

    fn is_live(&self) -> bool {
        matches!(self.mode, Mode::Live { .. })
    }

    fn event(&mut self, event: RunEvent) {
        match event {
            RunEvent::Recovered {
                swept,
                stopped_agent,
            } => {
                let why = match swept.reason {
                    SweepReason::OwnerGone => "its runner is gone",
                    SweepReason::LeaseExpired => "its lease expired",
                    SweepReason::Unowned => "nobody held it",
                };
                let stopped = if stopped_agent {
                    "; stopped the agent it left running"
                } else {
                    ""
                };
                self.line(
                    &format!(
                        "recovered: abandoned session {} of task {} ({why}){stopped}",
                        swept.id, swept.task
                    ),
                    Some(Style::Warn),
                );
            }
            RunEvent::TaskStarted { task, title } => {
                self.line(&format!("task {task} started: {title}"), Some(Style::Bold));
                self.tasks.insert(
                    task,
                    TaskView {
                        title,
                        iteration: 0,
                        action: String::from("starting"),
                        usage: Usage::ZERO,
                        call_usage: Usage::ZERO,
                        cost: Cost::ZERO,
                        started: Instant::now(),
                    },
                );
            }
            RunEvent::SessionOpened {
                task,
                session,
                policy,
                reopened,
            } => {
                let verb = if reopened { "reopened" } else { "opened" };
                self.line(
                    &format!("task {task}: {verb} session {session} ({policy} policy)"),
                    None,
                );
            }
            RunEvent::CallStarted {
                task,
                session,
                iteration,
                plan,
            } => {
                if let Some(view) = self.tasks.get_mut(&task) {
                    view.iteration = iteration;
                    view.call_usage = Usage::ZERO;
                    view.action = String::from("calling the agent");
                }
                if !self.is_live() {
                    self.line(
                        &format!(
                            "task {task} iteration {iteration}: agent call ({plan} {session})"
                        ),
                        None,
                    );
                }
            }
            RunEvent::Agent { task, event, .. } => self.agent_event(task, event),
            RunEvent::CallFinished {
                task,
                iteration,
                outcome,
                usage,
                cost_usd,
                turns,
                duration,
                ..
            } => {
                let cost = Cost::from_usd(cost_usd);
                if let Some(view) = self.tasks.get_mut(&task) {
                    view.usage += usage;
                    view.call_usage = Usage::ZERO;
                    view.cost += cost;
                    view.action = String::from("verifying");
                }
                let style = (!outcome.is_success()).then_some(Style::Bad);
                self.line(
                    &format!(
                        "task {task} iteration {iteration}: agent call {outcome}: {turns} {}, {} in / {} out, {}, {}",
                        if turns == 1 { "turn" } else { "turns" },
                        human::tokens(usage.prompt_tokens()),
                        human::tokens(usage.output_tokens),
                        human::dollars(cost),
                        human::duration(duration)
                    ),
                    style,
                );
            }
            RunEvent::CheckStarted { task, command, .. } => {
                if let Some(view) = self.tasks.get_mut(&task) {
                    view.action = format!("checking {}", human::truncate(&command, 50));
                }
            }
            RunEvent::CheckFinished {
                task,
                iteration,
                command,
                passed,
                duration,
            } => {
                let (word, style) = if passed {
                    ("passed", Style::Good)
                } else {
                    ("failed", Style::Bad)
                };
                self.line(
                    &format!(
                        "task {task} iteration {iteration}: check {word}: {} ({})",
                        human::truncate(&command, 80),
                        human::duration(duration)
                    ),
                    Some(style),
                );
            }
            RunEvent::Decision {
                task,
                iteration,
                decision,
            } => {
                if let Some(view) = self.tasks.get_mut(&task) {
                    view.action = human::truncate(&decision, 60);
                }
                self.line(
                    &format!("task {task} iteration {iteration}: {decision}"),
                    None,
                );
            }
            RunEvent::SessionClosed {
                task,
                session,
                status,
                reason,
            } => {
                let reason = if reason.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", reason.trim())
                };
                self.line(
                    &format!("task {task}: closed session {session} as {status}{reason}"),
                    None,
                );
            }
            RunEvent::TaskFinished {
                task,
                status,
                reason,
            } => {
                self.tasks.remove(&task);
                let style = match status {
                    TaskStatus::Completed => Style::Good,
                    TaskStatus::Failed => Style::Bad,
                    _ => Style::Warn,
                };
                let text = match (status, reason) {
                    (TaskStatus::Pending, _) => {
                        format!("task {task} stopped: it is pending and resumes on the next run")
                    }
                    (_, Some(reason)) if !reason.trim().is_empty() => {
                        format!("task {task} {status}: {}", reason.trim())
                    }
                    _ => format!("task {task} {status}"),
                };
                self.line(&text, Some(style));
            }
        }
    }

    fn agent_event(&mut self, task: TaskId, event: AgentEvent) {
        let live = self.is_live();
        let Some(view) = self.tasks.get_mut(&task) else {
            return;
        };
        match event {
            AgentEvent::ToolUse { name, summary } => {
                view.action = format!("{name} {summary}");
                if !live {
                    let text = format!("task {task}: {}", human::truncate(&view.action, 100));
                    self.line(&text, None);
                }
            }
            AgentEvent::Text { text } => {
                view.action = format!("says: {}", human::truncate(&text, 60));
            }
            AgentEvent::Usage { usage } => view.call_usage += usage,
            AgentEvent::Spawned { .. }
            | AgentEvent::Init { .. }
            | AgentEvent::ToolResult { .. } => {}
        }
    }

    /// Writes a line of the log, above the live block.
    fn line(&mut self, text: &str, style: Option<Style>) {
        match self.mode {
            Mode::Lines { to_stderr } => {
                let text = format!("[{}] {text}\n", human::clock(self.started.elapsed()));
                write_to(to_stderr, &text);
            }
            Mode::Live { color, .. } => {
                self.clear();
                let text = match style {
                    Some(style) if color => style.paint(text),
                    _ => text.to_owned(),
                };
                write_to(false, &format!("{text}\n"));
            }
        }
    }

    /// Redraws the live block.
    fn draw(&mut self) {
        let Mode::Live { color, width } = self.mode else {
            return;
        };
        self.clear();
        let spinner = SPINNER[(self.started.elapsed().as_millis() / 100) as usize % SPINNER.len()];
        let mut block = String::new();
        for (id, view) in &self.tasks {
            let usage = view.usage + view.call_usage;
            let budget = self
                .max_iterations
                .get(id)
                .map_or_else(String::new, |max| format!("/{max}"));
            let line = format!(
                "{spinner} task {id}  {}  iter {}{budget}  {}  {} in / {} out  {}  {}",
                human::truncate(&view.title, 28),
                view.iteration.max(1),
                human::truncate(&view.action, 40),
                human::tokens(usage.prompt_tokens()),
                human::tokens(usage.output_tokens),
                human::dollars(view.cost),
                human::clock(view.started.elapsed()),
            );
            let line = human::truncate(&line, width.saturating_sub(1).max(20));
            let line = if color { Style::Dim.paint(&line) } else { line };
            block.push_str(&line);
            block.push('\n');
        }
        self.live_lines = self.tasks.len();
        write_to(false, &block);
        self.last_draw = Some(Instant::now());
    }

    /// Erases the live block, leaving the cursor where it began.
    fn clear(&mut self) {
        if self.live_lines > 0 {
            write_to(false, &format!("\x1b[{}F\x1b[J", self.live_lines));
            self.live_lines = 0;
        }
    }
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

#[derive(Debug, Clone, Copy)]
enum Style {
    Good,
    Bad,
    Warn,
    Bold,
    Dim,
}

impl Style {
    fn paint(self, text: &str) -> String {
        let code = match self {
            Style::Good => "32",
            Style::Bad => "31",
            Style::Warn => "33",
            Style::Bold => "1",
            Style::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// Writes through [`output`], which redacts: the lines quote agents, checks and errors.
fn write_to(stderr: bool, text: &str) {
    if stderr {
        output::note(text);
    } else {
        output::print(text);
    }
}
