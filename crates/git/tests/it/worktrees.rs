//! Worktrees at fixed paths: created, reused, repaired, locked, listed and removed.

use std::fs;
use std::path::{Path, PathBuf};

use git::{GitError, Preparation, Removal, Repository};

use crate::common::{Fixture, read, write};

const BRANCH: &str = "baton/1-task";

fn task_path(fixture: &Fixture) -> PathBuf {
    fixture.repo.join(".baton/worktrees/1")
}

/// Prepares the task's worktree under the lock.
fn prepare(fixture: &Fixture, repository: &Repository) -> Result<git::PreparedWorktree, GitError> {
    let base = repository.resolve_commit("HEAD").unwrap();
    let lock = repository.lock_worktrees().unwrap();
    repository.prepare_worktree(&lock, &task_path(fixture), BRANCH, &base)
}

#[test]
fn a_new_worktree_gets_a_new_branch_at_the_base() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let base = fixture.head(&fixture.repo);
    let prepared = prepare(&fixture, &repository).unwrap();
    assert_eq!(prepared.preparation, Preparation::Created);
    assert_eq!(prepared.path, task_path(&fixture));
    assert_eq!(prepared.head, base);
    assert_eq!(repository.branch_head(BRANCH).unwrap(), Some(base));
    assert_eq!(read(&prepared.path.join("README.md")), "hello\n");
    assert_eq!(
        repository
            .current_branch(&prepared.path)
            .unwrap()
            .as_deref(),
        Some(BRANCH)
    );
    assert_eq!(
        prepare(&fixture, &repository).unwrap().preparation,
        Preparation::Reused
    );
}

#[test]
fn a_worktree_deleted_by_hand_is_repaired_at_the_same_path_from_its_branch() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = prepare(&fixture, &repository).unwrap();
    let work = fixture.commit_file(&prepared.path, "work.txt", "committed work\n");
    repository
        .lock_worktree(&prepared.path, "task 1 is running")
        .unwrap();
    fs::remove_dir_all(&prepared.path).unwrap();

    let repaired = prepare(&fixture, &repository).unwrap();
    assert_eq!(
        repaired.preparation,
        Preparation::Restored { repaired: true }
    );
    assert_eq!(repaired.path, prepared.path);
    assert_eq!(repaired.head, work, "the branch was not moved");
    assert_eq!(read(&repaired.path.join("work.txt")), "committed work\n");
    let listed = repository.find_worktree(&repaired.path).unwrap().unwrap();
    assert_eq!(
        listed.locked, None,
        "the stale lock went with the registration"
    );
}

#[test]
fn a_removed_worktree_is_restored_from_its_branch() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = prepare(&fixture, &repository).unwrap();
    let work = fixture.commit_file(&prepared.path, "work.txt", "work");
    let lock = repository.lock_worktrees().unwrap();
    assert_eq!(
        repository
            .remove_worktree(&lock, &prepared.path, false)
            .unwrap(),
        Removal::Removed
    );
    drop(lock);
    assert!(!prepared.path.exists());
    let restored = prepare(&fixture, &repository).unwrap();
    assert_eq!(
        restored.preparation,
        Preparation::Restored { repaired: false }
    );
    assert_eq!(restored.head, work);
}

#[test]
fn a_task_in_a_subdirectory_finds_it_in_its_worktree() {
    let fixture = Fixture::new();
    fixture.write("crates/app/main.rs", "fn main() {}\n");
    fixture.raw(&fixture.repo, &["add", "-A"]);
    fixture.raw(&fixture.repo, &["commit", "--quiet", "-m", "app"]);
    let repository = Repository::open(&fixture.git, &fixture.repo.join("crates/app")).unwrap();
    let prepared = prepare(&fixture, &repository).unwrap();
    let working_dir = prepared.path.join(repository.subdirectory());
    assert_eq!(read(&working_dir.join("main.rs")), "fn main() {}\n");
}

#[test]
fn a_path_holding_other_files_is_refused_and_left_alone() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    write(&task_path(&fixture), "precious.txt", "mine");
    let error = prepare(&fixture, &repository).unwrap_err();
    assert!(matches!(error, GitError::PathOccupied { .. }), "{error}");
    assert_eq!(read(&task_path(&fixture).join("precious.txt")), "mine");
    assert_eq!(
        repository.branch_head(BRANCH).unwrap(),
        None,
        "no branch was left behind"
    );

    // An empty directory is fine.
    fs::remove_file(task_path(&fixture).join("precious.txt")).unwrap();
    assert_eq!(
        prepare(&fixture, &repository).unwrap().preparation,
        Preparation::Created
    );
}

#[test]
fn a_branch_checked_out_elsewhere_or_a_worktree_on_another_branch_is_refused() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let elsewhere = fixture.root.join("elsewhere");
    fixture.raw(
        &fixture.repo,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            BRANCH,
            elsewhere.to_str().unwrap(),
        ],
    );
    let error = prepare(&fixture, &repository).unwrap_err();
    assert!(
        matches!(error, GitError::BranchCheckedOut { ref path, .. } if *path == elsewhere),
        "{error}"
    );

    let other = task_path(&fixture);
    fixture.raw(
        &fixture.repo,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            "other",
            other.to_str().unwrap(),
        ],
    );
    let error = prepare(&fixture, &repository).unwrap_err();
    assert!(matches!(error, GitError::WrongBranch { .. }), "{error}");
}

