//! The fixture: a repository in a temporary directory, with a private `HOME` so that the
//! machine's git configuration never leaks in, and a raw `git` for setting scenes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use git::{CommitId, Git, Repository};
use tempfile::TempDir;

/// A temporary directory holding a private home and a repository `repo` with one commit.
pub struct Fixture {
    _temporary: TempDir,
    /// The temporary directory, symbolic links resolved (git reports resolved paths).
    pub root: PathBuf,
    pub home: PathBuf,
    /// The repository's main worktree.
    pub repo: PathBuf,
    pub git: Git,
}

impl Fixture {
    /// A repository on `main` with one commit of `README.md`.
    pub fn new() -> Fixture {
        let fixture = Fixture::empty();
        fixture.write("README.md", "hello\n");
        fixture.raw(&fixture.repo, &["add", "README.md"]);
        fixture.raw(&fixture.repo, &["commit", "--quiet", "-m", "initial"]);
        fixture
    }

    /// A freshly initialised repository on `main`, without commits.
    pub fn empty() -> Fixture {
        let temporary = tempfile::tempdir().expect("a temporary directory");
        let root = temporary
            .path()
            .canonicalize()
            .expect("the temporary directory resolves");
        let home = root.join("home");
        fs::create_dir_all(home.join(".config")).expect("create the private home");
        // No identity: the tests that need one set it in the repository.
        fs::write(
            home.join(".gitconfig"),
            "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
        )
        .expect("write the private git configuration");
        let repo = root.join("repo");
        let git = Git::new()
            .with_inherited(std::env::vars_os())
            .with_env("HOME", &home)
            .with_env("XDG_CONFIG_HOME", home.join(".config"))
            .with_env("GIT_CONFIG_NOSYSTEM", "1")
            .with_timeout(Duration::from_secs(60));
        let fixture = Fixture {
            _temporary: temporary,
            root,
            home,
            repo,
            git,
        };
        fixture.raw(&fixture.root, &["init", "--quiet", "repo"]);
        fixture
    }

    /// The repository, found from its main worktree.
    pub fn repository(&self) -> Repository {
        Repository::open(&self.git, &self.repo).expect("the fixture's repository opens")
    }

    /// Runs git outside the crate under test, in a cleared environment with a fixed test
    /// identity, and returns its trimmed stdout; panics when git fails.
    pub fn raw(&self, dir: &Path, args: &[&str]) -> String {
        let output = self.raw_command(dir, args).output().expect("run git");
        assert!(
            output.status.success(),
            "git {args:?} in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Like [`Fixture::raw`], returning whether git succeeded.
    pub fn raw_succeeds(&self, dir: &Path, args: &[&str]) -> bool {
        self.raw_command(dir, args)
            .output()
            .expect("run git")
            .status
            .success()
    }

    fn raw_command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command
            .current_dir(dir)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_NAME", "Test Author")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_COMMITTER_NAME", "Test Author")
            .env("GIT_COMMITTER_EMAIL", "author@example.com");
        command
    }

    /// Writes a file under the main worktree.
    pub fn write(&self, relative: &str, contents: &str) {
        write(&self.repo, relative, contents);
    }

    /// Writes and commits a file in a worktree; returns the new commit.
    pub fn commit_file(&self, worktree: &Path, relative: &str, contents: &str) -> CommitId {
        write(worktree, relative, contents);
        self.raw(worktree, &["add", relative]);
        self.raw(
            worktree,
            &["commit", "--quiet", "-m", &format!("change {relative}")],
        );
        self.head(worktree)
    }

    /// Creates a branch from `main` holding one commit that writes `relative`.
    pub fn branch_with(&self, branch: &str, relative: &str, contents: &str) -> CommitId {
        let worktree = self
            .root
            .join(format!("scratch-{}", branch.replace('/', "-")));
        self.raw(
            &self.repo,
            &[
                "worktree",
                "add",
                "--quiet",
                "-b",
                branch,
                worktree.to_str().unwrap(),
                "main",
            ],
        );
        let head = self.commit_file(&worktree, relative, contents);
        self.raw(
            &self.repo,
            &["worktree", "remove", worktree.to_str().unwrap()],
        );
        head
    }

    /// The commit checked out in a worktree.
    pub fn head(&self, worktree: &Path) -> CommitId {
        CommitId::parse(&self.raw(worktree, &["rev-parse", "HEAD"])).expect("a commit id")
    }

    /// Sets the repository's own identity.
    pub fn set_identity(&self, name: &str, email: &str) {
        self.raw(&self.repo, &["config", "user.name", name]);
        self.raw(&self.repo, &["config", "user.email", email]);
    }
}

/// Writes a file, creating its directories.
pub fn write(dir: &Path, relative: &str, contents: &str) {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create the file's directory");
    }
    fs::write(&path, contents).expect("write the file");
}

/// Reads a file as text.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// Set in a child process that runs one half of a two-process test.
pub const CHILD_MARKER: &str = "BATON_GIT_TEST_CHILD";

/// Runs one test of this test binary in a child process, with these variables added to
/// its environment (and [`CHILD_MARKER`]); returns whether it passed. The named test does
/// nothing unless it finds the marker.
pub fn run_child_test(name: &str, variables: &[(&str, &Path)]) -> bool {
    let binary = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(binary)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, "1")
        .envs(
            variables
                .iter()
                .map(|(name, value)| (name, value.as_os_str())),
        )
        .output()
        .expect("run the test binary again");
    if !output.status.success() {
        eprintln!(
            "the child test {name} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.status.success()
}

/// Whether this process is the child half of a two-process test.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

/// A path the parent half passed to the child half.
pub fn passed_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("the parent passes {name}")))
}
