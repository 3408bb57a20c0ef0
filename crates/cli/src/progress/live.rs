//! The live view on a terminal, drawn by indicatif: a line per running task with a spinner,
//! and a total line, under the log lines that scroll above them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use session_store::TaskId;

use super::text::{Board, Tone};
use crate::output::Ui;

/// The view, drawn on stdout.
pub struct Live {
    ui: Ui,
    /// The terminal's width in columns, as last seen.
    width: usize,
    multi: MultiProgress,
    /// The last line: the run as a whole.
    total: ProgressBar,
    /// A line per running task, above the total.
    tasks: HashMap<TaskId, ProgressBar>,
}

/// The spinner's frames; the last one is never shown, since a finished task's line goes.
const SPINNER: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ";

impl Live {
    pub fn new(ui: Ui, width: usize) -> Live {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let total = multi.add(ProgressBar::new_spinner().with_style(template("{msg}")));
        Live {
            ui,
            width,
            multi,
            total,
            tasks: HashMap::new(),
        }
    }

    /// Writes a line of the log above the view.
    pub fn log(&self, text: &str, tone: Tone) {
        let text = self.ui.paint(style(tone), &self.ui.printable(text));
        // A terminal that cannot be written to has nobody reading it.
        let _ = self.multi.println(text);
    }

    /// Brings the view up to date with `board` at `now`, the run having started at `started`.
    pub fn show(&mut self, board: &Board, started: Instant, now: Instant) {
        self.tasks.retain(|id, bar| {
            let running = board.tasks.contains_key(id);
            if !running {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            running
        });
        // The terminal may have been resized since the last frame.
        self.width = self.ui.width().unwrap_or(self.width);
        // Room for the spinner and the space after it, and a column spare so that no line
        // reaches the terminal's edge and wraps.
        let width = self.width.saturating_sub(3).max(20);
        for id in board.tasks.keys() {
            let bar = self.tasks.entry(*id).or_insert_with(|| {
                let bar = ProgressBar::new_spinner().with_style(template("{spinner} {msg}"));
                self.multi.insert_before(&self.total, bar)
            });
            if let Some(line) = board.task_line(*id, now, width) {
                bar.set_message(
                    self.ui
                        .paint(Style::new().dimmed(), &self.ui.printable(&line)),
                );
            }
            bar.tick();
        }
        let elapsed = now.saturating_duration_since(started);
        let line = board.total_line(elapsed, self.width.saturating_sub(1).max(20));
        self.total.set_message(self.ui.printable(&line));
        self.total.tick();
    }

    /// Takes the view off the screen, leaving the log.
    pub fn clear(self) {
        for bar in self.tasks.values() {
            bar.finish_and_clear();
        }
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// How often the view is redrawn, at most, and so how fast the spinners turn.
pub const FRAME: Duration = Duration::from_millis(100);

fn template(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_chars(SPINNER)
}

fn style(tone: Tone) -> Style {
    let color = |color: AnsiColor| Style::new().fg_color(Some(color.into()));
    match tone {
        Tone::Plain => Style::new(),
        Tone::Good => color(AnsiColor::Green),
        Tone::Bad => color(AnsiColor::Red),
        Tone::Warn => color(AnsiColor::Yellow),
        Tone::Bold => Style::new().bold(),
    }
}
