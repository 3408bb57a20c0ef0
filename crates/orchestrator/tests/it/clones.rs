//! Repositories across hosts, with real git in temporary directories: a bare repository is
//! the remote, a task records it, and a runner whose own clone is elsewhere (another path, a
//! differently named remote, a clone Baton makes itself) works and pushes there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::CancellationToken;
use agent_mock::{MockAgent, Step};
use orchestrator::{DeliverMode, RunConfig, RunReport, Selection};
use session_store::{
    LeaseOwner, MilestoneId, NewTask, SessionPolicy, TaskId, TaskStatus, TaskWorkspace,
};

use crate::support::{Recorder, bounded, quick_config};
use crate::worktrees::Repo;

/// Host A's clone (the fixture's repository, at `repo/`) with a bare remote holding its
/// `main`, the remote's path, and the task that host A adds.
struct Hosts {
    repo: Repo,
    origin: PathBuf,
}

impl Hosts {
    fn new() -> Hosts {
        let repo = Repo::new();
        let origin = repo.fixture.workdir().join("origin.git");
        repo.git(&["init", "--quiet", "--bare", origin.to_str().unwrap()]);
        repo.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
        repo.git(&["push", "--quiet", "origin", "main"]);
        Hosts { repo, origin }
    }

    /// Adds a task in host A's clone as `task add` records it there: the remote, the
    /// repository, the subdirectory, and the commit and branch `HEAD` names now.
    fn add_task(&mut self, title: &str) -> TaskId {
        self.add_task_after(title, &[])
    }

    /// [`Hosts::add_task`], for a task that waits for `after`.
    fn add_task_after(&mut self, title: &str, after: &[TaskId]) -> TaskId {
        let mut new = self.repo.fixture.new_task(title);
        new.after = after.to_vec();
        self.add_new(new)
    }

    /// [`Hosts::add_task`], for a task of `milestone`.
    fn add_to_milestone(&mut self, title: &str, milestone: MilestoneId) -> TaskId {
        let mut new = self.repo.fixture.new_task(title);
        new.milestone = Some(milestone);
        self.add_new(new)
    }

    fn add_new(&mut self, mut new: NewTask) -> TaskId {
        new.working_dir = self.repo.path.clone();
        let task = self.repo.fixture.add(new);
        let record = TaskWorkspace {
            remote_url: Some(self.origin.to_string_lossy().into_owned()),
            repository: Some(self.repo.path.to_string_lossy().into_owned()),
            subdirectory: Some(String::new()),
            base_commit: Some(if self.repo.path.exists() {
                self.repo.git(&["rev-parse", "HEAD"])
            } else {
                self.in_origin(&["rev-parse", "main"])
            }),
            base_branch: Some(String::from("main")),
            ..TaskWorkspace::default()
        };
        self.repo
            .fixture
            .ledger(|store| store.set_task_workspace(task, &record))
            .unwrap();
        task
    }

    /// A clone of the remote at `name` under the fixture, its remote named `remote` and
    /// its URL spelled with a trailing `/`, as another host might have it.
    fn clone_at(&self, name: &str, remote: &str) -> PathBuf {
        let path = self.repo.fixture.workdir().join(name);
        let url = format!("{}/", self.origin.display());
        self.repo.git(&[
            "clone",
            "--quiet",
            "--origin",
            remote,
            &url,
            path.to_str().unwrap(),
        ]);
        path
    }

    /// The ledger names host A as where `task`'s worktree is: as if it ran on another host
    /// (the tests' runners all run on this one).
    fn recorded_on_host_a(&self, task: TaskId) {
        let mut record = self.repo.workspace(task);
        record.host = Some(String::from(HOST_A));
        self.repo
            .fixture
            .ledger(|store| store.set_task_workspace(task, &record))
            .unwrap();
    }

    /// Host A's clone goes away: on the runner's host it is not there.
    fn remove_host_a(&self) {
        std::fs::remove_dir_all(&self.repo.path).unwrap();
    }

    fn in_origin(&self, args: &[&str]) -> String {
        let mut all = vec!["--git-dir", self.origin.to_str().unwrap()];
        all.extend_from_slice(args);
        self.repo.git_in(self.repo.fixture.workdir(), &all)
    }

    /// Runs the ledger's tasks as [`Repo::run`] does, and returns the run's decisions too.
    async fn run_recorded(&self, agent: &MockAgent, config: RunConfig) -> (RunReport, Vec<String>) {
        let recorder = Recorder::default();
        let orchestrator = self
            .repo
            .fixture
            .orchestrator(Arc::new(agent.clone()), config)
            .with_workspaces(self.repo.workspaces())
            .with_events(recorder.sink());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        (report, recorder.decisions())
    }

    fn push_config(&self) -> RunConfig {
        RunConfig {
            deliver: DeliverMode::Push,
            ..quick_config()
        }
    }
}

/// The host the tests' ledgers name as another runner's.
const HOST_A: &str = "host-a.invalid";

fn canonical(path: &Path) -> String {
    path.canonicalize().unwrap().to_string_lossy().into_owned()
}

