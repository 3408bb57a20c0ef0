//! Writing to the terminal: results on stdout, notes on stderr, and whether either is a
//! terminal.
//!
//! A closed pipe (`baton task list | head -1`) is not an error worth reporting: output that
//! cannot be written is dropped.

use std::io::{IsTerminal, Write};

use serde_json::Value;

/// Writes `text` to stdout as it is.
pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes a JSON value to stdout, pretty-printed, with a final newline.
pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value)
        .expect("invariant: a serde_json::Value always serialises");
    print(&format!("{text}\n"));
}

/// Writes `text` to stderr as it is.
pub fn note(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
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
