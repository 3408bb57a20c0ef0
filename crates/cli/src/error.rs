//! The one error type at the edge: what went wrong, which exit code it means, and what to do.
//!
//! Commands return `anyhow::Result`. Errors the CLI raises itself are [`CliError`]s with a
//! [`Kind`]; errors from the libraries keep their own types. [`classify`] walks an error's
//! chain and maps the first error it recognises to a kind, and so to an exit code, with a hint
//! when the library's message does not already say what to do.

use std::fmt;
use std::process::ExitCode;

use agent::AgentError;
use session_store::{Missing, StoreError};

/// How a command ended when it did not fail: the exit codes that are not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done.
    Success,
    /// A run ended with tasks that did not complete.
    TasksNotCompleted,
    /// A run was stopped by a signal; its tasks resume on the next run.
    Interrupted(Signal),
}

/// The signals that stop a run gracefully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    /// The terminal closed.
    Hangup,
}

/// The kinds of failure, each with its documented exit code (see `flags::EXIT_CODES_HELP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A failure no other kind covers.
    Other,
    /// A bad flag, configuration key or value, or a state change that is not allowed.
    Usage,
    /// A task, milestone, session, file or the workspace does not exist.
    NotFound,
    /// The workspace or its ledger could not be read or written.
    Ledger,
    /// The agent cannot be run.
    AgentUnavailable,
}

/// An error the CLI raises itself: a message that says what went wrong and to what, and
/// optionally what to do about it.
#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Success => 0,
            Outcome::TasksNotCompleted => 1,
            Outcome::Interrupted(signal) => signal.code(),
        })
    }
}

impl Signal {
    /// 128 plus the signal's number, as shells report a process killed by it.
    pub const fn code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
            Signal::Hangup => 129,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }
}

impl Kind {
    pub const fn code(self) -> u8 {
        match self {
            Kind::Other => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Ledger => 4,
            Kind::AgentUnavailable => 5,
        }
    }
}

