//! Merging dependencies onto a task's branch, delivering into the base branch, pushing.

use std::fs;
use std::path::{Path, PathBuf};

use git::{Delivery, MergeOutcome, PreparedWorktree, Repository, SkipReason, WorktreeFastForward};

use crate::common::{Fixture, read, write};

fn task_worktree(fixture: &Fixture, repository: &Repository, branch: &str) -> PreparedWorktree {
    let base = repository.resolve_commit("main").unwrap();
    let lock = repository.lock_worktrees().unwrap();
    let path = fixture
        .repo
        .join(".baton/worktrees")
        .join(branch.replace('/', "-"));
    repository
        .prepare_worktree(&lock, &path, branch, &base)
        .unwrap()
}

/// Everything that must not change in a worktree: HEAD, the index file's bytes, every
/// file's contents, and whether a merge is under way.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    head: String,
    index: Vec<u8>,
    files: Vec<(PathBuf, Vec<u8>)>,
    merging: bool,
}

fn snapshot(fixture: &Fixture, worktree: &Path) -> Snapshot {
    let git_dir = PathBuf::from(fixture.raw(worktree, &["rev-parse", "--absolute-git-dir"]));
    let mut files = Vec::new();
    collect_files(worktree, worktree, &mut files);
    files.sort();
    Snapshot {
        head: fixture.raw(worktree, &["rev-parse", "HEAD"]),
        index: fs::read(git_dir.join("index")).unwrap(),
        files,
        merging: git_dir.join("MERGE_HEAD").exists(),
    }
}

fn collect_files(top: &Path, dir: &Path, files: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name == ".git" || name == ".baton" {
            continue;
        }
        if path.is_dir() {
            collect_files(top, &path, files);
        } else {
            let relative = path.strip_prefix(top).unwrap().to_owned();
            files.push((relative, fs::read(&path).unwrap()));
        }
    }
}

fn parents(fixture: &Fixture, commit: &str) -> Vec<String> {
    let line = fixture.raw(
        &fixture.repo,
        &["show", "--no-patch", "--format=%P", commit],
    );
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn dependencies_merge_onto_a_task_branch_as_one_commit() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let first = fixture.branch_with("baton/1-a", "a.txt", "a\n");
    let second = fixture.branch_with("baton/2-b", "b.txt", "b\n");
    let third = fixture.branch_with("baton/3-c", "c.txt", "c\n");
    let prepared = task_worktree(&fixture, &repository, "baton/4-after");

    let outcome = repository
        .merge_branches(
            &prepared.path,
            &["baton/1-a", "baton/2-b", "baton/3-c"],
            "Merge the work of tasks 1, 2 and 3",
        )
        .unwrap();
    let MergeOutcome::Merged { head } = outcome else {
        panic!("expected a merge, got {outcome:?}");
    };
    assert_eq!(fixture.head(&prepared.path), head);
    let expected: Vec<String> = [&prepared.head, &first, &second, &third]
        .iter()
        .map(|commit| commit.to_string())
        .collect();
    assert_eq!(parents(&fixture, head.as_str()), expected);
    for (file, contents) in [("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")] {
        assert_eq!(read(&prepared.path.join(file)), contents);
    }
    assert_eq!(fixture.raw(&prepared.path, &["status", "--porcelain"]), "");
    let subject = fixture.raw(&prepared.path, &["log", "-1", "--format=%s"]);
    assert_eq!(subject, "Merge the work of tasks 1, 2 and 3");

    let again = repository
        .merge_branches(&prepared.path, &["baton/1-a", "baton/3-c"], "again")
        .unwrap();
    assert_eq!(again, MergeOutcome::UpToDate { head });
}

#[test]
fn one_dependency_ahead_is_a_fast_forward() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let first = fixture.branch_with("baton/1-a", "a.txt", "a\n");
    let prepared = task_worktree(&fixture, &repository, "baton/2-after");
    let outcome = repository
        .merge_branches(&prepared.path, &["baton/1-a"], "unused")
        .unwrap();
    assert_eq!(
        outcome,
        MergeOutcome::FastForward {
            head: first.clone()
        }
    );
    assert_eq!(
        repository.branch_head("baton/2-after").unwrap(),
        Some(first)
    );
}

#[test]
fn a_conflict_between_dependencies_names_the_files_and_changes_nothing() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    fixture.branch_with("baton/1-a", "README.md", "from a\n");
    fixture.branch_with("baton/2-b", "other.txt", "b\n");
    fixture.branch_with("baton/3-c", "README.md", "from c\n");
    let prepared = task_worktree(&fixture, &repository, "baton/4-after");
    write(
        &prepared.path,
        "scratch.txt",
        "uncommitted work of the task",
    );
    let before = snapshot(&fixture, &prepared.path);

    let outcome = repository
        .merge_branches(
            &prepared.path,
            &["baton/1-a", "baton/2-b", "baton/3-c"],
            "merge",
        )
        .unwrap();
    assert_eq!(
        outcome,
        MergeOutcome::Conflict {
            files: vec![PathBuf::from("README.md")]
        }
    );
    assert_eq!(snapshot(&fixture, &prepared.path), before);
}

#[test]
fn delivery_fast_forwards_the_base_branch_in_the_main_worktree() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = task_worktree(&fixture, &repository, "baton/5-deliver");
    let head = fixture.commit_file(&prepared.path, "feature.txt", "feature\n");
    let delivery = repository
        .deliver("baton/5-deliver", "main", "Merge task 5")
        .unwrap();
    assert_eq!(delivery, Delivery::FastForward { head: head.clone() });
    assert_eq!(fixture.head(&fixture.repo), head);
    assert_eq!(read(&fixture.repo.join("feature.txt")), "feature\n");
    assert_eq!(
        fixture.raw(
            &fixture.repo,
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        ""
    );
    let again = repository
        .deliver("baton/5-deliver", "main", "again")
        .unwrap();
    assert_eq!(again, Delivery::AlreadyMerged { head });
}

