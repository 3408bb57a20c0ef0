//! Committing what an agent left, and what a branch changed against its base.

use std::fs;
use std::io::Read;
use std::process::Stdio;

use git::{CommitMessage, CommitOutcome, DiffStat, GitError, PreparedWorktree, Repository};

use crate::common::{Fixture, write};

const BRANCH: &str = "baton/4-edit";

fn worktree(fixture: &Fixture, repository: &Repository) -> PreparedWorktree {
    let base = repository.resolve_commit("HEAD").unwrap();
    let lock = repository.lock_worktrees().unwrap();
    let path = fixture.repo.join(".baton/worktrees/4");
    repository
        .prepare_worktree(&lock, &path, BRANCH, &base)
        .unwrap()
}

fn message() -> CommitMessage {
    CommitMessage::new("Edit the readme")
        .with_trailer("Baton-Task", "4")
        .with_trailer("Baton-Session", "6f1c1f8e-0a59-4c43-9f5c-1d9f0c1b2a3d")
        .with_trailer("Baton-Session", "0b8e4d3a-7c2f-4e1b-8a6d-5f4c3b2a1e0d")
}

#[test]
fn everything_but_ignored_files_is_committed_with_title_and_trailers() {
    let fixture = Fixture::new();
    fixture.set_identity("Ada Lovelace", "ada@example.com");
    let repository = fixture.repository();
    let prepared = worktree(&fixture, &repository);
    fixture.commit_file(&prepared.path, ".gitignore", "*.log\n");
    write(&prepared.path, "README.md", "changed\n");
    write(&prepared.path, "src/new.rs", "fn new() {}\n");
    write(&prepared.path, "debug.log", "noise");

    let outcome = repository
        .commit_all(&prepared.path, BRANCH, &message())
        .unwrap();
    let CommitOutcome::Committed { head } = &outcome else {
        panic!("expected a commit, got {outcome:?}");
    };
    assert_eq!(fixture.head(&prepared.path), *head);
    let files = fixture.raw(
        &prepared.path,
        &["show", "--name-only", "--format=", "HEAD"],
    );
    assert_eq!(files, "README.md\nsrc/new.rs");
    assert!(prepared.path.join("debug.log").exists());

    let body = fixture.raw(&prepared.path, &["log", "-1", "--format=%B"]);
    assert_eq!(
        body,
        "Edit the readme\n\nBaton-Task: 4\n\
         Baton-Session: 6f1c1f8e-0a59-4c43-9f5c-1d9f0c1b2a3d\n\
         Baton-Session: 0b8e4d3a-7c2f-4e1b-8a6d-5f4c3b2a1e0d"
    );
    let sessions = fixture.raw(
        &prepared.path,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Baton-Session,valueonly,separator=%x2C)",
        ],
    );
    assert_eq!(
        sessions,
        "6f1c1f8e-0a59-4c43-9f5c-1d9f0c1b2a3d,0b8e4d3a-7c2f-4e1b-8a6d-5f4c3b2a1e0d"
    );
    let author = fixture.raw(
        &prepared.path,
        &["log", "-1", "--format=%an <%ae>|%cn <%ce>"],
    );
    assert_eq!(
        author,
        "Ada Lovelace <ada@example.com>|Ada Lovelace <ada@example.com>"
    );

    let again = repository
        .commit_all(&prepared.path, BRANCH, &message())
        .unwrap();
    assert_eq!(again, CommitOutcome::NoChanges { head: head.clone() });
}

#[test]
fn deletions_are_committed_and_a_title_starting_with_a_hash_survives() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    fixture.raw(&fixture.repo, &["config", "commit.cleanup", "strip"]);
    let prepared = worktree(&fixture, &repository);
    fs::remove_file(prepared.path.join("README.md")).unwrap();
    let message = CommitMessage::new("#12 drop the readme");
    repository
        .commit_all(&prepared.path, BRANCH, &message)
        .unwrap();
    let status = fixture.raw(
        &prepared.path,
        &["show", "--name-status", "--format=%s", "HEAD"],
    );
    assert_eq!(status, "#12 drop the readme\n\nD\tREADME.md");
}

#[test]
fn without_a_configured_identity_the_commit_is_batons() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = worktree(&fixture, &repository);
    write(&prepared.path, "a.txt", "a");
    repository
        .commit_all(&prepared.path, BRANCH, &message())
        .unwrap();
    let author = fixture.raw(
        &prepared.path,
        &["log", "-1", "--format=%an <%ae>|%cn <%ce>"],
    );
    assert_eq!(author, "Baton <baton@localhost>|Baton <baton@localhost>");

    // Only what is missing is filled in.
    fixture.raw(&fixture.repo, &["config", "user.name", "Grace Hopper"]);
    write(&prepared.path, "b.txt", "b");
    repository
        .commit_all(&prepared.path, BRANCH, &message())
        .unwrap();
    let author = fixture.raw(&prepared.path, &["log", "-1", "--format=%an <%ae>"]);
    assert_eq!(author, "Grace Hopper <baton@localhost>");
}

#[test]
fn a_worktree_switched_to_another_branch_is_not_committed() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = worktree(&fixture, &repository);
    fixture.raw(&prepared.path, &["switch", "--quiet", "-c", "agent-made"]);
    write(&prepared.path, "a.txt", "a");
    let error = repository
        .commit_all(&prepared.path, BRANCH, &message())
        .unwrap_err();
    assert!(
        matches!(error, GitError::WrongBranch { ref found, .. } if found.as_deref() == Some("agent-made")),
        "{error}"
    );
    assert_eq!(
        fixture.raw(&prepared.path, &["status", "--porcelain"]),
        "?? a.txt"
    );
}

#[test]
fn the_diff_stat_and_the_diff_describe_the_branch_against_its_base() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let prepared = worktree(&fixture, &repository);
    let base = prepared.head.clone();
    write(&prepared.path, "README.md", "hello\nworld\n");
    write(&prepared.path, "two.txt", "1\n2\n3\n");
    repository
        .commit_all(&prepared.path, BRANCH, &message())
        .unwrap();
    fs::remove_file(prepared.path.join("two.txt")).unwrap();
    write(&prepared.path, "README.md", "world\n");
    let head = repository
        .commit_all(&prepared.path, BRANCH, &message())
        .unwrap()
        .head()
        .clone();

    let stat = repository.diff_stat(base.as_str(), head.as_str()).unwrap();
    assert_eq!(
        stat,
        DiffStat {
            files_changed: 1,
            insertions: 1,
            deletions: 1
        }
    );
    let first = repository
        .diff_stat(base.as_str(), &format!("{head}~1"))
        .unwrap();
    assert_eq!(
        first,
        DiffStat {
            files_changed: 2,
            insertions: 4,
            deletions: 0
        }
    );
    assert_eq!(
        repository.diff_stat(head.as_str(), BRANCH).unwrap(),
        DiffStat::default()
    );

    let diff = String::from_utf8(repository.diff(base.as_str(), BRANCH).unwrap()).unwrap();
    assert!(diff.contains("-hello\n"), "{diff}");
    assert!(
        diff.starts_with("diff --git a/README.md b/README.md"),
        "{diff}"
    );

    let mut streamed = String::new();
    let mut child = repository
        .diff_command(base.as_str(), BRANCH, false)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut streamed)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(streamed, diff);
}
