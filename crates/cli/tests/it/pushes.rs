//! `run.deliver = "push"` through the real binary: completed tasks' branches pushed to a bare
//! repository standing in for `origin`, a refusal that keeps the work, and a missing remote
//! refused before anything runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::World;
use crate::worktrees::{git, git_in, repository_world};

/// A repository world whose configuration says `deliver = "push"` (and `remote = REMOTE`
/// when given), with a bare repository `origin.git` beside it as its `origin`.
fn push_world(remote: Option<&str>) -> (World, PathBuf) {
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
    let mut text = fs::read_to_string(&config).unwrap();
    let mut settings = String::from("deliver = \"push\"");
    if let Some(remote) = remote {
        settings.push_str(&format!("\nremote = \"{remote}\""));
    }
    assert!(text.contains("# deliver = \"branch\""), "{text}");
    text = text.replace("# deliver = \"branch\"", &settings);
    fs::write(&config, text).unwrap();
    (world, origin)
}

/// What must not change in the main checkout: every file but `.git/` and `.baton/` with its
/// bytes, HEAD, and the index's bytes.
#[derive(Debug, PartialEq, Eq)]
struct Checkout {
    files: Vec<(PathBuf, Vec<u8>)>,
    head: String,
    index: Vec<u8>,
}

fn checkout(world: &World) -> Checkout {
    fn walk(top: &Path, dir: &Path, files: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap();
            if name == ".git" || name == ".baton" {
                continue;
            }
            if path.is_dir() {
                walk(top, &path, files);
            } else {
                let relative = path.strip_prefix(top).unwrap().to_owned();
                files.push((relative, fs::read(&path).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(&world.work(), &world.work(), &mut files);
    files.sort();
    let head = git(world, &["rev-parse", "HEAD"]);
    let index = fs::read(world.work().join(".git/index")).unwrap();
    Checkout { files, head, index }
}

fn in_origin(world: &World, origin: &Path, args: &[&str]) -> String {
    let mut all = vec!["--git-dir", origin.to_str().unwrap()];
    all.extend_from_slice(args);
    git_in(world, &world.root(), &all)
}

fn show(world: &World, id: i64) -> serde_json::Value {
    world
        .baton(&["--json", "task", "show", &id.to_string()])
        .success()
        .json()
}

#[test]
fn completed_tasks_are_pushed_to_origin_with_their_trailers() {
    let (world, origin) = push_world(None);
    let before = checkout(&world);
    let ids = [
        world.add_task(&["first change", "--verify", "echo one > one.txt"]),
        world.add_task(&["second change", "--verify", "echo two > two.txt"]),
    ];
    world.baton(&["run"]).success();

    for (id, file) in ids.into_iter().zip(["one.txt", "two.txt"]) {
        let shown = show(&world, id);
        assert_eq!(shown["delivery"], "pushed", "{shown}");
        let branch = shown["branch"].as_str().unwrap();
        let reference = format!("refs/heads/{branch}");
        assert_eq!(
            in_origin(&world, &origin, &["rev-parse", &reference]).trim(),
            shown["head_commit"].as_str().unwrap()
        );
        let message = in_origin(&world, &origin, &["log", "-1", "--format=%B", &reference]);
        assert!(message.contains(&format!("Baton-Task: {id}")), "{message}");
        let session = shown["sessions"][0].as_str().unwrap();
        assert!(
            message.contains(&format!("Baton-Session: {session}")),
            "{message}"
        );
        assert!(
            in_origin(&world, &origin, &["show", &format!("{reference}:{file}")])
                .starts_with(file.trim_end_matches(".txt")),
        );
    }
    // The remote got the two branches and nothing else; the checkout did not change a byte.
    let pushed = in_origin(&world, &origin, &["for-each-ref", "--format=%(refname)"]);
    assert_eq!(pushed.lines().count(), 2, "{pushed}");
    assert_eq!(checkout(&world), before);
    assert_eq!(git(&world, &["status", "--porcelain"]), "");
}

#[test]
fn a_refused_push_keeps_the_work_and_says_why() {
    let (world, origin) = push_world(None);
    let hook = origin.join("hooks/pre-receive");
    fs::write(
        &hook,
        "#!/bin/sh\necho 'pushes are frozen until Monday' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let before = checkout(&world);
    let id = world.add_task(&["frozen", "--verify", "echo kept > kept.txt"]);

    // The task is done and committed: it completes, and the run says its delivery did not.
    let run = world.baton(&["run"]).success();
    assert!(
        run.stdout
            .contains(&format!("task {id} completed, but its branch")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(rejected)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("pushes are frozen until Monday"),
        "{}",
        run.stdout
    );

    let shown = show(&world, id);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["delivery"], "rejected");
    let branch = shown["branch"].as_str().unwrap();
    assert_eq!(
        git(&world, &["show", &format!("{branch}:kept.txt")]),
        "kept\n"
    );
    assert!(
        Path::new(shown["worktree"].as_str().unwrap())
            .join("kept.txt")
            .exists()
    );
    assert_eq!(
        in_origin(&world, &origin, &["for-each-ref", "--format=%(refname)"]),
        ""
    );
    let text = world.baton(&["task", "show", &id.to_string()]).success();
    assert!(
        text.stdout.contains("rejected: origin refused"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!("git push origin {branch}")),
        "{}",
        text.stdout
    );
    assert_eq!(checkout(&world), before);
}

#[test]
fn a_missing_remote_is_refused_before_anything_runs() {
    let (world, _origin) = push_world(Some("upstream"));
    let before = checkout(&world);
    let id = world.add_task(&["never started", "--verify", "echo x > x.txt"]);

    let refused = world.baton(&["run"]).code(2);
    assert!(
        refused.stderr.contains("has no remote `upstream`"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("it has `origin`"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(&format!("task {id}")),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("remote add upstream URL"),
        "{}",
        refused.stderr
    );
    // Nothing ran: the task is pending with no iteration, and no branch was made.
    let shown = show(&world, id);
    assert_eq!(shown["status"], "pending");
    assert_eq!(shown["iterations"], 0);
    assert_eq!(git(&world, &["branch", "--list", "baton/*"]), "");
    assert_eq!(checkout(&world), before);

    // Once the remote is one the repository has, the same task runs and is pushed.
    let config = world.work().join(".baton/config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("remote = \"upstream\"", "remote = \"origin\""),
    )
    .unwrap();
    world.baton(&["run"]).success();
    assert_eq!(show(&world, id)["delivery"], "pushed");
}
