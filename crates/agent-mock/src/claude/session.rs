//! The session a call is given (`--session-id`, `--resume`, or neither), and the two ways the
//! real CLI refuses one: an id already in use, and an unknown id to resume.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use agent::{PlanKind, SessionId, Usage};
use serde_json::json;

use super::args::{Args, OutputFormat, UsageError};
use super::output;
use crate::error::MockClaudeError;
use crate::transcript::Transcripts;

/// The session a call was given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Assigned {
    pub(crate) session_id: SessionId,
    pub(crate) plan: PlanKind,
    /// Whether the id came from the command line (rather than being made up by the CLI).
    pub(crate) given: bool,
}

/// Why the real CLI would refuse the session of a call that is otherwise well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `--session-id` of a session whose transcript exists in this directory's project.
    InUse,
    /// `--resume` of a session with no transcript anywhere.
    NotFound,
}

/// The session the command line assigns, with the real CLI's error texts for ids it refuses.
pub(crate) fn assign(args: &Args) -> Result<Assigned, UsageError> {
    let session_flag = match &args.session_id {
        Some(text) => Some(text.parse::<SessionId>().map_err(|_| {
            UsageError(String::from(
                "Error: Invalid session ID. Must be a valid UUID.",
            ))
        })?),
        None => None,
    };
    if session_flag.is_some() && args.resume.is_some() {
        return Err(UsageError(String::from(
            "Error: --session-id with --continue or --resume also needs --fork-session.",
        )));
    }
    let resume_flag = match &args.resume {
        Some(text) => Some(text.parse::<SessionId>().map_err(|_| {
            UsageError(format!(
                "Error: --resume requires a valid session ID or session title when used with \
                 --print. Usage: claude -p --resume <session-id|title>. Provided value \
                 \"{text}\" is not a UUID and does not match any session title."
            ))
        })?),
        None => None,
    };
    Ok(match (session_flag, resume_flag) {
        (_, Some(id)) => Assigned {
            session_id: id,
            plan: PlanKind::Resume,
            given: true,
        },
        (Some(id), None) => Assigned {
            session_id: id,
            plan: PlanKind::Start,
            given: true,
        },
        (None, None) => Assigned {
            session_id: SessionId::new_v4(),
            plan: PlanKind::Start,
            given: false,
        },
    })
}

/// Checks the assigned session against the transcripts: for a resume, the transcript it
/// continues.
pub(crate) fn check(
    transcripts: &Transcripts,
    cwd: &Path,
    assigned: &Assigned,
) -> Result<Option<PathBuf>, Refusal> {
    match assigned.plan {
        PlanKind::Resume => match transcripts.find(cwd, assigned.session_id) {
            Some(path) => Ok(Some(path)),
            None => Err(Refusal::NotFound),
        },
        PlanKind::Start => {
            if assigned.given && transcripts.path(cwd, assigned.session_id).exists() {
                Err(Refusal::InUse)
            } else {
                Ok(None)
            }
        }
    }
}

impl Refusal {
    /// Says so as the real CLI does, and gives its exit code.
    pub(crate) fn report(self, args: &Args, session_id: SessionId) -> Result<u8, MockClaudeError> {
        match self {
            Refusal::InUse => eprintln!("Error: Session ID {session_id} is already in use."),
            Refusal::NotFound => not_found(args, session_id)?,
        }
        Ok(1)
    }
}

/// `--resume` of a session with no transcript: the real CLI prints an
/// `error_during_execution` result in stream-json (only), and the error on stderr.
fn not_found(args: &Args, session_id: SessionId) -> Result<(), MockClaudeError> {
    let message = format!("No conversation found with session ID: {session_id}");
    if args.output_format == OutputFormat::StreamJson {
        let errors = [message.clone()];
        let result = output::result(&output::ResultFields {
            subtype: "error_during_execution",
            is_error: true,
            session_id,
            duration_ms: 0,
            duration_api_ms: 0,
            num_turns: 0,
            result: None,
            stop_reason: None,
            terminal_reason: None,
            errors: Some(&errors),
            api_error: None,
            usage: Usage::ZERO,
            total_cost_usd: 0.0,
            model_usage: json!({}),
            model_usage_since_last_result: None,
            permission_denials: &[],
        });
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{result}").map_err(MockClaudeError::Stdout)?;
        stdout.flush().map_err(MockClaudeError::Stdout)?;
    }
    eprintln!("{message}");
    Ok(())
}