#[test]
fn the_list_shows_branches_locks_and_prunable_worktrees() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = prepare(&fixture, &repository).unwrap();
    assert_eq!(
        repository
            .lock_worktree(&prepared.path, "task 1\npid 42")
            .unwrap(),
        None
    );
    let worktrees = repository.worktrees().unwrap();
    assert_eq!(worktrees.len(), 2);
    assert_eq!(worktrees[0].path, fixture.repo);
    assert_eq!(worktrees[0].branch.as_deref(), Some("main"));
    assert_eq!(worktrees[1].branch.as_deref(), Some(BRANCH));
    assert_eq!(worktrees[1].locked.as_deref(), Some("task 1\npid 42"));
    assert_eq!(worktrees[1].head, Some(prepared.head.clone()));

    // A second lock replaces the first and says what it was.
    let previous = repository
        .lock_worktree(&prepared.path, "task 1 again")
        .unwrap();
    assert_eq!(previous.as_deref(), Some("task 1\npid 42"));
    assert!(repository.unlock_worktree(&prepared.path).unwrap());
    assert!(!repository.unlock_worktree(&prepared.path).unwrap());

    fs::remove_dir_all(&prepared.path).unwrap();
    let gone = repository.find_worktree(&prepared.path).unwrap().unwrap();
    assert!(gone.prunable.is_some(), "{gone:?}");
    let lock = repository.lock_worktrees().unwrap();
    repository.prune_worktrees(&lock).unwrap();
    assert_eq!(repository.find_worktree(&prepared.path).unwrap(), None);
}

#[test]
fn removal_refuses_uncommitted_work_and_force_removes_it() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = prepare(&fixture, &repository).unwrap();
    let committed = fixture.commit_file(&prepared.path, "kept.txt", "on the branch");
    write(&prepared.path, "README.md", "edited\n");
    write(&prepared.path, "new/untracked.txt", "new");
    let lock = repository.lock_worktrees().unwrap();

    let error = repository
        .remove_worktree(&lock, &prepared.path, false)
        .unwrap_err();
    let GitError::UncommittedChanges { files, .. } = &error else {
        panic!("expected uncommitted changes, got {error}");
    };
    assert_eq!(
        files,
        &[
            PathBuf::from("README.md"),
            PathBuf::from("new/untracked.txt")
        ]
    );
    assert!(
        error.to_string().contains("README.md, new/untracked.txt"),
        "{error}"
    );
    assert_eq!(
        read(&prepared.path.join("README.md")),
        "edited\n",
        "nothing was touched"
    );

    assert_eq!(
        repository
            .remove_worktree(&lock, &prepared.path, true)
            .unwrap(),
        Removal::Removed
    );
    assert!(!prepared.path.exists());
    assert_eq!(
        repository.branch_head(BRANCH).unwrap(),
        Some(committed),
        "the branch stays"
    );
}

#[test]
fn removal_takes_ignored_files_along_and_refuses_a_lock_without_force() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = prepare(&fixture, &repository).unwrap();
    fixture.commit_file(&prepared.path, ".gitignore", "target/\n");
    write(&prepared.path, "target/big.o", "build output");
    repository
        .lock_worktree(&prepared.path, "task 1 is running")
        .unwrap();
    let lock = repository.lock_worktrees().unwrap();
    let error = repository
        .remove_worktree(&lock, &prepared.path, false)
        .unwrap_err();
    assert!(
        matches!(error, GitError::WorktreeLocked { ref reason, .. } if reason == "task 1 is running"),
        "{error}"
    );
    repository.unlock_worktree(&prepared.path).unwrap();
    assert_eq!(
        repository
            .remove_worktree(&lock, &prepared.path, false)
            .unwrap(),
        Removal::Removed
    );
    assert!(!prepared.path.exists());
}

#[test]
fn removal_refuses_a_detached_head_no_branch_contains() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = prepare(&fixture, &repository).unwrap();
    fixture.raw(&prepared.path, &["checkout", "--quiet", "--detach"]);
    let orphan = fixture.commit_file(&prepared.path, "orphan.txt", "only here");
    let lock = repository.lock_worktrees().unwrap();
    let error = repository
        .remove_worktree(&lock, &prepared.path, false)
        .unwrap_err();
    assert!(
        matches!(error, GitError::UnreachableHead { ref head, .. } if *head == orphan.to_string()),
        "{error}"
    );
    assert!(prepared.path.exists());
}

#[test]
fn removal_never_touches_what_is_not_a_worktree() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let lock = repository.lock_worktrees().unwrap();
    let stranger = fixture.root.join("stranger");
    write(&stranger, "file.txt", "not git's");
    let error = repository
        .remove_worktree(&lock, &stranger, true)
        .unwrap_err();
    assert!(matches!(error, GitError::NotAWorktree { .. }), "{error}");
    assert_eq!(read(&stranger.join("file.txt")), "not git's");
    let error = repository
        .remove_worktree(&lock, &fixture.repo, true)
        .unwrap_err();
    assert!(matches!(error, GitError::NotAWorktree { .. }), "{error}");
    assert!(fixture.repo.join("README.md").exists());
    assert_eq!(
        repository
            .remove_worktree(&lock, Path::new(".baton/worktrees/9"), false)
            .unwrap(),
        Removal::Absent
    );
}

#[test]
fn removing_a_worktree_deleted_by_hand_prunes_it() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = prepare(&fixture, &repository).unwrap();
    repository.lock_worktree(&prepared.path, "task 1").unwrap();
    fs::remove_dir_all(&prepared.path).unwrap();
    let lock = repository.lock_worktrees().unwrap();
    assert_eq!(
        repository
            .remove_worktree(&lock, &prepared.path, false)
            .unwrap(),
        Removal::Pruned
    );
    assert_eq!(repository.find_worktree(&prepared.path).unwrap(), None);
}
