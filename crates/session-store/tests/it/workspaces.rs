//! Task workspaces and check processes: recorded whole, read back, redacted reasons.

use session_store::{Missing, StoreError, TaskId, TaskWorkspace};

use crate::common::{add_task, temp_store};

on_both_backends! {
    fn a_workspace_reads_back_as_it_was_recorded() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "first");
        assert_eq!(store.task_workspace(task).unwrap(), None);

        let mut workspace = TaskWorkspace {
            isolation: Some(String::from("worktree")),
            isolation_reason: Some(String::from("inside the repository at /r")),
            repository: Some(String::from("/r")),
            subdirectory: Some(String::from("sub/dir")),
            worktree_path: Some(String::from("/r/.baton/worktrees/1")),
            branch: Some(String::from("baton/1-first")),
            base_revision: Some(String::from("main~1")),
            base_commit: Some("a".repeat(40)),
            base_branch: Some(String::from("main")),
            ..TaskWorkspace::default()
        };
        store.set_task_workspace(task, &workspace).unwrap();
        assert_eq!(store.task_workspace(task).unwrap(), Some(workspace.clone()));

        workspace.head_commit = Some("b".repeat(40));
        workspace.files_changed = Some(3);
        workspace.insertions = Some(10);
        workspace.deletions = Some(2);
        workspace.delivery = Some(String::from("conflict"));
        workspace.delivery_reason = Some(String::from("conflicting files: a.txt"));
        workspace.remote_url = Some(String::from("https://example.com/org/repo.git"));
        workspace.host = Some(String::from("host-b"));
        store
            .batch("finish", |batch| batch.set_task_workspace(task, &workspace))
            .unwrap();
        assert_eq!(store.task_workspace(task).unwrap(), Some(workspace.clone()));
        assert_eq!(store.task_workspaces().unwrap(), vec![(task, workspace)]);
    }

    fn a_workspace_of_a_missing_task_is_refused() {
        let (_directory, mut store) = temp_store();
        let missing = TaskId(42);
        let err = store
            .set_task_workspace(missing, &TaskWorkspace::default())
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(id)) if id == missing),
            "{err:?}"
        );
    }

    fn check_processes_are_recorded_with_their_start_time_and_forgotten() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "checked");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        store
            .record_check_process(task, child.id(), &redact::Redacted::trusted("sleep 30"))
            .unwrap();
        let recorded = store.check_processes().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].task, task);
        assert_eq!(recorded[0].pid, child.id());
        assert_eq!(recorded[0].command, "sleep 30");
        assert!(recorded[0].start_time > 0);
        assert!(recorded[0].is_running_here());

        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!recorded[0].is_running_here());
        store.clear_check_process(task, child.id()).unwrap();
        assert_eq!(store.check_processes().unwrap(), vec![]);
        // Forgetting again changes nothing.
        store.clear_check_process(task, child.id()).unwrap();
    }
}