impl CliError {
    pub fn new(kind: Kind, message: impl Into<String>) -> CliError {
        CliError {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(Kind::Usage, message)
    }

    pub fn not_found(message: impl Into<String>) -> CliError {
        CliError::new(Kind::NotFound, message)
    }

    pub fn ledger(message: impl Into<String>) -> CliError {
        CliError::new(Kind::Ledger, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps `source` as the cause, shown after the message.
    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> CliError {
        self.source = Some(Box::new(source));
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// What an error means for the person who hit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub kind: Kind,
    pub hint: Option<String>,
}

/// Finds the kind and hint of an error: the first error in its chain that says.
pub fn classify(error: &anyhow::Error) -> Classified {
    for cause in error.chain() {
        if let Some(cli) = cause.downcast_ref::<CliError>() {
            return Classified {
                kind: cli.kind,
                hint: cli.hint.clone(),
            };
        }
        if let Some(store) = cause.downcast_ref::<StoreError>() {
            return classify_store(store);
        }
        if let Some(agent) = cause.downcast_ref::<AgentError>() {
            return classify_agent(agent);
        }
    }
    Classified {
        kind: Kind::Other,
        hint: None,
    }
}

fn classify_store(error: &StoreError) -> Classified {
    let (kind, hint) = match error {
        StoreError::NotFound(missing) => (
            Kind::NotFound,
            Some(match missing {
                Missing::Task(_) => "`baton task list` shows the tasks in this ledger",
                Missing::Milestone(_) | Missing::MilestoneNamed(_) => {
                    "`baton milestone list` shows the milestones; `baton milestone add NAME` creates one"
                }
                Missing::Session(_) => "`baton session list` shows the sessions in this ledger",
            }),
        ),
        StoreError::InvalidTransition { .. } => (
            Kind::Usage,
            Some("`baton task show ID` shows the task's state and why it got there"),
        ),
        StoreError::DependenciesUnmet { .. }
        | StoreError::DependencyCycle { .. }
        | StoreError::MilestoneExists { .. }
        | StoreError::MilestoneMismatch { .. }
        | StoreError::Invalid { .. } => (Kind::Usage, None),
        StoreError::Busy { .. } | StoreError::LeaseHeld { .. } => (
            Kind::Ledger,
            Some(
                "another baton process may be running in this workspace; let it finish, or run `baton recover` if it is gone",
            ),
        ),
        _ if error.is_disk_trouble() => (
            Kind::Ledger,
            Some(
                "the disk that holds the ledger may be full or failing: free some space (`df -h` shows it) and run the command again; the ledger was left as it was",
            ),
        ),
        _ if error.is_read_only() => (
            Kind::Ledger,
            Some(
                "the ledger is read-only for you: check the permissions of the file and of the .baton/ directory that holds it (baton needs to write both)",
            ),
        ),
        StoreError::CreateDirectory { .. }
        | StoreError::CreateFile { .. }
        | StoreError::Open { .. }
        | StoreError::Database { .. }
        | StoreError::Migrate { .. } => (
            Kind::Ledger,
            Some(
                "check that the file is readable and writable and on a local disk; `baton doctor` checks the ledger",
            ),
        ),
        // These messages already say what to do.
        _ => (Kind::Ledger, None),
    };
    Classified {
        kind,
        hint: hint.map(str::to_owned),
    }
}

fn classify_agent(error: &AgentError) -> Classified {
    match error {
        AgentError::CannotSpawn { .. } => Classified {
            kind: Kind::AgentUnavailable,
            hint: Some(String::from(
                "install Claude Code, or point BATON_CLAUDE_BIN or `agent.claude_bin` in .baton/config.toml at it; `baton doctor` checks it",
            )),
        },
        _ => Classified {
            kind: Kind::AgentUnavailable,
            hint: Some(String::from(
                "`baton doctor` checks the agent; `claude --version` should print its version",
            )),
        },
    }
}

/// Writes an error for a person: the message, each cause that adds something, and the hint.
pub fn render(error: &anyhow::Error) -> String {
    let classified = classify(error);
    let mut out = format!("error: {error}\n");
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        // Library messages often repeat their source's text; say each thing once.
        if !previous.contains(&text) {
            out.push_str(&format!("  caused by: {text}\n"));
        }
        previous = text;
    }
    if let Some(hint) = classified.hint {
        out.push_str(&format!("  hint: {hint}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_store::TaskId;

    #[test]
    fn kinds_map_to_the_documented_codes() {
        let codes: Vec<u8> = [
            Kind::Other,
            Kind::Usage,
            Kind::NotFound,
            Kind::Ledger,
            Kind::AgentUnavailable,
        ]
        .map(Kind::code)
        .to_vec();
        assert_eq!(codes, [1, 2, 3, 4, 5]);
        for code in [0u8, 1, 2, 3, 4, 5, 130, 143] {
            assert!(
                crate::flags::EXIT_CODES_HELP.contains(&format!("\n  {code} ")),
                "exit code {code} is not documented in --help"
            );
        }
    }

    #[test]
    fn the_first_recognised_error_in_the_chain_decides() {
        let error = anyhow::Error::new(StoreError::NotFound(Missing::Task(TaskId(7))))
            .context("could not show the task");
        let classified = classify(&error);
        assert_eq!(classified.kind, Kind::NotFound);
        assert!(classified.hint.unwrap().contains("baton task list"));
        let text = render(&error);
        assert_eq!(
            text,
            "error: could not show the task\n  caused by: task 7 does not exist in the ledger\n  hint: `baton task list` shows the tasks in this ledger\n"
        );
        let plain = anyhow::anyhow!("something odd");
        assert_eq!(classify(&plain).kind, Kind::Other);
    }

    #[test]
    fn a_cli_error_carries_its_own_hint() {
        let error = anyhow::Error::new(CliError::usage("bad").with_hint("do this"));
        assert_eq!(render(&error), "error: bad\n  hint: do this\n");
        assert_eq!(classify(&error).kind.code(), 2);
    }
}
