//! Repositories across hosts through the real binary: `task add` records the remote of the
//! task's repository (never its credentials), and a run started in another clone of that
//! remote works there and pushes to it.

use std::fs;
use std::path::Path;

use session_store::{Store, StoreOptions, TaskId, TaskWorkspace};

use crate::worktrees::{git, git_in, repository_world};

fn open(ledger: &Path) -> Store {
    Store::open_with(ledger, &StoreOptions::new(redact::Redactor::new())).unwrap()
}

/// The ledger's record of task `id`'s workspace, read from the file.
fn recorded(ledger: &Path, id: i64) -> TaskWorkspace {
    open(ledger).task_workspace(TaskId(id)).unwrap().unwrap()
}

#[test]
fn task_add_records_the_remote_without_its_credentials() {
    let world = repository_world();
    git(
        &world,
        &[
            "remote",
            "add",
            "origin",
            "https://x-access-token:ghp_s3cretT0ken@git.example.invalid/org/repo.git",
        ],
    );
    let head = git(&world, &["rev-parse", "HEAD"]);
    let id = world.add_task(&["recorded", "--verify", "true"]);

    let workspace = recorded(&world.work().join(".baton/baton.db"), id);
    assert_eq!(
        workspace.remote_url.as_deref(),
        Some("https://git.example.invalid/org/repo.git")
    );
    assert_eq!(workspace.base_commit.as_deref(), Some(head.trim()));
    assert_eq!(workspace.subdirectory.as_deref(), Some(""));
    assert_eq!(workspace.base_branch.as_deref(), Some("main"));
    for (path, bytes) in world.ledger_bytes() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("s3cretT0ken"), "{path:?} holds the token");
        assert!(!text.contains("x-access-token"), "{path:?} holds the user");
    }
}

#[test]
fn a_task_without_a_remote_records_nothing_at_add() {
    let world = repository_world();
    let id = world.add_task(&["no remote", "--verify", "true"]);
    let store = open(&world.work().join(".baton/baton.db"));
    assert_eq!(store.task_workspace(TaskId(id)).unwrap(), None);
}

#[test]
fn a_run_in_another_clone_works_there_and_pushes_to_the_recorded_remote() {
    let world = repository_world();
    let origin = world.root().join("origin.git");
    git(
        &world,
        &["init", "--quiet", "--bare", origin.to_str().unwrap()],
    );
    git(
        &world,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&world, &["push", "--quiet", "origin", "main"]);
    let id = world.add_task(&["elsewhere", "--verify", "echo b > made.txt"]);
    // Another host: its own clone at another path, its remote named differently, and its
    // own configuration; the path the task was added at is no clone there.
    let other = world.root().join("host-b");
    git_in(
        &world,
        &world.root(),
        &[
            "clone",
            "--quiet",
            "--origin",
            "upstream",
            origin.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    world
        .baton_in(&other, &["init", "--agent", "mock"])
        .success();
    let config = other.join(".baton/config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("# deliver = \"branch\"", "deliver = \"push\""),
    )
    .unwrap();
    fs::remove_dir_all(world.work().join(".git")).unwrap();

    let ledger = world.work().join(".baton/baton.db");
    world
        .baton_in(&other, &["--db", ledger.to_str().unwrap(), "run"])
        .success();

    let workspace = recorded(&ledger, id);
    assert_eq!(
        workspace.delivery.as_deref(),
        Some("pushed"),
        "{workspace:?}"
    );
    let worktree = workspace.worktree_path.clone().unwrap();
    assert!(
        Path::new(&worktree).starts_with(other.canonicalize().unwrap()),
        "{worktree}"
    );
    let branch = workspace.branch.unwrap();
    let shown = git_in(
        &world,
        &world.root(),
        &[
            "--git-dir",
            origin.to_str().unwrap(),
            "show",
            &format!("refs/heads/{branch}:made.txt"),
        ],
    );
    assert_eq!(shown, "b\n");
}

#[test]
fn a_push_goes_to_the_remote_with_the_recorded_url_whatever_its_name_now() {
    let world = repository_world();
    let origin = world.root().join("origin.git");
    git(
        &world,
        &["init", "--quiet", "--bare", origin.to_str().unwrap()],
    );
    git(
        &world,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    let config = world.work().join(".baton/config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("# deliver = \"branch\"", "deliver = \"push\""),
    )
    .unwrap();
    let id = world.add_task(&["renamed", "--verify", "echo r > renamed.txt"]);
    // The clone's name for the remote changes after the task recorded its URL: the run
    // neither refuses for want of `origin` nor pushes anywhere else.
    git(&world, &["remote", "rename", "origin", "upstream"]);

    let run = world.baton(&["run"]).success();
    assert!(run.stdout.contains("to upstream"), "{}", run.stdout);

    let workspace = recorded(&world.work().join(".baton/baton.db"), id);
    assert_eq!(
        workspace.delivery.as_deref(),
        Some("pushed"),
        "{workspace:?}"
    );
    let branch = workspace.branch.unwrap();
    let shown = git_in(
        &world,
        &world.root(),
        &[
            "--git-dir",
            origin.to_str().unwrap(),
            "show",
            &format!("refs/heads/{branch}:renamed.txt"),
        ],
    );
    assert_eq!(shown, "r\n");
}
