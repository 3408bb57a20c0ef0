//! The terminal, as a handle: [`Ui`] writes results to stdout and notes to stderr, knows
//! whether each is a terminal and whether it gets colour, and redacts everything it writes.
//!
//! Commands are handed a `&Ui` (as jj's commands are); nothing else writes to stdout or
//! stderr. What baton prints quotes agents, checks and errors, any of which may hold a key, so
//! the handle holds the [`Redactor`]: the environment's secrets from the start, and the
//! configuration's once it is read ([`Ui::set_redactor`]).
//!
//! Colour is decided once, per stream, from `NO_COLOR`, `CLICOLOR_FORCE` (read with the rest of
//! the environment, in the settings) and whether the stream is a terminal. A stream
//! without colour gets no escape sequences at all: ones that come with the text (an agent's
//! answer, a check's output) are stripped before the text is redacted, so that stripping
//! cannot join the pieces of a secret the redactor would have found.
//!
//! A closed pipe (`baton task list | head -1`) is not an error worth reporting: output that
//! cannot be written is dropped.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anstream::ColorChoice;
use anstyle::Style;
use redact::Redactor;
use serde::Serialize;

use crate::error::CliError;

/// The handle to the terminal. Cheap to clone: the progress thread and the signal handler
/// hold copies.
#[derive(Debug, Clone)]
pub struct Ui {
    redactor: Redactor,
    stdout: Stream,
    stderr: Stream,
}

/// What the environment says about colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColorEnv {
    /// `NO_COLOR` is set: no colour, whatever else says.
    pub no_color: bool,
    /// `CLICOLOR_FORCE` is set: colour even when the stream is not a terminal.
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stream {
    terminal: bool,
    color: ColorChoice,
}

impl Ui {
    /// A handle on the process's stdout and stderr.
    pub fn new(redactor: Redactor, colors: ColorEnv) -> Ui {
        Ui::with_terminals(
            redactor,
            colors,
            std::io::stdout().is_terminal(),
            std::io::stderr().is_terminal(),
        )
    }

    /// A handle for streams whose terminal-ness is known.
    fn with_terminals(
        redactor: Redactor,
        colors: ColorEnv,
        stdout_terminal: bool,
        stderr_terminal: bool,
    ) -> Ui {
        let stream = |terminal| Stream {
            terminal,
            color: color_choice(colors, terminal),
        };
        Ui {
            redactor,
            stdout: stream(stdout_terminal),
            stderr: stream(stderr_terminal),
        }
    }

    /// Takes the secrets `redactor` knows out of everything written from now on: called once
    /// the configuration adds its secrets to the environment's.
    pub fn set_redactor(&mut self, redactor: Redactor) {
        self.redactor = redactor;
    }

    /// `text` as it is written to stdout: without escape sequences unless stdout gets colour,
    /// and redacted.
    pub fn printable(&self, text: &str) -> String {
        prepare(&self.redactor, self.stdout.color, text)
    }

    /// Writes `text` to stdout.
    pub fn print(&self, text: &str) {
        write_all(&mut std::io::stdout().lock(), &self.printable(text));
    }

    /// Writes `text` to stderr.
    pub fn note(&self, text: &str) {
        let text = prepare(&self.redactor, self.stderr.color, text);
        write_all(&mut std::io::stderr().lock(), &text);
    }

    /// Writes `value` to stdout as pretty-printed JSON with a final newline: the one way a
    /// command prints its `--json` output. Its strings are redacted before it is written, so
    /// that it stays JSON.
    pub fn json(&self, value: &impl Serialize) -> Result<(), CliError> {
        let failed = |error: serde_json::Error| {
            CliError::internal("could not write the JSON output").with_source(error)
        };
        let mut value = serde_json::to_value(value).map_err(failed)?;
        self.redactor.redact_json(&mut value);
        let text = serde_json::to_string_pretty(&value).map_err(failed)?;
        write_all(&mut std::io::stdout().lock(), &format!("{text}\n"));
        Ok(())
    }

    /// Writes the error a command ended with to stderr.
    pub fn error(&self, error: &CliError) {
        self.note(&error.render());
    }

