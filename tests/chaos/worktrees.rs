//! Faults around task worktrees (issue 13): baton killed while a task runs in its worktree, a
//! check that outlives baton, a worktree deleted by hand, another git process holding a lock,
//! and a disk that fills while the completed work is committed. Nothing may be lost, nothing
//! left locked or running, and the task's path never moves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::json;

use crate::chaos::lab::{Binaries, Lab, is_alive};

/// The longest a scenario waits for something it set in motion.
const WAIT: Duration = Duration::from_secs(30);

/// A lab whose workspace is a git repository with one commit.
fn repository_lab(bins: &Binaries) -> anyhow::Result<Lab> {
    let mut lab = Lab::with_workspace(bins)?;
    lab.set("GIT_CONFIG_NOSYSTEM", "1");
    git(&lab, &["init", "--quiet", "--initial-branch=main"])?;
    std::fs::write(lab.work().join("file.txt"), "base\n")?;
    git(&lab, &["add", "file.txt"])?;
    git(
        &lab,
        &[
            "-c",
            "user.name=Chaos",
            "-c",
            "user.email=chaos@example.com",
            "commit",
            "--quiet",
            "-m",
            "base",
        ],
    )?;
    Ok(lab)
}

/// Runs git in the lab's work directory, hermetically.
fn git(lab: &Lab, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(lab.work())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", lab.root().join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .output()
        .context("running git")?;
    ensure!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned())
}

/// The task's worktree path and branch, as `task show --json` gives them.
fn workspace_of(lab: &Lab, id: i64) -> anyhow::Result<(PathBuf, String)> {
    let task = lab.json(&["task", "show", &id.to_string()])?;
    let path = task["worktree"]
        .as_str()
        .with_context(|| format!("task {id} has no worktree: {task}"))?;
    let branch = task["branch"].as_str().context("no branch")?;
    Ok((PathBuf::from(path), branch.to_owned()))
}

fn status_of(lab: &Lab, id: i64) -> anyhow::Result<String> {
    let task = lab.json(&["task", "show", &id.to_string()])?;
    Ok(task["status"].as_str().unwrap_or_default().to_owned())
}

fn expect_nothing_locked(lab: &Lab) -> anyhow::Result<()> {
    let list = git(lab, &["worktree", "list", "--porcelain"])?;
    ensure!(
        !list.contains("\nlocked"),
        "a worktree is left locked:\n{list}"
    );
    Ok(())
}

/// SIGKILL of baton while its agent works in the task's worktree: the next run reuses the same
/// path, resumes the session, and leaves nothing locked and no agent running.
pub fn sigkill_in_worktree(bins: &Binaries) -> anyhow::Result<String> {
    let lab = repository_lab(bins)?;
    lab.agent_plays(&json!({"steps": [
        {"outcome": "hang"},
        {"result": "done", "files": {"done.txt": "ok\n"}},
    ]}))?;
    let id = lab.add_task(&["Killed in a worktree", "--verify", "test -f done.txt"])?;
    let run = lab.spawn(lab.command(&["run"]))?;
    lab.wait_for_agent_call(1, WAIT)?;
    let (path, branch) = workspace_of(&lab, id)?;
    run.signal(libc::SIGKILL)?;
    run.wait(WAIT)?;
    lab.expect_no_live_agents(Duration::from_secs(5))?;

    lab.baton(&["run"])?.expect_code(0)?;
    ensure!(
        status_of(&lab, id)? == "completed",
        "the task did not complete"
    );
    let (again, _) = workspace_of(&lab, id)?;
    ensure!(
        again == path,
        "the worktree moved from {path:?} to {again:?}"
    );
    // The killed call was the session's first and was never recorded: the next run starts
    // the same session again, the agent answers that it exists, and the run resumes it.
    let calls = lab.agent_calls()?;
    let plans: Vec<&str> = calls
        .iter()
        .map(|call| call["plan"].as_str().unwrap_or_default())
        .collect();
    ensure!(
        plans.last() == Some(&"resume"),
        "the agent calls were {plans:?}"
    );
    let sessions: std::collections::BTreeSet<&str> = calls
        .iter()
        .map(|call| call["session_id"].as_str().unwrap_or_default())
        .collect();
    ensure!(
        sessions.len() == 1,
        "the calls went to sessions {sessions:?}"
    );
    for call in &calls {
        let cwd = PathBuf::from(call["cwd"].as_str().unwrap_or_default());
        ensure!(
            cwd == path,
            "a call ran in {cwd:?}, not the worktree {path:?}"
        );
    }
    ensure!(git(&lab, &["show", &format!("{branch}:done.txt")])? == "ok");
    expect_nothing_locked(&lab)?;
    lab.expect_no_live_agents(Duration::from_secs(5))?;
    Ok(lab.local(&format!(
        "same path {}; session resumed; branch {branch} holds the work; nothing locked",
        path.display()
    )))
}

