//! Task worktrees through the real binary, in a git repository made in the world's `work/`
//! (a private HOME, no system git configuration).

use std::path::Path;
use std::process::Command;

use crate::support::World;

/// A workspace inside a git repository with one commit.
pub(crate) fn repository_world() -> World {
    let mut world = World::with_workspace();
    world.set("GIT_CONFIG_NOSYSTEM", "1");
    git(&world, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(world.work().join("file.txt"), "base\n").unwrap();
    git(&world, &["add", "file.txt"]);
    git(
        &world,
        &[
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=t@example.com",
            "commit",
            "--quiet",
            "-m",
            "base",
        ],
    );
    world
}

pub(crate) fn git(world: &World, args: &[&str]) -> String {
    git_in(world, &world.work(), args)
}

pub(crate) fn git_in(world: &World, dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", world.root().join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_task_runs_in_its_own_worktree_and_its_work_is_committed_on_its_branch() {
    let world = repository_world();
    // The check also leaves a token-shaped line behind (built by the shell, so that the
    // command itself holds none): the diff must show it redacted.
    let id = world.add_task(&[
        "make a file",
        "--verify",
        "echo made > made.txt && printf '%s%s\\n' ghp_abcdefghij klmnopqrstuvwxyz0123456789AB > leak.txt",
    ]);
    world.baton(&["run"]).success();

    let shown = world
        .baton(&["--json", "task", "show", &id.to_string()])
        .success()
        .json();
    let branch = shown["branch"].as_str().unwrap().to_owned();
    assert_eq!(branch, format!("baton/{id}-make-a-file"));
    let worktree = shown["worktree"].as_str().unwrap();
    assert!(
        worktree.ends_with(&format!(".baton/worktrees/{id}")),
        "{worktree}"
    );
    assert_eq!(shown["delivery"], "branch");
    let head = git(&world, &["rev-parse", &branch]);
    assert_eq!(shown["head_commit"].as_str().unwrap(), head.trim());
    assert_eq!(
        git(&world, &["show", &format!("{branch}:made.txt")]),
        "made\n"
    );
    // The person's checkout shows nothing: not the file, not .baton/.
    assert_eq!(git(&world, &["status", "--porcelain"]), "");
    assert!(!world.work().join("made.txt").exists());

    let text = world.baton(&["task", "show", &id.to_string()]).success();
    assert!(text.stdout.contains(&branch), "{}", text.stdout);
    assert!(
        text.stdout.contains("diff         2 files changed, +2 -0"),
        "{}",
        text.stdout
    );

    let diff = world.baton(&["task", "diff", &id.to_string()]).success();
    assert!(diff.stdout.contains("+++ b/made.txt"), "{}", diff.stdout);
    assert!(diff.stdout.contains("+[redacted]"), "{}", diff.stdout);
    assert!(!diff.stdout.contains("ghp_abcdefghij"), "{}", diff.stdout);

    let listed = world
        .baton(&["--json", "worktree", "list"])
        .success()
        .json();
    assert_eq!(listed[0]["task"], id);
    assert_eq!(listed[0]["state"], "present");
    assert_eq!(listed[0]["uncommitted"], false);
}

#[test]
fn removal_refuses_uncommitted_work_unless_forced_and_keeps_the_branch() {
    let world = repository_world();
    let id = world.add_task(&[
        "leave junk",
        "--verify",
        "echo junk > junk.txt; false",
        "--max-iterations",
        "1",
    ]);
    world.baton(&["run"]).code(1);
    let shown = world
        .baton(&["--json", "task", "show", &id.to_string()])
        .success()
        .json();
    assert_eq!(shown["status"], "failed");
    let worktree = shown["worktree"].as_str().unwrap().to_owned();
    let branch = shown["branch"].as_str().unwrap().to_owned();
    assert!(Path::new(&worktree).join("junk.txt").exists());

    let listed = world
        .baton(&["--json", "worktree", "list"])
        .success()
        .json();
    assert_eq!(listed[0]["uncommitted"], true);

    let refused = world
        .baton(&["worktree", "remove", &id.to_string()])
        .code(2);
    assert!(refused.stderr.contains("junk.txt"), "{}", refused.stderr);
    assert!(Path::new(&worktree).join("junk.txt").exists());

    world
        .baton(&["worktree", "remove", &id.to_string(), "--force"])
        .success();
    assert!(!Path::new(&worktree).exists());
    git(&world, &["rev-parse", "--verify", &branch]);
}

#[test]
fn an_unmerged_branch_is_deleted_only_when_forced() {
    let world = repository_world();
    let id = world.add_task(&["work", "--verify", "echo w > w.txt"]);
    world.baton(&["run"]).success();
    let shown = world
        .baton(&["--json", "task", "show", &id.to_string()])
        .success()
        .json();
    let branch = shown["branch"].as_str().unwrap().to_owned();
    let refused = world
        .baton(&["worktree", "remove", &id.to_string(), "--delete-branch"])
        .code(2);
    assert!(refused.stderr.contains("not merged"), "{}", refused.stderr);
    git(&world, &["rev-parse", "--verify", &branch]);
    let removed = world
        .baton(&[
            "--json",
            "worktree",
            "remove",
            &id.to_string(),
            "--delete-branch",
            "--force",
        ])
        .success()
        .json();
    assert_eq!(removed[0]["deleted_branch"], branch.as_str());
    assert_eq!(
        removed[0]["deleted_head"].as_str().unwrap(),
        shown["head_commit"].as_str().unwrap()
    );
}

#[test]
fn a_base_that_names_no_commit_is_refused() {
    let world = repository_world();
    let refused = world
        .baton(&["task", "add", "t", "--base", "no-such-ref"])
        .code(2);
    assert!(refused.stderr.contains("no-such-ref"), "{}", refused.stderr);
    let listed = world.baton(&["--json", "task", "list"]).success().json();
    assert_eq!(listed.as_array().unwrap().len(), 0);
}

#[test]
fn isolation_none_runs_in_the_directory_as_it_is() {
    let world = repository_world();
    let id = world.add_task(&[
        "in place",
        "--isolation",
        "none",
        "--verify",
        "echo p > p.txt",
    ]);
    world.baton(&["run"]).success();
    assert!(world.work().join("p.txt").exists());
    let shown = world
        .baton(&["--json", "task", "show", &id.to_string()])
        .success()
        .json();
    assert!(shown["branch"].is_null());
}
