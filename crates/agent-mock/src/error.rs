//! Errors of this crate: reading scenarios and running `mock-claude`.

use std::path::PathBuf;

/// A scenario that could not be read, parsed or counted.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("failed to read the scenario file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the scenario file `{}` is not a valid scenario", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("failed to write the scenario file `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to update the call counter `{}` (delete it to start counting again)", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "`{word}` is not an outcome: expected one of success, max_turns, api_error, rate_limit, execution_error, budget_exceeded, crash, garbage, non_utf8, hang, no_result"
    )]
    UnknownOutcome { word: String },

    #[error("the environment variable {name} holds `{value}`, which it cannot use")]
    BadEnv { name: &'static str, value: String },
}

/// Why `mock-claude` could not play its scenario (as opposed to the CLI errors it imitates).
#[derive(Debug, thiserror::Error)]
pub enum MockClaudeError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),

    #[error("neither CLAUDE_CONFIG_DIR nor HOME is set, so there is nowhere to keep transcripts")]
    NoHome,

    #[error("failed to find the current working directory")]
    WorkingDir(#[source] std::io::Error),

    #[error("failed to read the prompt from stdin")]
    Stdin(#[source] std::io::Error),

    #[error("failed to write the transcript `{}`", path.display())]
    Transcript {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to write the file `{}` the scenario asks for", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to append to the call log `{}`", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to write to stdout")]
    Stdout(#[source] std::io::Error),
}