/// A check still running when baton is SIGKILLed (its `sh` does not pass the parent's death
/// on): the next run's recovery stops its whole process group.
pub fn check_outlives_baton(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    let pid_file = lab.root().join("check.pid");
    let check = format!("echo $$ > {}; sleep 300; true", pid_file.display());
    lab.add_task(&["Long check", "--verify", &check])?;
    let run = lab.spawn(lab.command(&["run"]))?;
    lab.wait_for("the check to start", WAIT, |_| Ok(pid_file.exists()))?;
    let read_pid =
        || -> anyhow::Result<i32> { Ok(std::fs::read_to_string(&pid_file)?.trim().parse()?) };
    lab.wait_for("the check's pid", WAIT, |_| Ok(read_pid().is_ok()))?;
    let group = read_pid()?;
    // The check's group is recorded just after it starts (its pid is known only then): kill
    // baton once the record is in, which is what recovery works from.
    lab.wait_for("the check's group to be recorded", WAIT, |lab| {
        Ok(lab.count("SELECT count(*) FROM check_processes")? > 0)
    })?;
    run.signal(libc::SIGKILL)?;
    run.wait(WAIT)?;
    ensure!(
        is_alive(group),
        "the check died with baton: nothing to prove"
    );

    lab.baton(&["recover"])?.expect_code(0)?;
    lab.wait_for("the check's group to stop", WAIT, |_| {
        // SAFETY: signal 0 only checks that a member of the group exists.
        Ok(unsafe { libc::killpg(group, 0) } != 0 || !is_alive(group))
    })?;
    let left = lab.count("SELECT count(*) FROM check_processes")?;
    ensure!(left == 0, "{left} check processes still recorded");
    Ok(String::from(
        "recovery stopped the check's process group; none recorded",
    ))
}

/// A worktree deleted by hand between a failure and its retry is re-created at the same path
/// from the task's branch, and the retry completes there.
pub fn worktree_deleted_by_hand(bins: &Binaries) -> anyhow::Result<String> {
    let lab = repository_lab(bins)?;
    lab.agent_plays(&json!({"steps": [
        {"result": "not yet"},
        {"result": "done", "files": {"done.txt": "ok\n"}},
    ]}))?;
    let id = lab.add_task(&[
        "Deleted by hand",
        "--verify",
        "test -f done.txt",
        "--max-iterations",
        "1",
    ])?;
    lab.baton(&["run"])?.expect_code(1)?;
    let (path, branch) = workspace_of(&lab, id)?;
    std::fs::remove_dir_all(&path).context("deleting the worktree by hand")?;
    lab.baton(&["task", "retry", &id.to_string()])?
        .expect_code(0)?;
    lab.baton(&["run"])?.expect_code(0)?;
    let (again, _) = workspace_of(&lab, id)?;
    ensure!(
        again == path,
        "the worktree moved from {path:?} to {again:?}"
    );
    ensure!(git(&lab, &["show", &format!("{branch}:done.txt")])? == "ok");
    expect_nothing_locked(&lab)?;
    Ok(lab.local(&format!("re-created at {} and completed", path.display())))
}

