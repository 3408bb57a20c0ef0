//! Finding a repository from a directory, and what can be read about it.

use std::fs;
use std::path::Path;

use git::{GitError, Repository};

use crate::common::{Fixture, read};

#[test]
fn a_subdirectory_is_found_with_its_place_in_the_work_tree() {
    let fixture = Fixture::new();
    let deep = fixture.repo.join("crates/git");
    fs::create_dir_all(&deep).unwrap();
    let repository = Repository::discover(&fixture.git, &deep).unwrap().unwrap();
    assert_eq!(repository.top_level(), fixture.repo);
    assert_eq!(repository.subdirectory(), Path::new("crates/git"));
    assert_eq!(repository.common_dir(), fixture.repo.join(".git"));
    assert_eq!(repository.main_worktree(), Some(fixture.repo.as_path()));

    let top = Repository::discover(&fixture.git, &fixture.repo)
        .unwrap()
        .unwrap();
    assert_eq!(top.subdirectory(), Path::new(""));
}

#[test]
fn directories_outside_a_work_tree_are_no_repository() {
    let fixture = Fixture::new();
    let outside = fixture.root.join("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    assert!(
        Repository::discover(&fixture.git, &outside)
            .unwrap()
            .is_none()
    );
    let inside_git_dir = fixture.repo.join(".git");
    assert!(
        Repository::discover(&fixture.git, &inside_git_dir)
            .unwrap()
            .is_none()
    );
    let error = Repository::open(&fixture.git, &outside).unwrap_err();
    assert!(matches!(error, GitError::NotARepository { .. }), "{error}");
}

#[test]
fn a_linked_worktree_knows_the_common_dir_and_the_main_worktree() {
    let fixture = Fixture::new();
    let linked = fixture.root.join("linked");
    fixture.raw(
        &fixture.repo,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            "side",
            linked.to_str().unwrap(),
        ],
    );
    let repository = Repository::open(&fixture.git, &linked).unwrap();
    assert_eq!(repository.top_level(), linked);
    assert_eq!(repository.common_dir(), fixture.repo.join(".git"));
    assert_eq!(repository.main_worktree(), Some(fixture.repo.as_path()));
    assert_eq!(
        repository.exclude_path(),
        fixture.repo.join(".git/info/exclude")
    );
    assert_eq!(
        repository.current_branch(&linked).unwrap().as_deref(),
        Some("side")
    );
    assert_eq!(repository.main_branch().unwrap().as_deref(), Some("main"));
}

#[test]
fn a_fresh_repository_has_no_commits() {
    let empty = Fixture::empty();
    assert!(!empty.repository().has_commits().unwrap());
    assert_eq!(
        empty.repository().main_branch().unwrap().as_deref(),
        Some("main")
    );
    assert!(Fixture::new().repository().has_commits().unwrap());
}

#[test]
fn revisions_resolve_to_commits_and_options_are_not_revisions() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let head = fixture.head(&fixture.repo);
    assert_eq!(repository.resolve_commit("HEAD").unwrap(), head);
    assert_eq!(repository.resolve_commit("main").unwrap(), head);
    assert_eq!(repository.resolve_commit(head.as_str()).unwrap(), head);
    fixture.raw(&fixture.repo, &["tag", "-a", "-m", "v1", "v1"]);
    assert_eq!(
        repository.resolve_commit("v1").unwrap(),
        head,
        "tags peel to commits"
    );
    for unknown in ["nowhere", "--all", "-rf"] {
        let error = repository.resolve_commit(unknown).unwrap_err();
        assert!(
            matches!(error, GitError::UnknownRevision { .. }),
            "{unknown}: {error}"
        );
    }
}

#[test]
fn a_detached_head_has_no_current_branch() {
    let fixture = Fixture::new();
    fixture.raw(&fixture.repo, &["checkout", "--quiet", "--detach"]);
    assert_eq!(
        fixture.repository().current_branch(&fixture.repo).unwrap(),
        None
    );
}

#[test]
fn status_lists_untracked_files_and_leaves_ignored_ones_out() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    assert!(repository.is_clean(&fixture.repo).unwrap());
    fixture.write(".gitignore", "target/\n");
    fixture.raw(&fixture.repo, &["add", ".gitignore"]);
    fixture.raw(&fixture.repo, &["commit", "--quiet", "-m", "ignore"]);
    fixture.write("target/debug/out", "binary");
    assert!(
        repository.is_clean(&fixture.repo).unwrap(),
        "ignored files are clean"
    );
    fixture.write("notes/new file.txt", "draft");
    fixture.write("README.md", "changed\n");
    let status = repository.status(&fixture.repo).unwrap();
    let listed: Vec<String> = status
        .iter()
        .map(|entry| format!("{}|{}", entry.code, entry.path.display()))
        .collect();
    assert_eq!(listed, [" M|README.md", "??|notes/new file.txt"]);
}

#[test]
fn excluding_a_pattern_is_idempotent_and_hides_it_from_status() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    fixture.write(".baton/ledger.sqlite", "data");
    assert!(!repository.is_clean(&fixture.repo).unwrap());
    assert!(repository.exclude("/.baton/").unwrap());
    assert!(!repository.exclude("/.baton/").unwrap());
    assert!(!repository.exclude("  /.baton/ ").unwrap());
    let exclude = read(&repository.exclude_path());
    assert_eq!(exclude.matches("/.baton/").count(), 1, "{exclude}");
    assert!(exclude.ends_with("/.baton/\n"));
    assert!(repository.is_clean(&fixture.repo).unwrap());
}

#[test]
fn excluding_creates_the_file_and_keeps_an_unterminated_last_line() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let info = fixture.repo.join(".git/info");
    fs::remove_dir_all(&info).unwrap();
    assert!(repository.exclude("/.baton/").unwrap());
    assert_eq!(read(&repository.exclude_path()), "/.baton/\n");
    fs::write(repository.exclude_path(), "*.log").unwrap();
    assert!(repository.exclude("/.baton/").unwrap());
    assert_eq!(read(&repository.exclude_path()), "*.log\n/.baton/\n");
}
