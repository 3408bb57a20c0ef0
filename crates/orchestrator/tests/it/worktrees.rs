//! A git worktree and a branch per task, with real git in temporary repositories (a private
//! HOME, no system config) and the scripted agent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use agent_mock::{MockAgent, Step};
use orchestrator::{DeliverMode, GitWorkspaces, RunConfig, RunReport, Selection};
use session_store::{SessionPolicy, TaskId, TaskStatus, TaskWorkspace};
use tempfile::TempDir;

use crate::support::{Fixture, bounded, composed, quick_config, text};

/// A repository with one commit (`file.txt` = "base"), inside the fixture's directory so that
/// the ledger (beside it) is not in the repository.
pub(crate) struct Repo {
    pub(crate) fixture: Fixture,
    home: TempDir,
    pub(crate) path: PathBuf,
}

impl Repo {
    pub(crate) fn new() -> Repo {
        let fixture = Fixture::new();
        let home = tempfile::tempdir().unwrap();
        let path = fixture.workdir().join("repo");
        std::fs::create_dir(&path).unwrap();
        let repo = Repo {
            fixture,
            home,
            path,
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo.git(&["config", "user.name", "Tester"]);
        repo.git(&["config", "user.email", "tester@example.com"]);
        std::fs::write(repo.path.join("file.txt"), "base\n").unwrap();
        repo.git(&["add", "file.txt"]);
        repo.git(&["commit", "--quiet", "-m", "base"]);
        repo
    }

    /// Runs git in the repository, hermetically, and returns its output.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.path, args)
    }

    /// Runs git in `dir`, hermetically, and returns its output.
    pub(crate) fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .trim_end()
            .to_owned()
    }

    pub(crate) fn workspaces(&self) -> Arc<GitWorkspaces> {
        let git = git::Git::new()
            .with_inherited(std::env::vars_os())
            .with_env("HOME", self.home.path())
            .with_env("GIT_CONFIG_NOSYSTEM", "1");
        Arc::new(GitWorkspaces::new(git))
    }

    pub(crate) fn task(&mut self, title: &str, verify: &[&str]) -> TaskId {
        let mut task = self.fixture.new_task(title);
        task.working_dir = self.path.clone();
        task.verify_commands = verify.iter().map(|command| composed(*command)).collect();
        self.fixture.add(task)
    }

    pub(crate) async fn run(&self, agent: &MockAgent, config: RunConfig) -> RunReport {
        let orchestrator = self
            .fixture
            .orchestrator(Arc::new(agent.clone()), config)
            .with_workspaces(self.workspaces());
        bounded(orchestrator.run(&Selection::all(), agent::CancellationToken::new()))
            .await
            .unwrap()
    }

    pub(crate) fn workspace(&self, task: TaskId) -> TaskWorkspace {
        self.fixture
            .ledger(|store| store.task_workspace(task))
            .unwrap()
            .expect("the task has a workspace")
    }

    fn show(&self, revision: &str) -> String {
        self.git(&["show", revision])
    }

    fn index_bytes(&self) -> Vec<u8> {
        std::fs::read(self.path.join(".git").join("index")).unwrap()
    }
}

/// Runs git in the bare repository `origin`.
fn in_origin(repo: &Repo, origin: &Path, args: &[&str]) -> String {
    let mut all = vec!["--git-dir", origin.to_str().unwrap()];
    all.extend_from_slice(args);
    repo.git(&all)
}

fn branch_of(workspace: &TaskWorkspace) -> &str {
    workspace.branch.as_deref().unwrap()
}