on_both_backends! {
    #[tokio::test]
    async fn a_task_added_in_one_clone_runs_in_the_runners_clone_and_is_pushed_to_the_remote() {
        let mut hosts = Hosts::new();
        let task = hosts.add_task("change");
        let clone_b = hosts.clone_at("host-b", "upstream");
        hosts.remove_host_a();
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "on b\n")]);
        let config = RunConfig {
            start_dir: Some(clone_b.clone()),
            ..hosts.push_config()
        };

        let report = hosts.repo.run(&agent, config).await;

        assert!(report.all_completed(), "{report:?}");
        let workspace = hosts.repo.workspace(task);
        assert_eq!(
            workspace.repository.as_deref(),
            Some(canonical(&clone_b).as_str())
        );
        let worktree = PathBuf::from(workspace.worktree_path.clone().unwrap());
        assert!(worktree.starts_with(canonical(&clone_b)), "{worktree:?}");
        assert_eq!(
            std::fs::read_to_string(worktree.join("made.txt")).unwrap(),
            "on b\n"
        );
        assert!(workspace.host.is_some(), "{workspace:?}");
        // Pushed to the remote of B's clone with the recorded URL, named `upstream` there,
        // although run.remote is `origin`.
        assert_eq!(
            workspace.delivery.as_deref(),
            Some("pushed"),
            "{workspace:?}"
        );
        let branch = workspace.branch.clone().unwrap();
        assert_eq!(
            hosts.in_origin(&["rev-parse", &format!("refs/heads/{branch}")]),
            workspace.head_commit.clone().unwrap()
        );
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:made.txt")]),
            "on b"
        );
    }

    #[tokio::test]
    async fn with_no_clone_on_the_host_baton_clones_the_remote_into_run_clones() {
        let mut hosts = Hosts::new();
        let task = hosts.add_task("change");
        let others = [hosts.add_task("other"), hosts.add_task("third")];
        hosts.remove_host_a();
        let clones = hosts.repo.fixture.workdir().join("clones");
        let agent = MockAgent::new();
        for title in ["change", "other", "third"] {
            agent.then_for_prompt(
                format!("Do {title}."),
                Step::succeed("done").write_file("made.txt", "cloned\n"),
            );
        }
        let config = RunConfig {
            clones: Some(clones.clone()),
            start_dir: Some(hosts.repo.fixture.workdir().to_owned()),
            concurrency: 2,
            ..hosts.push_config()
        };

        let report = hosts.repo.run(&agent, config).await;

        assert!(report.all_completed(), "{report:?}");
        // One clone for the remote, which every task of it uses, made once.
        assert_eq!(std::fs::read_dir(&clones).unwrap().count(), 1);
        for other in others {
            assert_eq!(
                hosts.repo.workspace(other).repository,
                hosts.repo.workspace(task).repository
            );
        }
        let workspace = hosts.repo.workspace(task);
        let repository = PathBuf::from(workspace.repository.clone().unwrap());
        assert!(
            repository.starts_with(clones.canonicalize().unwrap()),
            "{repository:?}"
        );
        assert_eq!(
            hosts
                .repo
                .git_in(&repository, &["remote", "get-url", "origin"]),
            hosts.origin.to_string_lossy()
        );
        assert_eq!(workspace.delivery.as_deref(), Some("pushed"));
        let branch = workspace.branch.clone().unwrap();
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:made.txt")]),
            "cloned"
        );
    }

    #[tokio::test]
    async fn with_no_clone_and_no_run_clones_the_task_is_blocked_saying_what_to_set() {
        let mut hosts = Hosts::new();
        let task = hosts.add_task("change");
        hosts.remove_host_a();
        let agent = MockAgent::new();

        let report = hosts.repo.run(&agent, hosts.push_config()).await;

        assert!(!report.all_completed(), "{report:?}");
        let blocked = hosts.repo.fixture.get(task);
        assert_eq!(blocked.status, TaskStatus::Blocked, "{blocked:?}");
        let reason = blocked.failure_reason.unwrap_or_default();
        assert!(reason.contains("has no clone on this host"), "{reason}");
        assert!(reason.contains("run.clones"), "{reason}");
        assert!(agent.calls().is_empty());
    }

    #[tokio::test]
    async fn a_base_commit_missing_from_the_runners_clone_is_fetched_from_the_remote() {
        let mut hosts = Hosts::new();
        let clone_b = hosts.clone_at("host-b", "origin");
        // Host A moves on after B cloned, and pushes: B lacks the commit until it fetches.
        std::fs::write(hosts.repo.path.join("file.txt"), "second\n").unwrap();
        hosts.repo.git(&["commit", "--quiet", "-am", "second"]);
        hosts.repo.git(&["push", "--quiet", "origin", "main"]);
        let second = hosts.repo.git(&["rev-parse", "HEAD"]);
        let task = hosts.add_task("change");
        hosts.remove_host_a();
        assert!(
            !hosts
                .repo
                .git_in(&clone_b, &["rev-list", "--all"])
                .contains(&second)
        );
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "b\n")]);
        let config = RunConfig {
            start_dir: Some(clone_b.clone()),
            ..hosts.push_config()
        };

        let report = hosts.repo.run(&agent, config).await;

        assert!(report.all_completed(), "{report:?}");
        let workspace = hosts.repo.workspace(task);
        assert_eq!(workspace.base_commit.as_deref(), Some(second.as_str()));
        let worktree = PathBuf::from(workspace.worktree_path.clone().unwrap());
        assert_eq!(
            std::fs::read_to_string(worktree.join("file.txt")).unwrap(),
            "second\n"
        );
    }

    #[tokio::test]
    async fn a_base_commit_the_remote_lacks_blocks_the_task_saying_what_to_push() {
        let mut hosts = Hosts::new();
        let clone_b = hosts.clone_at("host-b", "origin");
        // Host A commits and adds the task without pushing.
        std::fs::write(hosts.repo.path.join("file.txt"), "unpushed\n").unwrap();
        hosts.repo.git(&["commit", "--quiet", "-am", "unpushed"]);
        let unpushed = hosts.repo.git(&["rev-parse", "HEAD"]);
        let task = hosts.add_task("change");
        hosts.remove_host_a();
        let agent = MockAgent::new();
        let config = RunConfig {
            start_dir: Some(clone_b),
            ..hosts.push_config()
        };

        let report = hosts.repo.run(&agent, config).await;

        assert!(!report.all_completed(), "{report:?}");
        let blocked = hosts.repo.fixture.get(task);
        assert_eq!(blocked.status, TaskStatus::Blocked, "{blocked:?}");
        let reason = blocked.failure_reason.unwrap_or_default();
        assert!(reason.contains(&unpushed), "{reason}");
        assert!(reason.contains("push the commit to the remote"), "{reason}");
        assert!(agent.calls().is_empty());
    }

    #[tokio::test]
    async fn a_task_that_ran_on_another_host_goes_on_from_its_pushed_branch_in_this_hosts_clone() {
        let mut hosts = Hosts::new();
        let task = hosts.add_task("change");
        // Host A ran the task once and pushed its branch, then died: the ledger names A's
        // worktree, on A.
        let branch = format!("baton/{task}-change");
        hosts.repo.git(&["checkout", "--quiet", "-b", &branch]);
        std::fs::write(hosts.repo.path.join("earlier.txt"), "from a\n").unwrap();
        hosts.repo.git(&["add", "earlier.txt"]);
        hosts.repo.git(&["commit", "--quiet", "-m", "earlier work"]);
        hosts.repo.git(&["push", "--quiet", "origin", &branch]);
        let mut record = hosts.repo.workspace(task);
        record.isolation = Some(String::from("worktree"));
        record.branch = Some(branch.clone());
        record.worktree_path = Some(format!(
            "{}/.baton/worktrees/{task}",
            hosts.repo.path.display()
        ));
        record.host = Some(String::from("host-a.invalid"));
        record.delivery = Some(String::from("pending"));
        hosts
            .repo
            .fixture
            .ledger(|store| store.set_task_workspace(task, &record))
            .unwrap();
        let clone_b = hosts.clone_at("host-b", "origin");
        hosts.remove_host_a();
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "b\n")]);
        let config = RunConfig {
            start_dir: Some(clone_b.clone()),
            ..hosts.push_config()
        };

        let report = hosts.repo.run(&agent, config).await;

        assert!(report.all_completed(), "{report:?}");
        let workspace = hosts.repo.workspace(task);
        let worktree = PathBuf::from(workspace.worktree_path.clone().unwrap());
        assert!(worktree.starts_with(canonical(&clone_b)), "{worktree:?}");
        assert_ne!(workspace.host.as_deref(), Some("host-a.invalid"));
        assert_eq!(
            std::fs::read_to_string(worktree.join("earlier.txt")).unwrap(),
            "from a\n"
        );
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:earlier.txt")]),
            "from a"
        );
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:made.txt")]),
            "b"
        );
    }

    #[tokio::test]
    async fn a_task_on_one_host_starts_from_its_predecessors_branch_pushed_from_another() {
        let mut hosts = Hosts::new();
        let first = hosts.add_task("first");
        let clone_b = hosts.clone_at("host-b", "origin");
        let clone_c = hosts.clone_at("host-c", "origin");
        let agent = MockAgent::new();
        agent.then_for_prompt(
            "Do first.",
            Step::succeed("done").write_file("first.txt", "from c\n"),
        );
        agent.then_for_prompt(
            "Do second.",
            Step::succeed("done").write_file("second.txt", "from b\n"),
        );
        hosts.remove_host_a();
        let push = hosts.push_config();
        let on = |dir: &Path| RunConfig {
            start_dir: Some(dir.to_owned()),
            ..push.clone()
        };
        let report = hosts.repo.run(&agent, on(&clone_c)).await;
        assert!(report.all_completed(), "{report:?}");
        let second = hosts.add_task_after("second", &[first]);

        let report = hosts.repo.run(&agent, on(&clone_b)).await;

        assert!(report.all_completed(), "{report:?}");
        let workspace = hosts.repo.workspace(second);
        let worktree = PathBuf::from(workspace.worktree_path.clone().unwrap());
        assert!(worktree.starts_with(canonical(&clone_b)), "{worktree:?}");
        assert_eq!(
            std::fs::read_to_string(worktree.join("first.txt")).unwrap(),
            "from c\n"
        );
        assert_eq!(
            workspace.base_commit,
            hosts.repo.workspace(first).head_commit
        );
    }

    /// Milestone tasks split over two hosts: the first ran on host A and pushed the
    /// milestone's branch; the second, claimed on host B, goes on with that branch in a
    /// worktree of B's clone, not in A's worktree.
    #[tokio::test]
    async fn a_milestone_task_on_another_host_goes_on_from_the_milestones_pushed_branch() {
        let mut hosts = Hosts::new();
        let milestone = hosts
            .repo
            .fixture
            .milestone("m", Some(SessionPolicy::Milestone));
        let one = hosts.add_to_milestone("one", milestone);
        let agent = milestone_agent(&["one", "two"]);
        let report = hosts.repo.run(&agent, hosts.push_config()).await;
        assert!(report.all_completed(), "{report:?}");
        hosts.recorded_on_host_a(one);
        let clone_b = hosts.clone_at("host-b", "upstream");
        hosts.remove_host_a();
        let two = hosts.add_to_milestone("two", milestone);
        let config = RunConfig {
            start_dir: Some(clone_b.clone()),
            ..hosts.push_config()
        };

        let (report, decisions) = hosts.run_recorded(&agent, config).await;

        assert!(report.all_completed(), "{report:?}");
        let (first, second) = (hosts.repo.workspace(one), hosts.repo.workspace(two));
        assert_eq!(second.branch, first.branch);
        assert_eq!(second.base_commit, first.base_commit);
        assert_eq!(
            second.repository.as_deref(),
            Some(canonical(&clone_b).as_str())
        );
        assert_eq!(second.host, Some(LeaseOwner::current().unwrap().host));
        let worktree = PathBuf::from(second.worktree_path.clone().unwrap());
        assert!(worktree.starts_with(canonical(&clone_b)), "{worktree:?}");
        assert_eq!(read(&worktree, "one.txt"), "one\n");
        assert_eq!(read(&worktree, "two.txt"), "two\n");
        let branch = second.branch.clone().unwrap();
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:one.txt")]),
            "one"
        );
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:two.txt")]),
            "two"
        );
        assert!(
            decisions.iter().any(|decision| decision.contains(HOST_A)
                && decision.contains("the milestone's branch as the remote has it")),
            "{decisions:#?}"
        );
    }

    /// As above, but host A did not push: host B's task starts the milestone's branch
    /// afresh from its base commit, and says that A's work is not here.
    #[tokio::test]
    async fn a_milestone_task_on_another_host_starts_from_the_base_when_nothing_was_pushed() {
        let mut hosts = Hosts::new();
        let milestone = hosts
            .repo
            .fixture
            .milestone("m", Some(SessionPolicy::Milestone));
        let one = hosts.add_to_milestone("one", milestone);
        let agent = milestone_agent(&["one", "two"]);
        let report = hosts.repo.run(&agent, quick_config()).await;
        assert!(report.all_completed(), "{report:?}");
        hosts.recorded_on_host_a(one);
        let clone_b = hosts.clone_at("host-b", "origin");
        hosts.remove_host_a();
        let two = hosts.add_to_milestone("two", milestone);
        let config = RunConfig {
            start_dir: Some(clone_b.clone()),
            ..hosts.push_config()
        };

        let (report, decisions) = hosts.run_recorded(&agent, config).await;

        assert!(report.all_completed(), "{report:?}");
        let (first, second) = (hosts.repo.workspace(one), hosts.repo.workspace(two));
        assert_eq!(second.branch, first.branch);
        let worktree = PathBuf::from(second.worktree_path.clone().unwrap());
        assert!(worktree.starts_with(canonical(&clone_b)), "{worktree:?}");
        assert!(!worktree.join("one.txt").exists());
        assert_eq!(read(&worktree, "two.txt"), "two\n");
        let base = first.base_commit.clone().unwrap();
        let branch = second.branch.clone().unwrap();
        assert_eq!(
            hosts.in_origin(&["rev-parse", &format!("refs/heads/{branch}~1")]),
            base
        );
        assert!(
            decisions.iter().any(|decision| decision.contains(&base)
                && decision.contains("did not push")),
            "{decisions:#?}"
        );
    }

    /// Two milestone tasks claimed on host B after host A's: the first takes the
    /// milestone's branch into B's clone, the second shares that worktree.
    #[tokio::test]
    async fn milestone_tasks_on_the_second_host_share_one_worktree_there() {
        let mut hosts = Hosts::new();
        let milestone = hosts
            .repo
            .fixture
            .milestone("m", Some(SessionPolicy::Milestone));
        let one = hosts.add_to_milestone("one", milestone);
        let agent = milestone_agent(&["one", "two", "three"]);
        let report = hosts.repo.run(&agent, hosts.push_config()).await;
        assert!(report.all_completed(), "{report:?}");
        hosts.recorded_on_host_a(one);
        let clone_b = hosts.clone_at("host-b", "origin");
        hosts.remove_host_a();
        let two = hosts.add_to_milestone("two", milestone);
        let three = hosts.add_to_milestone("three", milestone);
        let config = RunConfig {
            start_dir: Some(clone_b.clone()),
            ..hosts.push_config()
        };

        let (report, decisions) = hosts.run_recorded(&agent, config).await;

        assert!(report.all_completed(), "{report:?}");
        let (second, third) = (hosts.repo.workspace(two), hosts.repo.workspace(three));
        assert_eq!(third.worktree_path, second.worktree_path);
        assert_eq!(third.branch, hosts.repo.workspace(one).branch);
        let worktree = PathBuf::from(third.worktree_path.clone().unwrap());
        assert!(worktree.starts_with(canonical(&clone_b)), "{worktree:?}");
        for file in ["one", "two", "three"] {
            assert_eq!(read(&worktree, &format!("{file}.txt")), format!("{file}\n"));
        }
        assert!(
            decisions
                .iter()
                .any(|decision| decision.starts_with("isolation worktree: sharing the milestone's worktree")),
            "{decisions:#?}"
        );
    }

    /// Two milestone tasks whose shared worktree is on host A both move to host B: they
    /// end in one worktree of the milestone's branch there, not in two that git would
    /// refuse to check the one branch out in.
    #[tokio::test]
    async fn milestone_tasks_that_move_to_one_host_share_one_worktree_there() {
        let mut hosts = Hosts::new();
        let milestone = hosts
            .repo
            .fixture
            .milestone("m", Some(SessionPolicy::Milestone));
        let tasks = [
            hosts.add_to_milestone("one", milestone),
            hosts.add_to_milestone("two", milestone),
        ];
        // Host A ran both, in its one worktree of the milestone's branch, and pushed it.
        let branch = format!("baton/{}-one", tasks[0]);
        hosts.repo.git(&["checkout", "--quiet", "-b", &branch]);
        std::fs::write(hosts.repo.path.join("earlier.txt"), "from a\n").unwrap();
        hosts.repo.git(&["add", "earlier.txt"]);
        hosts.repo.git(&["commit", "--quiet", "-m", "earlier work"]);
        hosts.repo.git(&["push", "--quiet", "origin", &branch]);
        for task in tasks {
            let mut record = hosts.repo.workspace(task);
            record.isolation = Some(String::from("worktree"));
            record.branch = Some(branch.clone());
            record.worktree_path = Some(format!(
                "{}/.baton/worktrees/{}",
                hosts.repo.path.display(),
                tasks[0]
            ));
            record.host = Some(String::from(HOST_A));
            record.delivery = Some(String::from("pending"));
            hosts
                .repo
                .fixture
                .ledger(|store| store.set_task_workspace(task, &record))
                .unwrap();
        }
        let clone_b = hosts.clone_at("host-b", "origin");
        hosts.remove_host_a();
        let agent = milestone_agent(&["one", "two"]);
        let config = RunConfig {
            start_dir: Some(clone_b.clone()),
            ..hosts.push_config()
        };

        let (report, decisions) = hosts.run_recorded(&agent, config).await;

        assert!(report.all_completed(), "{report:?}");
        let (first, second) = (hosts.repo.workspace(tasks[0]), hosts.repo.workspace(tasks[1]));
        assert_eq!(first.worktree_path, second.worktree_path);
        assert_eq!(second.branch.as_deref(), Some(branch.as_str()));
        assert_eq!(second.host, Some(LeaseOwner::current().unwrap().host));
        let worktree = PathBuf::from(second.worktree_path.clone().unwrap());
        assert!(worktree.starts_with(canonical(&clone_b)), "{worktree:?}");
        for file in ["earlier", "one", "two"] {
            assert!(worktree.join(format!("{file}.txt")).exists(), "{file}");
        }
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:two.txt")]),
            "two"
        );
        assert!(
            decisions.iter().any(|decision| decision.contains(&format!(
                "task {} moves to this host's clone",
                tasks[1]
            )) && decision
                .contains("the worktree the branch has here already")),
            "{decisions:#?}"
        );
    }

    /// The milestone's worktree is recorded on another host, yet its branch has a worktree
    /// in this host's clone (the host was renamed, or the branch was worked on here before):
    /// the task works there, rather than being refused by git a second worktree of it.
    #[tokio::test]
    async fn a_milestone_branch_with_a_worktree_in_this_hosts_clone_is_worked_on_there() {
        let mut hosts = Hosts::new();
        let milestone = hosts
            .repo
            .fixture
            .milestone("m", Some(SessionPolicy::Milestone));
        let one = hosts.add_to_milestone("one", milestone);
        let agent = milestone_agent(&["one", "two"]);
        let report = hosts.repo.run(&agent, hosts.push_config()).await;
        assert!(report.all_completed(), "{report:?}");
        hosts.recorded_on_host_a(one);
        let two = hosts.add_to_milestone("two", milestone);

        let (report, decisions) = hosts.run_recorded(&agent, hosts.push_config()).await;

        assert!(report.all_completed(), "{report:?}");
        let (first, second) = (hosts.repo.workspace(one), hosts.repo.workspace(two));
        assert_eq!(second.worktree_path, first.worktree_path);
        assert_eq!(second.branch, first.branch);
        assert_eq!(second.host, Some(LeaseOwner::current().unwrap().host));
        let worktree = PathBuf::from(second.worktree_path.clone().unwrap());
        assert_eq!(read(&worktree, "one.txt"), "one\n");
        assert_eq!(read(&worktree, "two.txt"), "two\n");
        assert!(
            decisions.iter().any(|decision| decision.contains(HOST_A)
                && decision.contains("the worktree the branch has here already")),
            "{decisions:#?}"
        );
    }

    /// On one host, with a remote, milestone tasks share one worktree as they always did.
    #[tokio::test]
    async fn milestone_tasks_on_one_host_with_a_remote_share_its_worktree_as_before() {
        let mut hosts = Hosts::new();
        let milestone = hosts
            .repo
            .fixture
            .milestone("m", Some(SessionPolicy::Milestone));
        let tasks = [
            hosts.add_to_milestone("one", milestone),
            hosts.add_to_milestone("two", milestone),
        ];
        let agent = milestone_agent(&["one", "two"]);

        let (report, decisions) = hosts.run_recorded(&agent, hosts.push_config()).await;

        assert!(report.all_completed(), "{report:?}");
        let (first, second) = (hosts.repo.workspace(tasks[0]), hosts.repo.workspace(tasks[1]));
        assert_eq!(first.worktree_path, second.worktree_path);
        assert_eq!(first.branch, second.branch);
        let worktree = first.worktree_path.clone().unwrap();
        assert!(worktree.starts_with(&canonical(&hosts.repo.path)), "{worktree}");
        assert!(
            decisions.contains(&format!(
                "isolation worktree: sharing the milestone's worktree {worktree} on {}",
                first.branch.clone().unwrap()
            )),
            "{decisions:#?}"
        );
    }

    /// A task ran here, moved to host B, which pushed more onto its branch, and comes
    /// back: it goes on from B's commits, in the worktree it had here, and its push
    /// is accepted.
    #[tokio::test]
    async fn a_task_that_comes_back_goes_on_from_what_the_other_host_pushed() {
        let mut hosts = Hosts::new();
        let task = hosts.add_task("change");
        let (branch, worktree) = hosts.worked_here(task);
        hosts.pushed_from_host_b(&branch, "there.txt");
        let on_b = hosts.repo.fixture.workdir().join("host-b/.baton/worktrees/1");
        hosts.record_worktree(task, &branch, &on_b, HOST_B);
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "a\n")]);

        let (report, decisions) = hosts.run_recorded(&agent, hosts.push_config()).await;

        assert!(report.all_completed(), "{report:?}");
        let workspace = hosts.repo.workspace(task);
        assert_eq!(
            workspace.worktree_path.as_deref(),
            Some(canonical(&worktree).as_str())
        );
        assert_eq!(read(&worktree, "there.txt"), "from b\n");
        assert_eq!(workspace.delivery.as_deref(), Some("pushed"), "{workspace:?}");
        for file in ["here.txt", "there.txt", "made.txt"] {
            assert!(
                !hosts
                    .in_origin(&["show", &format!("refs/heads/{branch}:{file}")])
                    .is_empty(),
                "{file}"
            );
        }
        assert!(
            decisions.iter().any(|decision| decision.contains(&format!(
                "brought branch {branch} up to the remote's origin/{branch}"
            )) && decision.contains("(1 commit another host pushed)")),
            "{decisions:#?}"
        );
    }

    /// The ledger names this host's worktree for a task of a milestone, whose task two went
    /// on on host B and pushed to the branch they share: the task continues in its worktree
    /// here, which catches up with what B pushed first.
    #[tokio::test]
    async fn a_task_continuing_on_its_host_goes_on_from_what_the_other_host_pushed() {
        let mut hosts = Hosts::new();
        let milestone = hosts
            .repo
            .fixture
            .milestone("m", Some(SessionPolicy::Milestone));
        let task = hosts.add_to_milestone("change", milestone);
        let (branch, worktree) = hosts.worked_here(task);
        let two = hosts.add_to_milestone("two", milestone);
        hosts.completed_on_host_b(two, &branch);
        hosts.pushed_from_host_b(&branch, "there.txt");
        let this_host = LeaseOwner::current().unwrap().host;
        hosts.record_worktree(task, &branch, &worktree, &this_host);
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "a\n")]);

        let (report, decisions) = hosts.run_recorded(&agent, hosts.push_config()).await;

        assert!(report.all_completed(), "{report:?}");
        assert_eq!(read(&worktree, "there.txt"), "from b\n");
        let workspace = hosts.repo.workspace(task);
        assert_eq!(workspace.delivery.as_deref(), Some("pushed"), "{workspace:?}");
        assert!(
            decisions.iter().any(|decision| decision.starts_with("isolation worktree: continuing in")),
            "{decisions:#?}"
        );
        assert!(
            decisions
                .iter()
                .any(|decision| decision.contains(&format!("brought branch {branch} up to"))),
            "{decisions:#?}"
        );
    }

    /// The milestone's worktree is here; a task of the milestone on host B pushed more onto
    /// its branch; the milestone's next task here goes on from that, in the shared worktree.
    #[tokio::test]
    async fn a_milestones_shared_worktree_catches_up_with_what_another_host_pushed() {
        let mut hosts = Hosts::new();
        let milestone = hosts
            .repo
            .fixture
            .milestone("m", Some(SessionPolicy::Milestone));
        let one = hosts.add_to_milestone("one", milestone);
        let agent = milestone_agent(&["one", "three"]);
        let report = hosts.repo.run(&agent, hosts.push_config()).await;
        assert!(report.all_completed(), "{report:?}");
        let first = hosts.repo.workspace(one);
        let branch = first.branch.clone().unwrap();
        // The milestone's task two ran on host B, in its clone there, and pushed.
        let two = hosts.add_to_milestone("two", milestone);
        hosts.completed_on_host_b(two, &branch);
        hosts.pushed_from_host_b(&branch, "two.txt");
        let three = hosts.add_to_milestone("three", milestone);

        let (report, decisions) = hosts.run_recorded(&agent, hosts.push_config()).await;

        assert!(report.all_completed(), "{report:?}");
        let third = hosts.repo.workspace(three);
        assert_eq!(third.worktree_path, first.worktree_path);
        let worktree = PathBuf::from(third.worktree_path.clone().unwrap());
        assert_eq!(read(&worktree, "two.txt"), "from b\n");
        assert_eq!(read(&worktree, "three.txt"), "three\n");
        assert_eq!(third.delivery.as_deref(), Some("pushed"), "{third:?}");
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:three.txt")]),
            "three"
        );
        assert!(
            decisions.iter().any(|decision| decision
                .contains(&format!("brought branch {branch} up to the remote's"))
                && decision.contains(&format!("and the worktree {} with it", worktree.display()))),
            "{decisions:#?}"
        );
    }

    /// This host committed on the branch and did not push; host B pushed other commits:
    /// the task goes on from this host's branch, and the run says that the push will be
    /// refused until the two are merged.
    #[tokio::test]
    async fn a_branch_that_diverged_from_the_remotes_is_kept_and_the_refused_push_foretold() {
        let mut hosts = Hosts::new();
        let task = hosts.add_task("change");
        let (branch, worktree) = hosts.worked_here(task);
        hosts.pushed_from_host_b(&branch, "there.txt");
        hosts.commit_in(&worktree, "unpushed.txt", "here only\n");
        // The task went on on host B, and comes back to its worktree here.
        let on_b = hosts.repo.fixture.workdir().join("host-b/.baton/worktrees/1");
        hosts.record_worktree(task, &branch, &on_b, HOST_B);
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "a\n")]);

        let (report, decisions) = hosts.run_recorded(&agent, hosts.push_config()).await;

        assert!(report.all_completed(), "{report:?}");
        assert_eq!(read(&worktree, "unpushed.txt"), "here only\n");
        assert_eq!(read(&worktree, "made.txt"), "a\n");
        assert!(!worktree.join("there.txt").exists());
        let workspace = hosts.repo.workspace(task);
        assert_eq!(workspace.delivery.as_deref(), Some("rejected"), "{workspace:?}");
        assert!(
            decisions.iter().any(|decision| decision
                .contains(&format!("branch {branch} has diverged from the remote's"))
                && decision.contains("has 1 commit another host pushed")
                && decision.contains("push will be refused until the two are merged")),
            "{decisions:#?}"
        );
    }

    /// This host has commits on the branch that it has not pushed, and the remote nothing
    /// new: the branch stays as it is, nothing is said, and the push delivers it all.
    #[tokio::test]
    async fn a_branch_ahead_of_the_remotes_is_kept_as_it_is() {
        let mut hosts = Hosts::new();
        let task = hosts.add_task("change");
        let (branch, worktree) = hosts.worked_here(task);
        hosts.commit_in(&worktree, "unpushed.txt", "here only\n");
        let ahead = hosts.repo.git_in(&worktree, &["rev-parse", "HEAD"]);
        let on_b = hosts.repo.fixture.workdir().join("host-b/.baton/worktrees/1");
        hosts.record_worktree(task, &branch, &on_b, HOST_B);
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "a\n")]);

        let (report, decisions) = hosts.run_recorded(&agent, hosts.push_config()).await;

        assert!(report.all_completed(), "{report:?}");
        let workspace = hosts.repo.workspace(task);
        assert_eq!(workspace.delivery.as_deref(), Some("pushed"), "{workspace:?}");
        assert_eq!(
            hosts.repo.git_in(&worktree, &["rev-parse", "HEAD~1"]),
            ahead
        );
        assert_eq!(
            hosts.in_origin(&["show", &format!("refs/heads/{branch}:unpushed.txt")]),
            "here only"
        );
        assert!(
            !decisions.iter().any(|decision| decision.contains("brought branch")
                || decision.contains("diverged")
                || decision.contains("goes on without")),
            "{decisions:#?}"
        );
    }

    /// The remote is ahead, but the worktree here holds an uncommitted change in the way
    /// of its commits: the worktree is left as it is, and the run says why.
    #[tokio::test]
    async fn a_worktree_whose_changes_are_in_the_way_is_left_and_the_run_says_so() {
        let mut hosts = Hosts::new();
        let task = hosts.add_task("change");
        let (branch, worktree) = hosts.worked_here(task);
        hosts.pushed_from_host_b(&branch, "there.txt");
        std::fs::write(worktree.join("there.txt"), "mine\n").unwrap();
        // The task went on on host B, and comes back to its worktree here.
        let on_b = hosts.repo.fixture.workdir().join("host-b/.baton/worktrees/1");
        hosts.record_worktree(task, &branch, &on_b, HOST_B);
        let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "a\n")]);

        let (report, decisions) = hosts.run_recorded(&agent, hosts.push_config()).await;

        assert!(report.all_completed(), "{report:?}");
        assert_eq!(read(&worktree, "there.txt"), "mine\n");
        assert!(
            decisions.iter().any(|decision| decision.contains("cannot take them")
                && decision.contains("there.txt")
                && decision.contains("push will be refused until they are merged")),
            "{decisions:#?}"
        );
    }
}

