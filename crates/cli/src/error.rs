//! The one error type at the edge: what went wrong, which exit code it means, and what to do.
//!
//! Commands return [`Result`]: a [`CliError`] carries its [`Kind`], decided where the error's
//! type is known — by the CLI when it raises one itself, and by the `From` impls below for the
//! libraries' errors ([`StoreError`], [`AgentError`], [`OrchestratorError`], I/O errors). Nothing
//! looks inside an error chain at run time: [`exit_code`] is one exhaustive match.

use std::error::Error as StdError;
use std::fmt;

use agent::AgentError;
use orchestrator::OrchestratorError;
use session_store::{Missing, StoreError};

/// What a command returns.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

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
    /// A bad flag, configuration key or value, or a state change that is not allowed.
    Usage,
    /// A task, milestone, session, file or the workspace does not exist.
    NotFound,
    /// The workspace or its ledger could not be read or written.
    Ledger,
    /// The agent cannot be run.
    AgentUnavailable,
    /// Baton itself failed: a bug, or a system error no other kind covers.
    Internal,
}

/// An error a command ends with: a message that says what went wrong and to what, the kind
/// that decides the exit code, optionally what to do about it, and the cause.
#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
    pub source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

/// The exit code a command's end means: the one place codes are decided.
pub fn exit_code(ended: &Result<Outcome>) -> u8 {
    match ended {
        Ok(Outcome::Success) => 0,
        Ok(Outcome::TasksNotCompleted) => 1,
        Ok(Outcome::Interrupted(signal)) => signal.code(),
        Err(error) => match error.kind {
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Ledger => 4,
            Kind::AgentUnavailable => 5,
            Kind::Internal => 6,
        },
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

    pub fn internal(message: impl Into<String>) -> CliError {
        CliError::new(Kind::Internal, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps `source` as the cause, shown after the message.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> CliError {
        self.source = Some(Box::new(source));
        self
    }

    /// Says what was being done: `message` leads, and this error becomes its cause. The kind
    /// and the hint stay, since they are about what failed.
    pub fn context(mut self, message: impl Into<String>) -> CliError {
        let hint = self.hint.take();
        CliError {
            kind: self.kind,
            message: message.into(),
            hint,
            source: Some(Box::new(self)),
        }
    }

    /// This error and its causes, outermost first.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        let first: &(dyn StdError + 'static) = self;
        std::iter::successors(Some(first), |error| (*error).source())
    }

    /// The error for a person: the message, each cause that adds something, and the hint.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n", self.message);
        let mut previous = self.message.clone();
        for cause in self.chain().skip(1) {
            let text = cause.to_string();
            // Library messages often repeat their source's text; say each thing once.
            if !previous.contains(&text) {
                out.push_str(&format!("  caused by: {text}\n"));
            }
            previous = text;
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("  hint: {hint}\n"));
        }
        out
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for CliError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// [`CliError::context`] for any result whose error becomes a [`CliError`], made only when
/// there is an error, as `anyhow::Context::with_context` does.
pub trait ErrorContext<T> {
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: Into<CliError>> ErrorContext<T> for std::result::Result<T, E> {
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|error| error.into().context(message()))
    }
}

/// The message is the library's; the source is the error itself, whose own text
/// [`CliError::render`] does not repeat.
fn from_library(
    kind: Kind,
    hint: Option<&str>,
    error: impl StdError + Send + Sync + 'static,
) -> CliError {
    CliError {
        kind,
        message: error.to_string(),
        hint: hint.map(str::to_owned),
        source: Some(Box::new(error)),
    }
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> CliError {
        let (kind, hint) = store_kind(&error);
        from_library(kind, hint, error)
    }
}

/// What a ledger error means for the person who hit it, and what to do about it when the
/// store's message does not already say.
fn store_kind(error: &StoreError) -> (Kind, Option<&'static str>) {
    const BUSY: &str = "another baton process may be running in this workspace; let it finish, or run `baton recover` if it is gone";
    const DISK: &str = "the disk that holds the ledger may be full or failing: free some space (`df -h` shows it) and run the command again; the ledger was left as it was";
    const READ_ONLY: &str = "the ledger is read-only for you: check the permissions of the file and of the .baton/ directory that holds it (baton needs to write both)";
    const SERVER: &str = "check that the PostgreSQL server runs and is reachable from this host, and the URL's host, port, database and user (a password comes from PGPASSWORD or ~/.pgpass); `baton doctor` checks the ledger";
    const OPEN: &str = "check that the file is readable and writable and on a local disk; `baton doctor` checks the ledger";
    match error {
        StoreError::NotFound(missing) => (
            Kind::NotFound,
            Some(match missing {
                Missing::Task(_) => "`baton task list` shows the tasks in this ledger",
                Missing::Milestone(_) | Missing::MilestoneNamed(_) => {
                    "`baton milestone list` shows the milestones; `baton milestone add NAME` creates one"
                }
                Missing::Session(_) => "`baton session list` shows the sessions in this ledger",
                Missing::Runner(_) => {
                    "each `baton run` registers itself as a runner; start the run again"
                }
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
        StoreError::Busy { .. } | StoreError::LeaseHeld { .. } | StoreError::ClaimTaken { .. } => {
            (Kind::Ledger, Some(BUSY))
        }
        _ if error.is_disk_trouble() => (Kind::Ledger, Some(DISK)),
        _ if error.is_read_only() => (Kind::Ledger, Some(READ_ONLY)),
        // TLS's messages say what failed and what to do.
        _ if error.is_tls_failure() => (Kind::Ledger, None),
        _ if error.is_connection_lost() || error.is_from_postgres() => {
            (Kind::Ledger, Some(postgres_hint(error).unwrap_or(SERVER)))
        }
        StoreError::CreateDirectory { .. }
        | StoreError::CreateFile { .. }
        | StoreError::Open { .. }
        | StoreError::Database { .. }
        | StoreError::Migrate { .. } => (Kind::Ledger, Some(OPEN)),
        // These messages already say what to do.
        _ => (Kind::Ledger, None),
    }
}

/// What to do about a PostgreSQL server's refusal, by its SQL state, where the state says
/// more than "check the server and the URL".
fn postgres_hint(error: &StoreError) -> Option<&'static str> {
    Some(match error.postgres_state()? {
        // invalid_password, invalid_authorization_specification
        "28P01" | "28000" => {
            "the PostgreSQL server refused the login: check the URL's user, and the password in PGPASSWORD, ~/.pgpass or the URL; `baton doctor` checks the ledger"
        }
        // invalid_catalog_name
        "3D000" => {
            "the URL names a database the PostgreSQL server does not have: create it (`createdb`), or fix the URL's database name"
        }
        // insufficient_privilege
        "42501" => {
            "the URL's user may not create or change the ledger's tables: the database's owner can allow it with `GRANT CREATE ON SCHEMA public TO <user>` (see \"Running on several hosts\" in docs/user-guide.md)"
        }
        _ => return None,
    })
}

impl From<AgentError> for CliError {
    fn from(error: AgentError) -> CliError {
        let hint = match error {
            AgentError::CannotSpawn { .. } => {
                "install Claude Code, or point BATON_CLAUDE_BIN or `agent.claude_bin` in .baton/config.toml at it; `baton doctor` checks it"
            }
            _ => "`baton doctor` checks the agent; `claude --version` should print its version",
        };
        from_library(Kind::AgentUnavailable, Some(hint), error)
    }
}

impl From<OrchestratorError> for CliError {
    fn from(error: OrchestratorError) -> CliError {
        let message = error.to_string();
        match error {
            OrchestratorError::Store(store) => CliError::from(store).context(message),
            // The settings were validated when they were read: one the run refuses is a bug.
            config @ OrchestratorError::Config { .. } => from_library(Kind::Internal, None, config),
        }
    }
}

/// An I/O error with nothing to say what it was about. Code that knows which file or stream
/// failed builds its own [`CliError`] with the path and keeps this as the source.
impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> CliError {
        from_library(Kind::Internal, None, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_store::TaskId;

    const ALL_KINDS: [Kind; 5] = [
        Kind::Usage,
        Kind::NotFound,
        Kind::Ledger,
        Kind::AgentUnavailable,
        Kind::Internal,
    ];

    fn code_of(kind: Kind) -> u8 {
        exit_code(&Err(CliError::new(kind, "x")))
    }

    #[test]
    fn every_exit_code_is_documented_in_help_and_in_the_guide() {
        let codes: Vec<u8> = ALL_KINDS.map(code_of).to_vec();
        assert_eq!(codes, [2, 3, 4, 5, 6]);
        let outcomes = [
            Outcome::Success,
            Outcome::TasksNotCompleted,
            Outcome::Interrupted(Signal::Interrupt),
            Outcome::Interrupted(Signal::Terminate),
            Outcome::Interrupted(Signal::Hangup),
        ];
        let outcome_codes: Vec<u8> = outcomes.map(|outcome| exit_code(&Ok(outcome))).to_vec();
        assert_eq!(outcome_codes, [0, 1, 130, 143, 129]);
        let guide = include_str!("../../../docs/user-guide.md");
        for code in codes.into_iter().chain(outcome_codes) {
            assert!(
                crate::flags::EXIT_CODES_HELP.contains(&format!("\n  {code} ")),
                "exit code {code} is not documented in --help"
            );
            assert!(
                guide.contains(&format!("\n| {code} | ")),
                "exit code {code} is not documented in docs/user-guide.md"
            );
        }
    }

    #[test]
    fn a_store_error_decides_its_kind_and_hint_and_keeps_them_under_context() {
        let error = CliError::from(StoreError::NotFound(Missing::Task(TaskId(7))))
            .context("could not show the task");
        assert_eq!(error.kind, Kind::NotFound);
        assert_eq!(
            error.render(),
            "error: could not show the task\n  caused by: task 7 does not exist in the ledger\n  hint: `baton task list` shows the tasks in this ledger\n"
        );
    }

    #[test]
    fn an_orchestrator_error_reads_as_before_and_takes_the_ledgers_kind() {
        let error = CliError::from(OrchestratorError::Store(StoreError::NotFound(
            Missing::Task(TaskId(7)),
        )));
        assert_eq!(error.kind, Kind::NotFound);
        assert_eq!(
            error.render(),
            "error: the ledger failed\n  caused by: task 7 does not exist in the ledger\n  hint: `baton task list` shows the tasks in this ledger\n"
        );
        let config = CliError::from(OrchestratorError::Config {
            field: "concurrency",
            reason: String::from("must be at least 1"),
        });
        assert_eq!(code_of(config.kind), 6);
    }

    #[test]
    fn a_cli_error_carries_its_own_hint() {
        let error = CliError::usage("bad").with_hint("do this");
        assert_eq!(error.render(), "error: bad\n  hint: do this\n");
        assert_eq!(exit_code(&Err(error)), 2);
        let io = CliError::from(std::io::Error::other("disk on fire"));
        assert_eq!(
            (io.kind, io.render()),
            (Kind::Internal, String::from("error: disk on fire\n"))
        );
    }
}