on_both_backends! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn four_tasks_at_once_each_change_the_same_file_on_their_own_branch() {
        let mut repo = Repo::new();
        let head_before = repo.git(&["rev-parse", "HEAD"]);
        let index_before = repo.index_bytes();
        let agent = MockAgent::new();
        let mut tasks = Vec::new();
        for number in 1..=4 {
            let title = format!("change {number}");
            tasks.push(repo.task(&title, &["test -s file.txt"]));
            agent.then_for_prompt(
                format!("Do {title}."),
                Step::succeed("done").write_file("file.txt", format!("change {number}\n")),
            );
        }
        let config = RunConfig {
            concurrency: 4,
            ..quick_config()
        };
        let report = repo.run(&agent, config).await;
        assert!(report.all_completed(), "{report:?}");

        for (number, task) in (1..=4).zip(&tasks) {
            let workspace = repo.workspace(*task);
            let branch = branch_of(&workspace);
            assert_eq!(branch, format!("baton/{task}-change-{number}"));
            assert_eq!(
                repo.show(&format!("{branch}:file.txt")),
                format!("change {number}")
            );
            // Exactly its own change: one commit on top of the base, touching one file.
            assert_eq!(
                repo.git(&["rev-list", "--count", &format!("main..{branch}")]),
                "1"
            );
            assert_eq!(workspace.base_commit.as_deref(), Some(head_before.as_str()));
            assert_eq!(
                workspace.head_commit.as_deref(),
                Some(repo.git(&["rev-parse", branch]).as_str())
            );
            assert_eq!(workspace.files_changed, Some(1));
            assert_eq!(workspace.delivery.as_deref(), Some("branch"));
            let message = repo.git(&["log", "-1", "--format=%B", branch]);
            let sessions = repo.fixture.sessions_of(*task);
            assert_eq!(sessions.len(), 1);
            assert!(
                message.starts_with(&format!("change {number}\n\n")),
                "{message}"
            );
            assert!(
                message.contains(&format!("Baton-Task: {task}")),
                "{message}"
            );
            assert!(
                message.contains(&format!("Baton-Session: {}", sessions[0].id)),
                "{message}"
            );
        }
        // The person's checkout is untouched: HEAD, index and files, and `git status` is clean.
        assert_eq!(repo.git(&["rev-parse", "HEAD"]), head_before);
        assert_eq!(repo.index_bytes(), index_before);
        assert_eq!(
            std::fs::read_to_string(repo.path.join("file.txt")).unwrap(),
            "base\n"
        );
        assert_eq!(repo.git(&["status", "--porcelain"]), "");
        // Nothing is left locked.
        assert!(
            !repo
                .git(&["worktree", "list", "--porcelain"])
                .contains("locked")
        );
    }

    #[tokio::test]
    async fn a_failed_check_resumes_in_the_same_worktree_and_the_branch_carries_the_fix() {
        let mut repo = Repo::new();
        let task = repo.task("fix it", &["test -f fixed.txt"]);
        let agent = MockAgent::with_steps([
            Step::succeed("not yet"),
            Step::succeed("fixed").write_file("fixed.txt", "yes\n"),
        ]);
        let report = repo.run(&agent, quick_config()).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].working_dir, calls[1].working_dir);
        let workspace = repo.workspace(task);
        assert_eq!(
            calls[0].working_dir,
            PathBuf::from(workspace.worktree_path.as_deref().unwrap())
        );
        assert!(
            calls[0]
                .working_dir
                .ends_with(format!(".baton/worktrees/{task}"))
        );
        assert_eq!(calls[0].plan.session_id(), calls[1].plan.session_id());
        let branch = branch_of(&workspace);
        assert_eq!(repo.show(&format!("{branch}:fixed.txt")), "yes");
        let message = repo.git(&["log", "-1", "--format=%B", branch]);
        assert!(message.contains(&format!("Baton-Session: {}", calls[0].plan.session_id())));
    }

    #[tokio::test]
    async fn a_taken_branch_name_is_not_clobbered() {
        let mut repo = Repo::new();
        let task = repo.task("taken", &[]);
        let taken = format!("baton/{task}-taken");
        repo.git(&["branch", &taken]);
        let before = repo.git(&["rev-parse", &taken]);
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("new.txt", "new\n")]);
        let report = repo.run(&agent, quick_config()).await;
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(repo.git(&["rev-parse", &taken]), before);
        let workspace = repo.workspace(task);
        assert_eq!(branch_of(&workspace), format!("{taken}-2"));
        assert_eq!(repo.show(&format!("{taken}-2:new.txt")), "new");
    }

    #[tokio::test]
    async fn dependencies_start_from_their_predecessors_work_and_a_conflict_blocks() {
        let mut repo = Repo::new();
        let first = repo.task("first", &[]);
        let second = repo.task("second", &[]);
        let mut both = repo.fixture.new_task("both");
        both.working_dir = repo.path.clone();
        both.after = vec![first, second];
        let both = repo.fixture.add(both);
        let mut after_first = repo.fixture.new_task("after first");
        after_first.working_dir = repo.path.clone();
        after_first.after = vec![first];
        let after_first = repo.fixture.add(after_first);
        let agent = MockAgent::new();
        agent.then_for_prompt(
            "Do first.",
            Step::succeed("done").write_file("file.txt", "first\n"),
        );
        agent.then_for_prompt(
            "Do second.",
            Step::succeed("done").write_file("file.txt", "second\n"),
        );
        agent.then_for_prompt(
            "Do after first.",
            Step::succeed("done").write_file("later.txt", "later\n"),
        );
        repo.run(&agent, quick_config()).await;

        let later = repo.workspace(after_first);
        assert_eq!(
            repo.show(&format!("{}:file.txt", branch_of(&later))),
            "first"
        );
        assert_eq!(
            repo.show(&format!("{}:later.txt", branch_of(&later))),
            "later"
        );
        let blocked = repo.fixture.get(both);
        assert_eq!(blocked.status, TaskStatus::Blocked);
        let reason = blocked.failure_reason.unwrap_or_default();
        assert!(reason.contains("file.txt"), "{reason}");
        assert!(
            !agent
                .calls()
                .iter()
                .any(|call| call.prompt.contains("Do both."))
        );

        // Retried without the conflict resolved, it is blocked again: its worktree exists now,
        // and it must not go on with only the first predecessor's work.
        repo.fixture
            .ledger(|store| store.retry_task(both, None))
            .unwrap();
        repo.run(&agent, quick_config()).await;
        let again = repo.fixture.get(both);
        assert_eq!(again.status, TaskStatus::Blocked, "{again:?}");
        assert!(
            !agent
                .calls()
                .iter()
                .any(|call| call.prompt.contains("Do both.")),
            "no agent call without the predecessors' work"
        );
    }

    #[tokio::test]
    async fn several_predecessors_are_merged_for_their_successor() {
        let mut repo = Repo::new();
        let first = repo.task("first", &[]);
        let second = repo.task("second", &[]);
        let mut both = repo.fixture.new_task("both");
        both.working_dir = repo.path.clone();
        both.after = vec![first, second];
        let both = repo.fixture.add(both);
        let agent = MockAgent::new();
        agent.then_for_prompt(
            "Do first.",
            Step::succeed("done").write_file("a.txt", "a\n"),
        );
        agent.then_for_prompt(
            "Do second.",
            Step::succeed("done").write_file("b.txt", "b\n"),
        );
        let report = repo.run(&agent, quick_config()).await;
        assert!(report.all_completed(), "{report:?}");
        let branch = branch_of(&repo.workspace(both)).to_owned();
        assert_eq!(repo.show(&format!("{branch}:a.txt")), "a");
        assert_eq!(repo.show(&format!("{branch}:b.txt")), "b");
    }

    #[tokio::test]
    async fn the_milestone_policy_shares_one_worktree_and_branch() {
        let mut repo = Repo::new();
        let milestone = repo.fixture.milestone("m", Some(SessionPolicy::Milestone));
        let mut ids = Vec::new();
        for title in ["one", "two"] {
            let mut task = repo.fixture.new_task(title);
            task.working_dir = repo.path.clone();
            task.milestone = Some(milestone);
            ids.push(repo.fixture.add(task));
        }
        let agent = MockAgent::new();
        agent.then_for_prompt(
            "Do one.",
            Step::succeed("done").write_file("one.txt", "1\n"),
        );
        agent.then_for_prompt(
            "Do two.",
            Step::succeed("done").write_file("two.txt", "2\n"),
        );
        let report = repo.run(&agent, quick_config()).await;
        assert!(report.all_completed(), "{report:?}");
        let (one, two) = (repo.workspace(ids[0]), repo.workspace(ids[1]));
        assert_eq!(one.worktree_path, two.worktree_path);
        assert_eq!(one.branch, two.branch);
        let branch = branch_of(&two);
        assert_eq!(repo.show(&format!("{branch}:one.txt")), "1");
        assert_eq!(repo.show(&format!("{branch}:two.txt")), "2");
    }

    #[tokio::test]
    async fn deliver_merge_lands_a_clean_merge_and_leaves_a_conflict_alone() {
        let mut repo = Repo::new();
        let clean = repo.task("clean", &[]);
        let agent = MockAgent::new();
        agent.then_for_prompt(
            "Do clean.",
            Step::succeed("done").write_file("clean.txt", "c\n"),
        );
        let config = RunConfig {
            deliver: DeliverMode::Merge,
            ..quick_config()
        };
        let report = repo.run(&agent, config.clone()).await;
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(repo.workspace(clean).delivery.as_deref(), Some("merged"));
        assert_eq!(
            std::fs::read_to_string(repo.path.join("clean.txt")).unwrap(),
            "c\n"
        );
        assert_eq!(repo.git(&["status", "--porcelain"]), "");

        let conflicting = repo.task("conflicting", &[]);
        agent.then_for_prompt(
            "Do conflicting.",
            Step::succeed("done").write_file("file.txt", "theirs\n"),
        );
        // The task starts from the commit before the person's next one (`task add --base`).
        let base = repo.git(&["rev-parse", "HEAD"]);
        repo.fixture
            .ledger(|store| {
                store.set_task_workspace(
                    conflicting,
                    &TaskWorkspace {
                        base_revision: Some(base.clone()),
                        ..TaskWorkspace::default()
                    },
                )
            })
            .unwrap();
        // Meanwhile the person commits a different change to the same file.
        std::fs::write(repo.path.join("file.txt"), "mine\n").unwrap();
        repo.git(&["commit", "--quiet", "-am", "mine"]);
        let head = repo.git(&["rev-parse", "HEAD"]);
        let index = repo.index_bytes();
        let report = repo.run(&agent, config).await;
        assert!(report.all_completed(), "{report:?}");
        let workspace = repo.workspace(conflicting);
        assert_eq!(workspace.base_commit.as_deref(), Some(base.as_str()));
        assert_eq!(workspace.delivery.as_deref(), Some("conflict"));
        assert!(
            workspace
                .delivery_reason
                .as_deref()
                .unwrap_or_default()
                .contains("file.txt"),
            "{workspace:?}"
        );
        assert_eq!(repo.git(&["rev-parse", "HEAD"]), head);
        assert_eq!(repo.index_bytes(), index);
        assert_eq!(
            std::fs::read_to_string(repo.path.join("file.txt")).unwrap(),
            "mine\n"
        );
        assert!(!repo.path.join(".git").join("MERGE_HEAD").exists());
    }

    #[tokio::test]
    async fn deliver_push_pushes_each_branch_and_a_refused_push_keeps_the_work() {
        let mut repo = Repo::new();
        let origin = repo.fixture.workdir().join("origin.git");
        repo.git(&["init", "--quiet", "--bare", origin.to_str().unwrap()]);
        repo.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
        let head = repo.git(&["rev-parse", "HEAD"]);
        let index = repo.index_bytes();
        let agent = MockAgent::new();
        let ids = [repo.task("one", &[]), repo.task("two", &[])];
        agent.then_for_prompt(
            "Do one.",
            Step::succeed("done").write_file("one.txt", "1\n"),
        );
        agent.then_for_prompt(
            "Do two.",
            Step::succeed("done").write_file("two.txt", "2\n"),
        );
        let config = RunConfig {
            deliver: DeliverMode::Push,
            ..quick_config()
        };
        let report = repo.run(&agent, config.clone()).await;
        assert!(report.all_completed(), "{report:?}");
        for id in ids {
            let workspace = repo.workspace(id);
            assert_eq!(
                workspace.delivery.as_deref(),
                Some("pushed"),
                "{workspace:?}"
            );
            let branch = branch_of(&workspace);
            assert_eq!(
                in_origin(
                    &repo,
                    &origin,
                    &["rev-parse", &format!("refs/heads/{branch}")]
                ),
                workspace.head_commit.clone().unwrap()
            );
            let message = in_origin(
                &repo,
                &origin,
                &["log", "-1", "--format=%B", &format!("refs/heads/{branch}")],
            );
            assert!(message.contains(&format!("Baton-Task: {id}")), "{message}");
            assert!(message.contains("Baton-Session: "), "{message}");
        }

        // A hook on the remote refuses the next branch: the task completes, its delivery does
        // not, and its work stays on its branch and in its worktree.
        let hook = origin.join("hooks").join("pre-receive");
        std::fs::write(
            &hook,
            "#!/bin/sh\necho 'frozen for the release' >&2\nexit 1\n",
        )
        .unwrap();
        let mut permissions = std::fs::metadata(&hook).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&hook, permissions).unwrap();
        let refused = repo.task("three", &[]);
        agent.then_for_prompt(
            "Do three.",
            Step::succeed("done").write_file("three.txt", "3\n"),
        );
        let report = repo.run(&agent, config).await;
        assert!(report.all_completed(), "{report:?}");
        let workspace = repo.workspace(refused);
        assert_eq!(
            workspace.delivery.as_deref(),
            Some("rejected"),
            "{workspace:?}"
        );
        let reason = workspace.delivery_reason.clone().unwrap_or_default();
        assert!(reason.contains("origin refused"), "{reason}");
        assert!(reason.contains("frozen for the release"), "{reason}");
        let branch = branch_of(&workspace);
        assert_eq!(repo.show(&format!("{branch}:three.txt")), "3");
        assert!(
            Path::new(workspace.worktree_path.as_deref().unwrap())
                .join("three.txt")
                .exists()
        );
        assert_eq!(
            in_origin(
                &repo,
                &origin,
                &[
                    "for-each-ref",
                    "--format=%(refname)",
                    &format!("refs/heads/{branch}")
                ]
            ),
            ""
        );
        // The person's checkout never moved.
        assert_eq!(repo.git(&["rev-parse", "HEAD"]), head);
        assert_eq!(repo.index_bytes(), index);
        assert_eq!(repo.git(&["status", "--porcelain"]), "");
    }

    #[tokio::test]
    async fn a_worktree_deleted_by_hand_is_repaired_at_the_same_path_on_retry() {
        let mut repo = Repo::new();
        let mut new = repo.fixture.new_task("flaky");
        new.working_dir = repo.path.clone();
        new.max_iterations = 1;
        new.verify_commands = vec![text("test -f ok.txt")];
        let task = repo.fixture.add(new);
        let agent = MockAgent::with_steps([Step::succeed("tried").write_file("work.txt", "w\n")]);
        repo.run(&agent, quick_config()).await;
        assert_eq!(repo.fixture.get(task).status, TaskStatus::Failed);
        let path = PathBuf::from(repo.workspace(task).worktree_path.unwrap());
        // A failed task keeps its worktree, unlocked.
        assert!(path.join("work.txt").exists());
        assert!(
            !repo
                .git(&["worktree", "list", "--porcelain"])
                .contains("locked")
        );

        std::fs::remove_dir_all(&path).unwrap();
        repo.fixture
            .ledger(|store| store.retry_task(task, None))
            .unwrap();
        agent.then(Step::succeed("fixed").write_file("ok.txt", "ok\n"));
        let report = repo.run(&agent, quick_config()).await;
        assert!(report.all_completed(), "{report:?}");
        let workspace = repo.workspace(task);
        assert_eq!(PathBuf::from(workspace.worktree_path.unwrap()), path);
        assert_eq!(
            repo.show(&format!("{}:ok.txt", workspace.branch.unwrap())),
            "ok"
        );
    }

    #[tokio::test]
    async fn a_directory_outside_any_repository_runs_as_it_is() {
        let fixture = Fixture::new();
        let repo = Repo::new();
        let mut task = fixture.new_task("plain");
        task.working_dir = fixture.workdir().to_owned();
        let mut fixture = fixture;
        let id = fixture.add(task);
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("out.txt", "x\n")]);
        let orchestrator = fixture
            .orchestrator(Arc::new(agent.clone()), quick_config())
            .with_workspaces(repo.workspaces());
        let report = bounded(orchestrator.run(&Selection::all(), agent::CancellationToken::new()))
            .await
            .unwrap();
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(
            fixture.ledger(|store| store.task_workspace(id)).unwrap(),
            None
        );
        assert!(fixture.workdir().join("out.txt").exists());
        assert_eq!(agent.calls()[0].working_dir, Path::new(fixture.workdir()));
    }
}
