//! A git command line as it ran, kept for messages: what an error shows so that a person
//! can run it again.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// A git command as it ran, for messages: `git -C DIR ARGS…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: PathBuf,
    pub dir: PathBuf,
    pub args: Vec<String>,
}

impl CommandLine {
    pub(crate) fn new(program: &Path, dir: &Path, args: &[OsString]) -> CommandLine {
        CommandLine {
            program: program.to_owned(),
            dir: dir.to_owned(),
            args: args
                .iter()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect(),
        }
    }
}

impl fmt::Display for CommandLine {
    /// `git -C DIR ARGS…`, each word quoted when it needs to be, so that it can be run again.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = self.program.to_string_lossy();
        let dir = self.dir.to_string_lossy();
        write!(formatter, "{} -C {}", quoted(&program), quoted(&dir))?;
        for arg in &self.args {
            write!(formatter, " {}", quoted(arg))?;
        }
        Ok(())
    }
}

/// A word as a POSIX shell would need it, for display only: nothing here ever runs a shell.
fn quoted(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:@,+%^".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let line = CommandLine::new(
            Path::new("git"),
            Path::new("/tmp/my repo"),
            &[
                OsString::from("commit"),
                OsString::from("-m"),
                OsString::from("it's done"),
            ],
        );
        assert_eq!(
            line.to_string(),
            r"git -C '/tmp/my repo' commit -m 'it'\''s done'"
        );
    }
}
