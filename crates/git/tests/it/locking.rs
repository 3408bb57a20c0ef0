//! The per-repository worktree lock, between threads and between processes.

use std::collections::HashSet;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use git::{GitError, Preparation, Repository, task_branch_name};

use crate::common::{Fixture, is_child, passed_path, run_child_test};

#[test]
fn eight_threads_create_eight_worktrees_under_the_lock() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let base = repository.resolve_commit("HEAD").unwrap();
    // Every thread wants the same name: the lock makes choosing and creating one step.
    let wanted = task_branch_name(1, "Same title everywhere");
    let barrier = Barrier::new(8);
    let prepared: Vec<_> = thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|index| {
                let (repository, base, wanted, barrier) = (&repository, &base, &wanted, &barrier);
                let path = fixture.repo.join(format!(".baton/worktrees/{index}"));
                scope.spawn(move || {
                    barrier.wait();
                    let lock = repository.lock_worktrees().unwrap();
                    let branch = repository.free_branch_name(wanted).unwrap();
                    repository
                        .prepare_worktree(&lock, &path, &branch, base)
                        .unwrap()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect()
    });
    let branches: HashSet<_> = prepared
        .iter()
        .map(|worktree| worktree.branch.clone())
        .collect();
    assert_eq!(branches.len(), 8, "{branches:?}");
    assert!(branches.contains(&wanted));
    assert!(branches.contains(&format!("{wanted}-8")));
    assert!(
        prepared
            .iter()
            .all(|worktree| worktree.preparation == Preparation::Created)
    );
    let listed = repository.worktrees().unwrap();
    assert_eq!(listed.len(), 9);
    for worktree in &prepared {
        assert!(worktree.path.join("README.md").exists());
    }
}

#[test]
fn a_held_lock_makes_another_thread_wait_until_its_timeout() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let held = repository.lock_worktrees().unwrap();
    let impatient = Repository::open(
        &fixture.git.clone().with_timeout(Duration::from_millis(200)),
        &fixture.repo,
    )
    .unwrap();
    let error = thread::scope(|scope| scope.spawn(|| impatient.lock_worktrees()).join().unwrap())
        .unwrap_err();
    assert!(matches!(error, GitError::LockTimeout { .. }), "{error}");
    drop(held);
    impatient.lock_worktrees().unwrap();
}

#[test]
fn the_lock_excludes_another_process() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    let held = repository.lock_worktrees().unwrap();
    let variables = [
        ("BATON_GIT_TEST_REPO", fixture.repo.as_path()),
        ("BATON_GIT_TEST_HOME", fixture.home.as_path()),
    ];
    assert!(run_child_test(
        "locking::child_half_of_the_lock_excludes_another_process",
        &[
            &variables[..],
            &[("BATON_GIT_TEST_EXPECT", "held".as_ref())]
        ]
        .concat(),
    ));
    drop(held);
    assert!(run_child_test(
        "locking::child_half_of_the_lock_excludes_another_process",
        &[
            &variables[..],
            &[("BATON_GIT_TEST_EXPECT", "free".as_ref())]
        ]
        .concat(),
    ));
}

#[test]
fn child_half_of_the_lock_excludes_another_process() {
    if !is_child() {
        return;
    }
    let repo = passed_path("BATON_GIT_TEST_REPO");
    let home = passed_path("BATON_GIT_TEST_HOME");
    let git = git::Git::new()
        .with_inherited(std::env::vars_os())
        .with_env("HOME", &home)
        .with_env("GIT_CONFIG_NOSYSTEM", "1")
        .with_timeout(Duration::from_millis(300));
    let repository = Repository::open(&git, &repo).unwrap();
    let outcome = repository.lock_worktrees();
    match passed_path("BATON_GIT_TEST_EXPECT").to_str() {
        Some("held") => assert!(
            matches!(outcome, Err(GitError::LockTimeout { .. })),
            "{outcome:?}"
        ),
        Some("free") => assert!(outcome.is_ok(), "{outcome:?}"),
        other => panic!("unexpected expectation {other:?}"),
    }
}