/// An agent that writes `<title>.txt` holding the title, for each of `titles`.
fn milestone_agent(titles: &[&str]) -> MockAgent {
    let agent = MockAgent::new();
    for title in titles {
        agent.then_for_prompt(
            format!("Do {title}."),
            Step::succeed("done").write_file(format!("{title}.txt"), format!("{title}\n")),
        );
    }
    agent
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// On SQLite only: it reads the ledger's files for the token (a PostgreSQL ledger has none
/// to read; the store's own tests check what reaches either backend).
#[tokio::test]
async fn credentials_in_the_remote_url_are_not_kept_in_the_ledger() {
    let mut hosts = Hosts::new();
    let secret = "https://x-access-token:ghp_s3cretT0ken@git.example.invalid/org/repo.git";
    hosts.repo.git(&["remote", "set-url", "origin", secret]);
    // Recorded at the first claim, as for a task added before its repository had a remote.
    let task = hosts.repo.task("change", &[]);
    let agent = MockAgent::with_steps([Step::succeed("done").write_file("made.txt", "x\n")]);

    let report = hosts.repo.run(&agent, quick_config()).await;

    assert!(report.all_completed(), "{report:?}");
    let workspace = hosts.repo.workspace(task);
    assert_eq!(
        workspace.remote_url.as_deref(),
        Some("https://git.example.invalid/org/repo.git")
    );
    let db = hosts.repo.fixture.db_path.clone();
    for file in [db.clone(), db.with_extension("db-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("s3cretT0ken"), "{file:?} holds the token");
            assert!(!text.contains("x-access-token"), "{file:?} holds the user");
        }
    }
}

/// The host the tests' ledgers name as the one a task moved to and pushed from.
const HOST_B: &str = "host-b.invalid";

impl Hosts {
    /// As if `task` ran on this host once: its branch, with one commit writing
    /// `here.txt`, checked out in its worktree in this host's clone, and pushed. Returns
    /// the branch and the worktree.
    fn worked_here(&self, task: TaskId) -> (String, PathBuf) {
        let branch = format!("baton/{task}-change");
        let worktree = self
            .repo
            .path
            .join(".baton")
            .join("worktrees")
            .join(task.to_string());
        self.repo.git(&[
            "worktree",
            "add",
            "--quiet",
            "-b",
            &branch,
            worktree.to_str().unwrap(),
            "main",
        ]);
        self.commit_in(&worktree, "here.txt", "from here\n");
        self.repo
            .git_in(&worktree, &["push", "--quiet", "origin", &branch]);
        (branch, worktree)
    }

    /// As if `task` ran on host B on `branch`, in a worktree of B's clone, and completed.
    fn completed_on_host_b(&self, task: TaskId, branch: &str) {
        let on_b = self
            .repo
            .fixture
            .workdir()
            .join(format!("host-b/.baton/worktrees/{task}"));
        self.record_worktree(task, branch, &on_b, HOST_B);
        let host_b = LeaseOwner {
            host: String::from(HOST_B),
            ..LeaseOwner::current().unwrap()
        };
        self.repo.fixture.ledger(|store| {
            store.claim_task(task, &host_b).unwrap();
            store
                .set_task_status(task, TaskStatus::Completed, None)
                .unwrap();
        });
    }

    /// Another host takes `branch` as the remote has it, commits `file`, and pushes.
    fn pushed_from_host_b(&self, branch: &str, file: &str) {
        let clone_b = self.clone_at("host-b", "origin");
        self.repo.git_in(
            &clone_b,
            &[
                "checkout",
                "--quiet",
                "-b",
                branch,
                &format!("origin/{branch}"),
            ],
        );
        self.commit_in(&clone_b, file, "from b\n");
        self.repo
            .git_in(&clone_b, &["push", "--quiet", "origin", branch]);
    }

    fn commit_in(&self, dir: &Path, file: &str, contents: &str) {
        std::fs::write(dir.join(file), contents).unwrap();
        self.repo.git_in(dir, &["add", file]);
        // Another host's clone has no identity of its own.
        self.repo.git_in(
            dir,
            &[
                "-c",
                "user.name=Host",
                "-c",
                "user.email=host@example.invalid",
                "commit",
                "--quiet",
                "-m",
                &format!("write {file}"),
            ],
        );
    }

    /// The ledger names `branch` in `worktree` as `task`'s, last worked on `host`.
    fn record_worktree(&self, task: TaskId, branch: &str, worktree: &Path, host: &str) {
        let mut record = self.repo.workspace(task);
        record.isolation = Some(String::from("worktree"));
        record.branch = Some(branch.to_owned());
        record.worktree_path = Some(worktree.to_string_lossy().into_owned());
        record.host = Some(host.to_owned());
        record.delivery = Some(String::from("pending"));
        self.repo
            .fixture
            .ledger(|store| store.set_task_workspace(task, &record))
            .unwrap();
    }
}
