//! Writing to the terminal: results on stdout, notes on stderr, and whether either is a
//! terminal.
//!
//! Everything written here passes through the process's [`Redactor`] first (see
//! [`redact_with`]): what baton prints quotes agents, checks and errors, any of which may
//! hold a key. This module is the only writer to stdout and stderr, which makes it the one
//! place to hold the redactor; it is process-wide state because output is.
//!
//! A closed pipe (`baton task list | head -1`) is not an error worth reporting: output that
//! cannot be written is dropped.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{PoisonError, RwLock};

use serde_json::Value;
use session_store::Redactor;

/// What is taken out of everything written; `None` until [`redact_with`] is called, when
/// only the token shapes are.
static REDACTOR: RwLock<Option<Redactor>> = RwLock::new(None);

/// Takes the secrets `redactor` knows out of everything written from now on. Called once the
/// environment is read, and again once the configuration adds its secrets.
pub fn redact_with(redactor: Redactor) {
    *REDACTOR.write().unwrap_or_else(PoisonError::into_inner) = Some(redactor);
}

/// Runs `f` with the output's redactor: the one set with [`redact_with`], else one that knows
/// only the token shapes.
fn with_redactor<R>(f: impl FnOnce(&Redactor) -> R) -> R {
    match &*REDACTOR.read().unwrap_or_else(PoisonError::into_inner) {
        Some(redactor) => f(redactor),
        None => f(&Redactor::new()),
    }
}

/// `text` without the secrets the output's redactor knows.
pub fn redact(text: &str) -> Cow<'_, str> {
    with_redactor(|redactor| redactor.redact(text))
}

/// Writes `text` to stdout, redacted.
pub fn print(text: &str) {
    write_stdout(&redact(text));
}

/// Writes `text` to stdout as it is: for text already redacted.
fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes a JSON value to stdout, pretty-printed, with a final newline. Its strings are
/// redacted before it is written, so that it stays JSON.
pub fn print_json(value: &Value) {
    let mut value = value.clone();
    with_redactor(|redactor| redactor.redact_json(&mut value));
    let text = serde_json::to_string_pretty(&value)
        .expect("invariant: a serde_json::Value always serialises");
    write_stdout(&format!("{text}\n"));
}

/// Writes `text` to stderr, redacted.
pub fn note(text: &str) {
    let text = redact(text);
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Shows clap's message for a command line it did not accept (or its help or version), as
/// clap would, but redacted: its errors quote the arguments. Returns the exit code clap uses.
pub fn clap_message(error: &clap::Error, no_color: bool) -> ExitCode {
    let to_stderr = error.use_stderr();
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let styled = error.render();
    let text = if terminal && !no_color {
        styled.ansi().to_string()
    } else {
        styled.to_string()
    };
    if to_stderr {
        note(&text)
    } else {
        print(&text)
    }
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// The terminal's width in columns, when stdout is a terminal that says.
pub fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes a `winsize` into the pointed-to struct, which is valid for
    // writes of its size; on failure it writes nothing and returns -1.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let status = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (status == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}