#[test]
fn delivery_merges_when_the_base_moved_on() {
    let fixture = Fixture::new();
    fixture.set_identity("Ada Lovelace", "ada@example.com");
    let repository = fixture.repository();
    let prepared = task_worktree(&fixture, &repository, "baton/6-deliver");
    let branch_head = fixture.commit_file(&prepared.path, "feature.txt", "feature\n");
    let base_head = fixture.commit_file(&fixture.repo, "elsewhere.txt", "meanwhile\n");

    let delivery = repository
        .deliver("baton/6-deliver", "main", "Merge task 6: the feature")
        .unwrap();
    let Delivery::Merged { head } = delivery else {
        panic!("expected a merge, got {delivery:?}");
    };
    assert_eq!(fixture.head(&fixture.repo), head);
    assert_eq!(
        parents(&fixture, head.as_str()),
        [base_head.to_string(), branch_head.to_string()]
    );
    assert_eq!(read(&fixture.repo.join("feature.txt")), "feature\n");
    assert_eq!(read(&fixture.repo.join("elsewhere.txt")), "meanwhile\n");
    let line = fixture.raw(&fixture.repo, &["log", "-1", "--format=%s|%an"]);
    assert_eq!(line, "Merge task 6: the feature|Ada Lovelace");
    assert_eq!(
        fixture.raw(
            &fixture.repo,
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        ""
    );
}

#[test]
fn a_conflicting_delivery_leaves_the_main_worktree_exactly_as_it_was() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = task_worktree(&fixture, &repository, "baton/7-deliver");
    fixture.commit_file(&prepared.path, "README.md", "the task's version\n");
    fixture.commit_file(&fixture.repo, "README.md", "the user's version\n");
    let before = snapshot(&fixture, &fixture.repo);

    let delivery = repository
        .deliver("baton/7-deliver", "main", "merge")
        .unwrap();
    assert_eq!(
        delivery,
        Delivery::Conflict {
            files: vec![PathBuf::from("README.md")]
        }
    );
    assert_eq!(snapshot(&fixture, &fixture.repo), before);
}

#[test]
fn delivery_is_skipped_when_the_main_worktree_is_not_clean_or_elsewhere() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = task_worktree(&fixture, &repository, "baton/8-deliver");
    fixture.commit_file(&prepared.path, "feature.txt", "feature\n");

    fixture.write("notes.txt", "the user's notes");
    let before = snapshot(&fixture, &fixture.repo);
    let delivery = repository
        .deliver("baton/8-deliver", "main", "merge")
        .unwrap();
    assert_eq!(
        delivery,
        Delivery::Skipped {
            reason: SkipReason::Uncommitted {
                files: vec![PathBuf::from("notes.txt")]
            }
        }
    );
    assert_eq!(snapshot(&fixture, &fixture.repo), before);
    fs::remove_file(fixture.repo.join("notes.txt")).unwrap();

    fixture.raw(&fixture.repo, &["switch", "--quiet", "-c", "topic"]);
    let delivery = repository
        .deliver("baton/8-deliver", "main", "merge")
        .unwrap();
    let Delivery::Skipped { reason } = delivery else {
        panic!("expected a skip, got {delivery:?}");
    };
    assert_eq!(
        reason.to_string(),
        "the main worktree has `topic` checked out, not `main`"
    );
}

#[test]
fn a_branch_is_pushed_to_a_remote_under_its_name() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let remote = fixture.root.join("remote.git");
    fixture.raw(
        &fixture.root,
        &["init", "--quiet", "--bare", remote.to_str().unwrap()],
    );
    fixture.raw(
        &fixture.repo,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    let head = fixture.branch_with("baton/9-push", "pushed.txt", "p\n");
    repository.push("origin", "baton/9-push").unwrap();
    let pushed = fixture.raw(&remote, &["rev-parse", "refs/heads/baton/9-push"]);
    assert_eq!(pushed, head.to_string());
}

#[test]
fn a_worktree_fast_forwards_with_its_files_unless_changes_are_in_the_way() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let worktree = task_worktree(&fixture, &repository, "baton/9-ff");
    let later = fixture.commit_file(&fixture.repo, "later.txt", "later\n");

    // An uncommitted file where the commit writes one: git refuses, nothing moves.
    write(&worktree.path, "later.txt", "mine\n");
    let outcome = repository
        .fast_forward_worktree(&worktree.path, &later)
        .unwrap();
    let WorktreeFastForward::Refused { message } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(message.contains("later.txt"), "{message}");
    assert_eq!(read(&worktree.path.join("later.txt")), "mine\n");
    assert_eq!(fixture.head(&worktree.path), worktree.head);

    fs::remove_file(worktree.path.join("later.txt")).unwrap();
    write(&worktree.path, "other.txt", "kept\n");
    assert_eq!(
        repository
            .fast_forward_worktree(&worktree.path, &later)
            .unwrap(),
        WorktreeFastForward::Moved
    );
    assert_eq!(fixture.head(&worktree.path), later);
    assert_eq!(repository.branch_head("baton/9-ff").unwrap(), Some(later));
    assert_eq!(read(&worktree.path.join("later.txt")), "later\n");
    assert_eq!(read(&worktree.path.join("other.txt")), "kept\n");
}
