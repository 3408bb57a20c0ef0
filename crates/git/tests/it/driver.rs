//! The driver itself: git's version, the scrubbed environment, timeouts, and the errors a
//! caller must tell apart.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use git::{CommitMessage, Git, GitError, MINIMUM_VERSION, Repository};

use crate::common::{Fixture, is_child, passed_path, run_child_test, write};

#[test]
fn the_installed_git_is_supported() {
    let version = Fixture::new().git.check_version().unwrap();
    assert!(version >= MINIMUM_VERSION, "{version}");
}

#[test]
fn variables_that_redirect_git_are_scrubbed() {
    let fixture = Fixture::new();
    fixture.set_identity("Ada Lovelace", "ada@example.com");
    let intruder = Fixture::new();
    let intruder_git_dir = intruder.repo.join(".git");
    assert!(run_child_test(
        "driver::child_half_of_variables_that_redirect_git_are_scrubbed",
        &[
            ("BATON_GIT_TEST_REPO", &fixture.repo),
            ("BATON_GIT_TEST_HOME", &fixture.home),
            ("GIT_DIR", &intruder_git_dir),
            ("GIT_WORK_TREE", &intruder.repo),
            ("GIT_INDEX_FILE", &intruder_git_dir.join("index")),
            ("GIT_OBJECT_DIRECTORY", &intruder_git_dir.join("objects")),
            ("GIT_COMMON_DIR", &intruder_git_dir),
            ("GIT_CEILING_DIRECTORIES", &fixture.root),
            ("GIT_AUTHOR_NAME", Path::new("Intruder")),
            ("GIT_COMMITTER_EMAIL", Path::new("intruder@example.com")),
            ("GIT_CONFIG_PARAMETERS", Path::new("'user.name'='Intruder'")),
            ("GIT_CONFIG_COUNT", Path::new("1")),
            ("GIT_CONFIG_KEY_0", Path::new("user.email")),
            ("GIT_CONFIG_VALUE_0", Path::new("intruder@example.com")),
            ("LANGUAGE", Path::new("fr")),
            ("LC_ALL", Path::new("fr_FR.UTF-8")),
        ],
    ));
    let intruder_head = intruder.raw(&intruder.repo, &["log", "--format=%s"]);
    assert_eq!(
        intruder_head, "initial",
        "the other repository was not touched"
    );
    let author = fixture.raw(&fixture.repo, &["log", "-1", "--format=%s|%an <%ae>|%ce"]);
    assert_eq!(
        author,
        "from the child|Ada Lovelace <ada@example.com>|ada@example.com"
    );
}

/// The child half: runs with the redirecting variables set in its own environment.
#[test]
fn child_half_of_variables_that_redirect_git_are_scrubbed() {
    if !is_child() {
        return;
    }
    let repo = passed_path("BATON_GIT_TEST_REPO");
    let home = passed_path("BATON_GIT_TEST_HOME");
    let git = Git::new()
        .with_inherited(std::env::vars_os())
        .with_env("HOME", &home)
        .with_env("XDG_CONFIG_HOME", home.join(".config"))
        .with_env("GIT_CONFIG_NOSYSTEM", "1");
    let repository = Repository::open(&git, &repo).unwrap();
    assert_eq!(repository.top_level(), repo);
    assert_eq!(repository.common_dir(), repo.join(".git"));
    write(&repo, "child.txt", "written by the child");
    repository
        .commit_all(&repo, "main", &CommitMessage::new("from the child"))
        .unwrap();
    // Under a French locale this would not be English; the crate parses English.
    let error = repository.resolve_commit("nowhere").unwrap_err();
    assert!(
        error.to_string().contains("does not name a commit"),
        "{error}"
    );
    let error = repository
        .delete_branch("nowhere", "main", false)
        .unwrap_err();
    assert!(matches!(error, GitError::NoSuchBranch { .. }), "{error}");
}

#[test]
fn a_git_that_hangs_is_stopped_at_the_timeout() {
    let fixture = Fixture::new();
    let fake = fixture.root.join("hanging-git");
    fs::write(&fake, "#!/bin/sh\nsleep 30 &\nwait\n").unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let git = Git::new()
        .with_inherited(std::env::vars_os())
        .with_program(&fake)
        .with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let error = git.version().unwrap_err();
    assert!(matches!(error, GitError::Timeout { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
    assert!(
        error.to_string().contains("did not finish within 0.3 s"),
        "{error}"
    );
}

#[test]
fn a_missing_git_says_so() {
    let git = Git::new()
        .with_inherited(std::env::vars_os())
        .with_program("/nonexistent/git");
    let error = git.version().unwrap_err();
    assert!(matches!(error, GitError::Spawn { .. }), "{error}");
    assert!(error.to_string().contains("is git installed"), "{error}");
}

#[test]
fn a_stale_index_lock_is_reported_as_such() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let lock_file = fixture.repo.join(".git/index.lock");
    fs::write(&lock_file, "").unwrap();
    fixture.write("README.md", "changed\n");
    let error = repository
        .commit_all(&fixture.repo, "main", &CommitMessage::new("blocked"))
        .unwrap_err();
    assert!(error.is_locked(), "{error}");
    let GitError::Locked {
        lock_file: reported,
        ..
    } = &error
    else {
        unreachable!()
    };
    assert_eq!(reported, &lock_file);
    let message = error.to_string();
    assert!(
        message.contains("another git process is running"),
        "{message}"
    );
    assert!(message.contains("git -C"), "{message}");

    // Looking at the worktree does not need the lock; once it is gone, the commit goes in.
    assert!(!repository.is_clean(&fixture.repo).unwrap());
    fs::remove_file(&lock_file).unwrap();
    repository
        .commit_all(&fixture.repo, "main", &CommitMessage::new("unblocked"))
        .unwrap();
}

#[test]
fn an_io_failure_surfaces_gits_own_message() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    // Every object directory git could write a new object into is a file instead: the
    // write fails as on a broken disk, whatever the user (tests may run as root).
    fixture.raw(&fixture.repo, &["repack", "-a", "-d", "-q"]);
    fixture.raw(&fixture.repo, &["prune-packed"]);
    let objects = fixture.repo.join(".git/objects");
    for prefix in 0..=255u8 {
        let directory = objects.join(format!("{prefix:02x}"));
        if directory.is_dir() {
            fs::remove_dir(&directory).unwrap();
        }
        fs::write(&directory, "").unwrap();
    }
    fixture.write("new.txt", "cannot be stored");
    let error = repository
        .commit_all(&fixture.repo, "main", &CommitMessage::new("fails"))
        .unwrap_err();
    let GitError::Failed {
        stderr, command, ..
    } = &error
    else {
        panic!("expected git's failure, got {error}");
    };
    assert!(
        stderr.contains("unable to create temporary file"),
        "{stderr}"
    );
    assert_eq!(command.args, ["add", "--all"]);
    assert!(error.to_string().contains("git -C"), "{error}");
}

#[test]
fn failures_name_the_command_and_carry_gits_message() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let head = repository.resolve_commit("HEAD").unwrap();
    repository.create_branch("taken", &head).unwrap();
    let error = repository.create_branch("taken", &head).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "`git -C {} branch --no-track --end-of-options taken {head}` exited with status 128: fatal: a branch named 'taken' already exists",
            fixture.repo.display()
        )),
        "{message}"
    );
    assert_eq!(
        error.stderr(),
        Some("fatal: a branch named 'taken' already exists")
    );
}
