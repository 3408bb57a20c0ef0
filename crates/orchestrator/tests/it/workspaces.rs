//! The loop against a fake `Workspaces`: what it asks of git, in what order, and what a
//! failure of git does to the task. No git runs here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agent_mock::{MockAgent, Step};
use orchestrator::workspace::{
    CommitText, Committed, Delivered, Located, Merged, Preparation, Prepared, WorkspaceError,
    Workspaces,
};
use session_store::TaskStatus;

use crate::support::Fixture;

/// In-memory workspaces: the task's directory is a repository with a commit, the worktree is
/// the task's directory itself, and each operation is logged; `commit` fails as told.
#[derive(Default)]
struct FakeWorkspaces {
    calls: Mutex<Vec<String>>,
    /// Failures `commit` answers with, first to last, before it succeeds.
    commit_failures: Mutex<Vec<WorkspaceError>>,
    prepare_fails: bool,
}

impl FakeWorkspaces {
    fn log(&self, call: impl Into<String>) {
        self.calls.lock().unwrap().push(call.into());
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Workspaces for FakeWorkspaces {
    fn locate(&self, dir: &Path) -> Result<Option<Located>, WorkspaceError> {
        self.log("locate");
        Ok(Some(Located {
            repository: dir.to_owned(),
            subdirectory: PathBuf::new(),
            head: Some("a".repeat(40)),
            head_branch: Some(String::from("main")),
        }))
    }

    fn resolve(&self, _: &Path, revision: &str) -> Result<String, WorkspaceError> {
        Ok(revision.to_owned())
    }

    fn branch_head(&self, _: &Path, _: &str) -> Result<Option<String>, WorkspaceError> {
        Ok(None)
    }

    fn free_branch(&self, _: &Path, wanted: &str) -> Result<String, WorkspaceError> {
        Ok(wanted.to_owned())
    }

    fn prepare(
        &self,
        repository: &Path,
        path: &Path,
        branch: &str,
        base: &str,
    ) -> Result<Prepared, WorkspaceError> {
        self.log(format!("prepare {branch}"));
        if self.prepare_fails {
            return Err(WorkspaceError::new(
                "failed to prepare the worktree: no room",
            ));
        }
        assert!(path.starts_with(repository.join(".baton/worktrees")));
        std::fs::create_dir_all(path).unwrap();
        Ok(Prepared {
            path: path.to_owned(),
            head: base.to_owned(),
            preparation: Preparation::Created,
        })
    }

    fn lock(&self, _: &Path, _: &Path, reason: &str) -> Result<(), WorkspaceError> {
        assert!(reason.starts_with("baton task "), "{reason}");
        self.log("lock");
        Ok(())
    }

    fn unlock(&self, _: &Path, _: &Path) -> Result<(), WorkspaceError> {
        self.log("unlock");
        Ok(())
    }

    fn merge(&self, _: &Path, _: &Path, _: &[String], _: &str) -> Result<Merged, WorkspaceError> {
        Ok(Merged::Clean)
    }

    fn commit(
        &self,
        _: &Path,
        _: &Path,
        _: &str,
        message: &CommitText,
        _: &str,
    ) -> Result<Committed, WorkspaceError> {
        self.log(format!("commit {}", message.trailers.len()));
        if let Some(failure) = self.commit_failures.lock().unwrap().pop() {
            return Err(failure);
        }
        Ok(Committed {
            head: "b".repeat(40),
            files_changed: 1,
            insertions: 2,
            deletions: 3,
        })
    }

    fn deliver(&self, _: &Path, _: &str, _: &str, _: &str) -> Result<Delivered, WorkspaceError> {
        unreachable!("delivery is `branch` in these tests")
    }
}

async fn run_with(fixture: &Fixture, agent: &MockAgent, workspaces: Arc<FakeWorkspaces>) {
    let orchestrator = fixture
        .orchestrator(Arc::new(agent.clone()), crate::support::quick_config())
        .with_workspaces(workspaces);
    crate::support::bounded(orchestrator.run(
        &orchestrator::Selection::all(),
        agent::CancellationToken::new(),
    ))
    .await
    .unwrap();
}

on_both_backends! {
    #[tokio::test]
    async fn a_completed_task_is_committed_with_its_trailers_then_unlocked() {
        let mut fixture = Fixture::new();
        let task = fixture.task("done", &[]);
        let workspaces = Arc::new(FakeWorkspaces::default());
        run_with(&fixture, &MockAgent::new(), Arc::clone(&workspaces)).await;
        assert_eq!(fixture.get(task).status, TaskStatus::Completed);
        // One Baton-Task trailer and one Baton-Session trailer.
        assert_eq!(
            workspaces.calls(),
            [
                "locate",
                &format!("prepare baton/{task}-done"),
                "lock",
                "commit 2",
                "unlock"
            ]
        );
        let workspace = fixture
            .ledger(|store| store.task_workspace(task))
            .unwrap()
            .unwrap();
        assert_eq!(workspace.head_commit, Some("b".repeat(40)));
        assert_eq!(
            (
                workspace.files_changed,
                workspace.insertions,
                workspace.deletions
            ),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(workspace.delivery.as_deref(), Some("branch"));
    }

    #[tokio::test]
    async fn a_failed_commit_blocks_the_task_with_gits_message_and_unlocks() {
        let mut fixture = Fixture::new();
        let task = fixture.task("unlucky", &[]);
        let workspaces = Arc::new(FakeWorkspaces::default());
        workspaces
            .commit_failures
            .lock()
            .unwrap()
            .push(WorkspaceError::new(
                "failed to commit: No space left on device",
            ));
        run_with(&fixture, &MockAgent::new(), Arc::clone(&workspaces)).await;
        let task = fixture.get(task);
        assert_eq!(task.status, TaskStatus::Blocked);
        let reason = task.failure_reason.unwrap();
        assert!(reason.contains("No space left on device"), "{reason}");
        assert!(reason.contains("the work is still in"), "{reason}");
        assert_eq!(
            workspaces.calls().last().map(String::as_str),
            Some("unlock")
        );
    }

    #[tokio::test]
    async fn a_worktree_that_cannot_be_prepared_blocks_the_task_before_any_call() {
        let mut fixture = Fixture::new();
        let task = fixture.task("nowhere", &[]);
        let workspaces = Arc::new(FakeWorkspaces {
            prepare_fails: true,
            ..FakeWorkspaces::default()
        });
        let agent = MockAgent::with_steps([Step::succeed("never")]);
        run_with(&fixture, &agent, Arc::clone(&workspaces)).await;
        let task = fixture.get(task);
        assert_eq!(task.status, TaskStatus::Blocked);
        assert!(task.failure_reason.unwrap().contains("no room"));
        assert!(agent.calls().is_empty());
        fixture.assert_no_open_session();
    }
}
