//! How the CLI reaches git: the one driver built from the environment the CLI captured, and
//! the orchestrator's worktrees over it.

use std::sync::Arc;

use orchestrator::{GitWorkspaces, Workspaces};

use crate::keys::Isolation;
use crate::settings::Env;

/// The git driver commands use. `Git` scrubs the `GIT_*` variables that could redirect it;
/// HOME and XDG_CONFIG_HOME pass through, so that the person's identity signs the commits.
pub fn git(_env: &Env) -> git::Git {
    // The driver inherits the process environment (which `Env::capture` read); when it
    // takes the environment from its caller, it is passed from `Env` here.
    git::Git::new()
}

/// The orchestrator's worktrees, over [`git`].
pub fn workspaces(env: &Env) -> Arc<dyn Workspaces> {
    Arc::new(GitWorkspaces::new(git(env)))
}

/// The orchestrator's word for an isolation the configuration or a flag names.
pub fn isolation(isolation: Isolation) -> orchestrator::Isolation {
    match isolation {
        Isolation::Worktree => orchestrator::Isolation::Worktree,
        Isolation::None => orchestrator::Isolation::None,
    }
}