    /// Shows clap's message for a command line it did not accept (or its help or version), as
    /// clap would, but redacted: its errors quote the arguments. Returns the exit code clap uses.
    pub fn clap_message(&self, error: &clap::Error) -> ExitCode {
        let to_stderr = error.use_stderr();
        let stream = if to_stderr { self.stderr } else { self.stdout };
        let styled = error.render();
        let text = if stream.color == ColorChoice::Always {
            styled.ansi().to_string()
        } else {
            styled.to_string()
        };
        if to_stderr {
            self.note(&text);
        } else {
            self.print(&text);
        }
        ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
    }

    pub fn stdout_is_terminal(&self) -> bool {
        self.stdout.terminal
    }

    /// `text` in `style` when stdout gets colour, else as it is.
    pub fn paint(&self, style: Style, text: &str) -> String {
        paint(self.stdout.color, style, text)
    }

    /// The width of the terminal stdout is, in columns.
    pub fn width(&self) -> Option<usize> {
        if !self.stdout.terminal {
            return None;
        }
        terminal_size::terminal_size_of(std::io::stdout())
            .map(|(terminal_size::Width(columns), _)| usize::from(columns))
            .filter(|columns| *columns > 0)
    }
}

/// Whether a stream gets colour: never with `NO_COLOR`, always with `CLICOLOR_FORCE`, else when
/// it is a terminal.
fn color_choice(colors: ColorEnv, terminal: bool) -> ColorChoice {
    if !colors.no_color && (colors.force || terminal) {
        ColorChoice::Always
    } else {
        ColorChoice::Never
    }
}

fn paint(color: ColorChoice, style: Style, text: &str) -> String {
    if color == ColorChoice::Always {
        format!("{style}{text}{style:#}")
    } else {
        text.to_owned()
    }
}

/// `text` ready for a stream: stripped of escape sequences when it gets no colour, then
/// redacted (in that order: see the module's comment).
fn prepare(redactor: &Redactor, color: ColorChoice, text: &str) -> String {
    let redacted = if color == ColorChoice::Never && text.contains('\x1b') {
        redactor.redact_owned(anstream::adapter::strip_str(text).to_string())
    } else {
        redactor.redact(text)
    };
    redacted.into_string()
}

fn write_all(stream: &mut impl Write, text: &str) {
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_no_color_then_clicolor_force_then_the_terminal() {
        let cases = [
            // (NO_COLOR, CLICOLOR_FORCE, terminal) → colour
            ((false, false, true), ColorChoice::Always),
            ((false, false, false), ColorChoice::Never),
            ((false, true, false), ColorChoice::Always),
            ((true, false, true), ColorChoice::Never),
            ((true, true, true), ColorChoice::Never),
        ];
        for ((no_color, force, terminal), expected) in cases {
            let colors = ColorEnv { no_color, force };
            assert_eq!(
                color_choice(colors, terminal),
                expected,
                "NO_COLOR={no_color} CLICOLOR_FORCE={force} terminal={terminal}"
            );
        }
    }

    #[test]
    fn a_stream_without_colour_gets_no_escapes_and_they_cannot_hide_a_secret() {
        let redactor = Redactor::from_vars([("ANTHROPIC_API_KEY", "FAKE-key-0123456789")]);
        let plain = Ui::with_terminals(redactor.clone(), ColorEnv::default(), false, false);
        assert_eq!(plain.printable("\x1b[31mred\x1b[0m"), "red");
        // Split by an escape, the key is only whole once the escape is gone.
        assert_eq!(
            plain.printable("key: FAKE-key-\x1b[0m0123456789"),
            "key: [redacted ANTHROPIC_API_KEY]"
        );
        assert_eq!(plain.paint(Style::new().bold(), "x"), "x");
        let colored = Ui::with_terminals(redactor, ColorEnv::default(), true, false);
        assert_eq!(
            colored.printable("\x1b[31mred\x1b[0m"),
            "\x1b[31mred\x1b[0m"
        );
        assert_eq!(colored.paint(Style::new().bold(), "x"), "\x1b[1mx\x1b[0m");
    }
}