/// Another git process holds the task worktree's `index.lock` when the work is committed:
/// baton tries again, then blocks the task naming the lock, loses nothing, and a retry after
/// the lock is gone completes.
pub fn repository_locked(bins: &Binaries) -> anyhow::Result<String> {
    let lab = repository_lab(bins)?;
    lab.agent_plays(&json!({"steps": [
        {"result": "not yet"},
        {"result": "done", "files": {"done.txt": "ok\n"}},
    ]}))?;
    let id = lab.add_task(&[
        "Locked",
        "--verify",
        "test -f done.txt",
        "--max-iterations",
        "1",
    ])?;
    lab.baton(&["run"])?.expect_code(1)?;
    let (path, branch) = workspace_of(&lab, id)?;
    let lock = index_lock_of(&path)?;
    std::fs::write(&lock, "")?;
    lab.baton(&["task", "retry", &id.to_string()])?
        .expect_code(0)?;
    lab.baton(&["run"])?.expect_code(1)?;
    let task = lab.json(&["task", "show", &id.to_string()])?;
    ensure!(task["status"] == "blocked", "task: {}", task["status"]);
    let reason = task["failure_reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("index.lock"),
        "the reason names no lock: {reason}"
    );
    ensure!(path.join("done.txt").exists(), "the work was lost");
    std::fs::remove_file(&lock)?;
    lab.baton(&["task", "retry", &id.to_string()])?
        .expect_code(0)?;
    lab.agent_plays(&json!({"steps": [{"result": "still done"}]}))?;
    lab.baton(&["run"])?.expect_code(0)?;
    ensure!(git(&lab, &["show", &format!("{branch}:done.txt")])? == "ok");
    expect_nothing_locked(&lab)?;
    Ok(String::from(
        "blocked naming index.lock with the work kept; completed once the lock was gone",
    ))
}

/// The index lock of a linked worktree lives in its git directory, which `.git` names.
fn index_lock_of(worktree: &Path) -> anyhow::Result<PathBuf> {
    let pointer = std::fs::read_to_string(worktree.join(".git"))?;
    let gitdir = pointer
        .strip_prefix("gitdir: ")
        .context("the worktree's .git is not a pointer")?
        .trim();
    Ok(PathBuf::from(gitdir).join("index.lock"))
}

/// The disk fills while the completed work is committed (object directories cannot be
/// created): the task is blocked with git's message and its work stays in the worktree; once
/// there is room, a retry commits it.
pub fn disk_full_while_committing(bins: &Binaries) -> anyhow::Result<String> {
    let lab = repository_lab(bins)?;
    lab.agent_plays(&json!({"steps": [
        {"result": "done", "files": {"done.txt": "ok\n"}},
    ]}))?;
    // Every loose object now lives in a pack, so that no object directory exists; files in
    // their place make every new object fail to be written, as on a full disk.
    git(&lab, &["repack", "--quiet", "-a", "-d"])?;
    git(&lab, &["prune-packed"])?;
    let objects = lab.work().join(".git/objects");
    let mut blockers = Vec::new();
    for prefix in 0..=255u8 {
        let path = objects.join(format!("{prefix:02x}"));
        if path.is_dir() {
            std::fs::remove_dir(&path)
                .with_context(|| format!("{} is not empty", path.display()))?;
        }
        std::fs::write(&path, "")?;
        blockers.push(path);
    }
    let id = lab.add_task(&["Disk full", "--verify", "test -f done.txt"])?;
    lab.baton(&["run"])?.expect_code(1)?;
    let task = lab.json(&["task", "show", &id.to_string()])?;
    ensure!(task["status"] == "blocked", "task: {}", task["status"]);
    let (path, branch) = workspace_of(&lab, id)?;
    ensure!(path.join("done.txt").exists(), "the work was lost");
    for blocker in blockers {
        std::fs::remove_file(blocker)?;
    }
    lab.baton(&["task", "retry", &id.to_string()])?
        .expect_code(0)?;
    lab.agent_plays(&json!({"steps": [{"result": "still done"}]}))?;
    lab.baton(&["run"])?.expect_code(0)?;
    ensure!(git(&lab, &["show", &format!("{branch}:done.txt")])? == "ok");
    expect_nothing_locked(&lab)?;
    Ok(String::from(
        "blocked with git's message, the work kept in the worktree; committed after the retry",
    ))
}
