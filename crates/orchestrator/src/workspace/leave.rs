//! Leaving a task's workspace: on completion, commit what the agent left on the task's branch
//! (with its `Baton-Task` and `Baton-Session` trailers), record the head and the diff stat,
//! and deliver; in every case unlock the worktree. Nothing is ever removed here: a failed,
//! blocked or cancelled task keeps its worktree, and a retry continues there.

use std::sync::Arc;

use agent::SessionId;
use session_store::{SessionFilter, TaskWorkspace};

use super::enter::{Entered, blocking};
use super::{CommitText, DeliverMode, Workspaces};
use crate::context::RunContext;
use session_store::Task;

/// Commits the completed task's work and delivers it. `Err` is a reason to block the task
/// with (the commit failed: a full disk, a lock, the agent switched branches); the work stays
/// in the worktree.
pub(crate) async fn complete(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    entered: &Entered,
    task: &Task,
    current: Option<SessionId>,
) -> Result<TaskWorkspace, String> {
    let sessions = task_sessions(context, task, current).await?;
    let mut trailers = vec![(String::from("Baton-Task"), task.id.to_string())];
    trailers.extend(
        sessions
            .iter()
            .map(|id| (String::from("Baton-Session"), id.to_string())),
    );
    let message = CommitText {
        title: task.title.clone(),
        trailers,
    };
    let (repository, path) = (entered.repository.clone(), entered.path.clone());
    let (branch, base) = (entered.branch.clone(), entered.base_commit.clone());
    let committed = blocking(workspaces, move |w| {
        w.commit(&repository, &path, &branch, &message, &base)
    })
    .await
    .map_err(|error| {
        format!(
            "{}; the work is still in {}",
            error.message,
            entered.path.display()
        )
    })?;
    let mut record = entered.record.clone();
    record.head_commit = Some(committed.head);
    record.files_changed = Some(committed.files_changed);
    record.insertions = Some(committed.insertions);
    record.deletions = Some(committed.deletions);
    record.delivery = Some(String::from("branch"));
    record.delivery_reason = None;
    match context.config.deliver {
        DeliverMode::Branch => {}
        DeliverMode::Merge => deliver(workspaces, entered, task, &mut record).await,
        DeliverMode::Push => push(workspaces, entered, &mut record).await,
    }
    Ok(record)
}

/// Pushes the branch to the task's remote (see [`Entered::remote`]); a refusal or a failure
/// is recorded with git's words, and the branch and its worktree stay: the task is
/// completed, its delivery not.
async fn push(workspaces: &Arc<dyn Workspaces>, entered: &Entered, record: &mut TaskWorkspace) {
    let (repository, branch, remote) = (
        entered.repository.clone(),
        entered.branch.clone(),
        entered.remote.clone(),
    );
    match blocking(workspaces, move |w| w.push(&repository, &branch, &remote)).await {
        Ok(delivered) => {
            record.delivery = Some(delivered.state.to_owned());
            record.delivery_reason = delivered.reason;
        }
        Err(error) => {
            record.delivery = Some(String::from("skipped"));
            record.delivery_reason = Some(error.message);
        }
    }
}

/// What the run says about a push's outcome, as a decision of the task: nothing under the
/// other deliveries, whose output stays as it was.
pub(crate) fn push_announcement(
    context: &RunContext,
    entered: &Entered,
    record: &TaskWorkspace,
) -> Option<String> {
    if context.config.deliver != DeliverMode::Push {
        return None;
    }
    let branch = record.branch.as_deref().unwrap_or_default();
    let remote = &entered.remote;
    Some(
        match (record.delivery.as_deref(), &record.delivery_reason) {
            (Some("pushed"), _) => format!("delivered: pushed {branch} to {remote}"),
            (state, reason) => format!(
                "not delivered ({}): {}",
                state.unwrap_or("skipped"),
                reason.as_deref().unwrap_or("the push did not happen")
            ),
        },
    )
}

/// Merges the branch into its base branch in the main worktree; what stops it is recorded,
/// and the branch stays the result.
async fn deliver(
    workspaces: &Arc<dyn Workspaces>,
    entered: &Entered,
    task: &Task,
    record: &mut TaskWorkspace,
) {
    let Some(base_branch) = entered.base_branch.clone() else {
        record.delivery = Some(String::from("skipped"));
        record.delivery_reason = Some(String::from(
            "the task started from a detached HEAD: there is no base branch to merge into",
        ));
        return;
    };
    let (repository, branch) = (entered.repository.clone(), entered.branch.clone());
    let message = format!("Merge task {}: {}", task.id, task.title);
    let delivered = blocking(workspaces, move |w| {
        w.deliver(&repository, &branch, &base_branch, &message)
    })
    .await;
    match delivered {
        Ok(delivered) => {
            record.delivery = Some(delivered.state.to_owned());
            record.delivery_reason = delivered.reason;
        }
        Err(error) => {
            record.delivery = Some(String::from("skipped"));
            record.delivery_reason = Some(error.message);
        }
    }
}

/// Unlocks the worktree: the task no longer runs in it. A failure is only reported: the
/// next run of the task replaces the lock.
pub(crate) async fn release(
    workspaces: &Arc<dyn Workspaces>,
    entered: &Entered,
) -> Result<(), String> {
    let (repository, path) = (entered.repository.clone(), entered.path.clone());
    blocking(workspaces, move |w| w.unlock(&repository, &path))
        .await
        .map_err(|error| error.message)
}

/// Every session of the task, oldest first, with the one it holds now.
async fn task_sessions(
    context: &RunContext,
    task: &Task,
    current: Option<SessionId>,
) -> Result<Vec<SessionId>, String> {
    let id = task.id;
    let mut sessions: Vec<SessionId> = context
        .ledger(move |store| {
            store.sessions(&SessionFilter {
                task: Some(id),
                ..SessionFilter::default()
            })
        })
        .await
        .map_err(|error| error.to_string())?
        .into_iter()
        .map(|session| session.id)
        .collect();
    if let Some(current) = current
        && !sessions.contains(&current)
    {
        sessions.push(current);
    }
    Ok(sessions)
}
