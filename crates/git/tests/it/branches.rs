//! Branch names, free names without clobbering, and deleting branches safely.

use git::{GitError, is_valid_branch_name, task_branch_name};

use crate::common::Fixture;

#[test]
fn task_branch_names_pass_check_ref_format() {
    let fixture = Fixture::new();
    let titles = [
        "Fix the login bug",
        "..hidden.lock",
        "Refactor: a/b\\c ~^:?*[ @{now}",
        "émigré café — naïve façade",
        "日本語",
        "-leading dash",
        "trailing dot.",
        &"word ".repeat(30),
    ];
    for (id, title) in titles.iter().enumerate() {
        let name = task_branch_name(id, title);
        assert!(is_valid_branch_name(&name), "{name}");
        assert!(
            fixture.raw_succeeds(&fixture.repo, &["check-ref-format", "--branch", &name]),
            "git refuses {name}"
        );
    }
}

#[test]
fn the_validity_check_agrees_with_git() {
    let fixture = Fixture::new();
    let names = [
        "main",
        "baton/1-x",
        "a..b",
        "a/.b",
        "x.lock",
        "a b",
        "a~b",
        "a^b",
        "a:b",
        "a?b",
        "a*b",
        "a[b",
        "a\\b",
        "a@{b",
        "a/",
        "a//b",
        "a.",
        "-a",
        "HEAD",
        "é",
        "a.b/c",
    ];
    for name in names {
        let git_says = fixture.raw_succeeds(&fixture.repo, &["check-ref-format", "--branch", name]);
        assert_eq!(is_valid_branch_name(name), git_says, "{name}");
    }
}

#[test]
fn a_taken_name_gets_the_first_free_suffix() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let wanted = task_branch_name(7, "Add the thing");
    assert_eq!(repository.free_branch_name(&wanted).unwrap(), wanted);
    fixture.raw(&fixture.repo, &["branch", &wanted]);
    assert_eq!(
        repository.free_branch_name(&wanted).unwrap(),
        format!("{wanted}-2")
    );
    fixture.raw(&fixture.repo, &["branch", &format!("{wanted}-2")]);
    fixture.raw(&fixture.repo, &["branch", &format!("{wanted}-3/nested")]);
    assert_eq!(
        repository.free_branch_name(&wanted).unwrap(),
        format!("{wanted}-4"),
        "a name with branches under it is taken too"
    );
    let error = repository.free_branch_name("bad..name").unwrap_err();
    assert!(
        matches!(error, GitError::InvalidBranchName { .. }),
        "{error}"
    );
}

#[test]
fn creating_a_branch_never_moves_an_existing_one() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let first = fixture.head(&fixture.repo);
    let second = fixture.commit_file(&fixture.repo, "a.txt", "a");
    repository.create_branch("baton/1-x", &first).unwrap();
    let error = repository.create_branch("baton/1-x", &second).unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error}");
    assert_eq!(repository.branch_head("baton/1-x").unwrap(), Some(first));
}

#[test]
fn an_unmerged_branch_is_deleted_only_with_force() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let head = fixture.branch_with("baton/2-work", "work.txt", "work");
    let error = repository
        .delete_branch("baton/2-work", "main", false)
        .unwrap_err();
    assert!(matches!(error, GitError::NotMerged { .. }), "{error}");
    assert_eq!(
        repository.branch_head("baton/2-work").unwrap(),
        Some(head.clone())
    );

    let deleted = repository
        .delete_branch("baton/2-work", "main", true)
        .unwrap();
    assert_eq!(deleted.head, head);
    assert_eq!(repository.branch_head("baton/2-work").unwrap(), None);
}

#[test]
fn a_merged_branch_is_deleted_and_a_checked_out_one_never() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    fixture.raw(&fixture.repo, &["branch", "baton/3-done"]);
    repository
        .delete_branch("baton/3-done", "main", false)
        .unwrap();
    assert_eq!(repository.branch_head("baton/3-done").unwrap(), None);

    let error = repository.delete_branch("main", "main", true).unwrap_err();
    assert!(
        matches!(error, GitError::BranchCheckedOut { .. }),
        "{error}"
    );
    let error = repository
        .delete_branch("baton/none", "main", false)
        .unwrap_err();
    assert!(matches!(error, GitError::NoSuchBranch { .. }), "{error}");
}

#[test]
fn a_branch_fast_forwards_only_to_a_commit_that_contains_it() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let start = fixture.head(&fixture.repo);
    let later = fixture.commit_file(&fixture.repo, "later.txt", "later");
    repository.create_branch("baton/4-x", &start).unwrap();
    assert!(repository.is_ancestor("baton/4-x", "main").unwrap());
    assert_eq!(repository.count_commits("baton/4-x", "main").unwrap(), 1);
    assert_eq!(repository.count_commits("main", "baton/4-x").unwrap(), 0);

    repository.fast_forward_branch("baton/4-x", &later).unwrap();
    assert_eq!(
        repository.branch_head("baton/4-x").unwrap(),
        Some(later.clone())
    );

    // Back to `start` would drop `later`: refused, and the branch stays.
    let error = repository
        .fast_forward_branch("baton/4-x", &start)
        .unwrap_err();
    assert!(matches!(error, GitError::NotFastForward { .. }), "{error}");
    assert_eq!(repository.branch_head("baton/4-x").unwrap(), Some(later));
}

#[test]
fn a_checked_out_branch_is_not_moved_behind_its_worktree() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let start = fixture.head(&fixture.repo);
    let later = fixture.branch_with("baton/5-later", "later.txt", "later");
    let error = repository.fast_forward_branch("main", &later).unwrap_err();
    assert!(
        matches!(error, GitError::BranchCheckedOut { .. }),
        "{error}"
    );
    assert_eq!(repository.branch_head("main").unwrap(), Some(start));
}
