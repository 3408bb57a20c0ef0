//! Before a run under `deliver = "push"`: every repository the selected tasks will work in
//! must have the remote their branches go to. A missing one is found here, before any agent
//! starts, and not at the first completion, after an hour of the agent's work.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use git::Repository;
use session_store::{Store, Task};

use crate::commands::worktree::git_failed;
use crate::error::{CliError, Result};
use crate::keys;
use crate::settings::Context;

/// Refuses the run (exit 2) when a selected task will work in a git worktree of a repository
/// that lacks `run.remote`; does nothing unless `run.deliver` is `push`. A task that recorded
/// its remote's URL is the run's to check: it pushes to whichever clone's remote has that URL. A task that will
/// run without a worktree (isolation `none`, a directory outside any repository with a
/// commit, or one that no longer exists) is left to the run, which decides as it always did.
pub fn check(store: &Store, tasks: &[Task], context: &Context) -> Result<()> {
    let settings = &context.settings;
    if settings.get(keys::RUN_DELIVER) != keys::Deliver::Push {
        return Ok(());
    }
    let remote = settings.get(keys::RUN_REMOTE);
    let git = crate::workspaces::git(&context.env);
    let run_isolation = settings.get(keys::RUN_ISOLATION);
    let mut checked = BTreeSet::new();
    for task in tasks {
        let recorded = store.task_workspace(task.id)?.unwrap_or_default();
        let isolation_none = match recorded.isolation.as_deref() {
            Some(isolation) => isolation == "none",
            None => run_isolation == Some(keys::Isolation::None),
        };
        let dir = recorded
            .repository
            .map_or_else(|| task.working_dir.clone(), PathBuf::from);
        // A task whose remote's URL was recorded pushes to the remote with that URL in
        // whichever clone of it the run finds or makes, and is blocked with its own message
        // when there is none: the repository at its recorded path says nothing about that.
        if isolation_none || recorded.remote_url.is_some() || !dir.is_dir() {
            continue;
        }
        let Some(repository) = Repository::discover(&git, &dir).map_err(git_failed)? else {
            continue;
        };
        if !repository.has_commits().map_err(git_failed)? {
            continue;
        }
        let top = repository
            .main_worktree()
            .unwrap_or(repository.top_level())
            .to_owned();
        if checked.insert(top.clone())
            && repository
                .remote_url(&remote)
                .map_err(git_failed)?
                .is_none()
        {
            let known = repository.remotes().map_err(git_failed)?;
            return Err(missing(&remote, &top, &known, task, context));
        }
    }
    Ok(())
}

/// What is missing, where, and the three ways on.
fn missing(remote: &str, top: &Path, known: &[String], task: &Task, context: &Context) -> CliError {
    let has = if known.is_empty() {
        String::from("it has no remote")
    } else {
        let names: Vec<String> = known.iter().map(|name| format!("`{name}`")).collect();
        format!("it has {}", names.join(", "))
    };
    let config = context.workspace.as_ref().map_or_else(
        || String::from("the configuration"),
        |workspace| format!("`{}`", workspace.config_path().display()),
    );
    CliError::usage(format!(
        "run.deliver is \"push\", but the repository at `{}`, where task {} works, has no \
         remote `{remote}` to push its branch to ({has}); nothing was run",
        top.display(),
        task.id
    ))
    .with_hint(format!(
        "add the remote (`git -C {} remote add {remote} URL`), or set run.remote in {config} \
         to a remote it has, or set run.deliver to \"branch\" there",
        top.display()
    ))
}
