//! What a person sees while `baton run` works: a log of what happened, one line per event,
//! and on a terminal a live view under it with a line per running task — its iteration, the
//! agent's latest action, the tokens and cost so far, and the time it has taken — and a total.
//!
//! The orchestrator reports [`RunEvent`]s on its own tasks; they are sent over a channel to a
//! renderer thread, which owns the output, so that reporting never waits on the terminal.
//! What an event says is decided by the pure functions of [`text`]; [`live`] draws the view.

mod live;
mod text;

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Instant;

use orchestrator::{RunEvent, RunEvents};
use session_store::TaskId;

use crate::human;
use crate::output::Ui;
use live::{FRAME, Live};
use text::{Board, LogLine, Tone};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A terminal `width` columns wide: log lines above a live view.
    Live { width: usize },
    /// Plain lines, each prefixed with the time since the run started, for logs and pipes.
    Lines { to_stderr: bool },
}

/// A running renderer. Dropping it (or [`Progress::finish`]) shows what was sent, takes the
/// live view off the screen and stops the renderer.
pub struct Progress {
    sender: mpsc::Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

enum Message {
    Event(Box<RunEvent>),
    Note(String),
    Stop,
}

impl Mode {
    /// The live view on a terminal; plain lines elsewhere, on stderr when stdout carries JSON.
    pub fn for_output(ui: &Ui, json: bool) -> Mode {
        if json {
            Mode::Lines { to_stderr: true }
        } else if ui.stdout_is_terminal() {
            Mode::Live {
                width: ui.width().unwrap_or(100),
            }
        } else {
            Mode::Lines { to_stderr: false }
        }
    }
}

impl Progress {
    /// Starts rendering a run of the tasks `budgets` names, with each one's iteration budget.
    pub fn start(ui: &Ui, mode: Mode, budgets: HashMap<TaskId, u32>) -> Progress {
        let (sender, receiver) = mpsc::channel();
        let output = match mode {
            Mode::Live { width } => Output::Live(Live::new(ui.clone(), width)),
            Mode::Lines { to_stderr } => Output::Lines { to_stderr },
        };
        let renderer = Renderer {
            ui: ui.clone(),
            started: Instant::now(),
            board: Board::new(budgets),
            output,
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

    /// Shows every event sent so far, takes the live view off the screen, and stops.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the renderer writes.
enum Output {
    Lines { to_stderr: bool },
    Live(Live),
}

struct Renderer {
    ui: Ui,
    started: Instant,
    board: Board,
    output: Output,
}

impl Renderer {
    fn run(mut self, receiver: &mpsc::Receiver<Message>) {
        let mut last_draw: Option<Instant> = None;
        loop {
            match receiver.recv_timeout(FRAME) {
                Ok(Message::Event(event)) => self.event(&event),
                Ok(Message::Note(text)) => self.log(&LogLine {
                    text,
                    tone: Tone::Plain,
                }),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if last_draw.is_none_or(|at| at.elapsed() >= FRAME) {
                self.draw();
                last_draw = Some(Instant::now());
            }
        }
        // Everything queued before the stop has been shown.
        if let Output::Live(live) = self.output {
            live.clear();
        }
    }

    fn event(&mut self, event: &RunEvent) {
        let live = matches!(self.output, Output::Live(_));
        if let Some(line) = text::log_line(event, live) {
            self.log(&line);
        }
        self.board.apply(event, Instant::now());
        // A task's line comes and goes with the task, not a frame later.
        if matches!(
            event,
            RunEvent::TaskStarted { .. } | RunEvent::TaskFinished { .. }
        ) {
            self.draw();
        }
    }

    /// Writes a line of the log: above the live view, or as a plain line with the time.
    fn log(&self, line: &LogLine) {
        match &self.output {
            Output::Live(live) => live.log(&line.text, line.tone),
            Output::Lines { to_stderr } => {
                let clock = human::clock(self.started.elapsed());
                let text = format!("[{clock}] {}\n", line.text);
                if *to_stderr {
                    self.ui.note(&text);
                } else {
                    self.ui.print(&text);
                }
            }
        }
    }

    fn draw(&mut self) {
        if let Output::Live(live) = &mut self.output {
            live.show(&self.board, self.started, Instant::now());
        }
    }
}
