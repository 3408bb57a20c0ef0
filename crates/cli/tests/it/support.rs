//! Running the real `baton` binary hermetically, and normalising what it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;
use tempfile::TempDir;

/// A private world for `baton`: a temp dir holding `home/` (its HOME) and `work/` (where it
/// runs), and an environment with nothing in it but PATH, HOME and TMPDIR.
pub struct World {
    dir: TempDir,
    /// Variables added on top of the cleared environment.
    vars: Vec<(String, String)>,
}

/// What one run of `baton` did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The world's temp dir, for normalising.
    root: PathBuf,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("baton-cli-test.")
            .tempdir()
            .unwrap();
        for sub in ["home", "work", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        World {
            dir,
            vars: Vec::new(),
        }
    }

    /// A world with a workspace made by `baton init --agent mock` in `work/`.
    pub fn with_workspace() -> World {
        let world = World::new();
        world.baton(&["init", "--agent", "mock"]).success();
        world
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.push((name.to_owned(), value.into()));
    }

    /// Runs `baton ARGS` in `work/`.
    pub fn baton(&self, args: &[&str]) -> Output {
        self.baton_in(&self.work(), args)
    }

    /// Runs `baton ARGS` in `dir`.
    pub fn baton_in(&self, dir: &Path, args: &[&str]) -> Output {
        let output = self
            .command(dir, args)
            .output()
            .expect("the baton binary runs");
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            root: self.root(),
        }
    }

    /// Runs `baton ARGS` in `work/` with `input` on its standard input.
    pub fn baton_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = self
            .command(&self.work(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the baton binary runs");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // baton may stop reading early (and exit): a broken pipe is its business.
        let _ = stdin.write_all(input);
        drop(stdin);
        let output = child.wait_with_output().expect("baton is waited for");
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            root: self.root(),
        }
    }

    /// The bytes of every file of the workspace's ledger: the database, its write-ahead log
    /// and its shared memory, those that exist.
    pub fn ledger_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        ["baton.db", "baton.db-wal", "baton.db-shm"]
            .iter()
            .map(|name| self.work().join(".baton").join(name))
            .filter_map(|path| std::fs::read(&path).ok().map(|bytes| (path, bytes)))
            .collect()
    }

    /// `baton ARGS` in `dir`, ready to run, in the world's environment.
    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.dir.path().join("tmp"))
            .envs(self.vars.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null());
        command
    }

    /// Adds a task and returns its id.
    pub fn add_task(&self, args: &[&str]) -> i64 {
        let mut all = vec!["task", "add"];
        all.extend_from_slice(args);
        let output = self.baton(&all).success();
        output.stdout.trim().parse().unwrap()
    }
}

impl Output {
    /// Asserts exit status 0 and returns self.
    #[track_caller]
    pub fn success(self) -> Output {
        assert_eq!(self.code, 0, "baton failed:\n{}", self.normalised());
        self
    }

    /// Asserts the exit status.
    #[track_caller]
    pub fn code(self, code: i32) -> Output {
        assert_eq!(
            self.code,
            code,
            "unexpected exit status:\n{}",
            self.normalised()
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{}", self.stdout))
    }

    /// Exit status, stdout and stderr, with temp paths, ids, times and durations replaced by
    /// placeholders.
    pub fn normalised(&self) -> String {
        normalise(&self.raw(), &self.root)
    }

    /// [`Output::normalised`], with runs of spaces squeezed: for output whose table padding
    /// depends on the width of durations.
    pub fn squeezed(&self) -> String {
        squeeze(&self.normalised())
    }

    fn raw(&self) -> String {
        let mut text = format!("exit: {}\n", self.code);
        if !self.stdout.is_empty() {
            text.push_str("--- stdout\n");
            text.push_str(&self.stdout);
        }
        if !self.stderr.is_empty() {
            text.push_str("--- stderr\n");
            text.push_str(&self.stderr);
        }
        text
    }
}

static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[UUID]",
        ),
        (r"\b[0-9a-f]{8}\b", "[ID8]"),
        (
            r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{3})?Z",
            "[TIME]",
        ),
        (r"(?m)^\[\d+:\d{2}(:\d{2})?\]", "[CLOCK]"),
        (
            r"\b\d+h \d{2}m\b|\b\d+m \d{2}s\b|\b\d+(\.\d+)?(ms|s)\b",
            "[DUR]",
        ),
        (r"baton \d+\.\d+\.\d+", "baton [VERSION]"),
        (r"process \d+ on \S+", "process [PID] on [HOST]"),
        // The store's schema version moves on without the CLI changing.
        (r"schema \d+", "schema [N]"),
        (r"(?m) +$", ""),
    ]
    .into_iter()
    .map(|(pattern, replacement)| (Regex::new(pattern).unwrap(), replacement))
    .collect()
});

pub fn normalise(text: &str, root: &Path) -> String {
    let mut text = text.to_owned();
    let canonical = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    for path in [canonical, root.to_owned()] {
        text = text.replace(&*path.to_string_lossy(), "[TMP]");
    }
    for (pattern, replacement) in RULES.iter() {
        text = pattern.replace_all(&text, *replacement).into_owned();
    }
    text
}

static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(" {2,}").unwrap());

pub fn squeeze(text: &str) -> String {
    SPACES.replace_all(text, "  ").into_owned()
}

/// Snapshot settings shared by every test: snapshots next to this file.
#[macro_export]
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ prepend_module_to_snapshot => true, omit_expression => true }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}
