//! How the CLI reaches git: the one driver built from the environment the CLI captured, and
//! the orchestrator's worktrees over it.

use std::sync::Arc;

use orchestrator::{GitWorkspaces, Workspaces};

use crate::keys::Isolation;
use crate::settings::Env;

/// The git driver commands use: it inherits the environment `Env::capture` read, less the
/// `GIT_*` variables that could redirect it; HOME and XDG_CONFIG_HOME pass through, so that
/// the person's identity signs the commits.
pub fn git(env: &Env) -> git::Git {
    git::Git::new().with_inherited(env.vars.iter().cloned())
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
