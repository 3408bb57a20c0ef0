//! Finding the real `claude` binary for a test, and the hermetic environment to run it in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::server::StandIn;

/// The variable that names the `claude` binary tests run (`cargo xtask test` sets it).
pub const CLAUDE_BIN_ENV: &str = "BATON_TEST_CLAUDE_BIN";

/// When this variable is `1`, a missing `claude` binary fails the test instead of skipping it
/// (CI sets it: there, absence is a failure).
pub const REQUIRE_CLAUDE_ENV: &str = "BATON_REQUIRE_CLAUDE";

/// Where `cargo xtask install-claude` puts the native binary for this platform, or `None` on a
/// platform Claude Code has no native package for.
pub fn default_claude_binary() -> Option<PathBuf> {
    let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-arm64",
        ("macos", "x86_64") => "darwin-x64",
        ("macos", "aarch64") => "darwin-arm64",
        _ => return None,
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2)?;
    Some(
        workspace
            .join(".tools/claude-code/node_modules/@anthropic-ai")
            .join(format!("claude-code-{platform}"))
            .join("claude"),
    )
}

/// The `claude` binary to test with: `$BATON_TEST_CLAUDE_BIN` when set, else
/// [`default_claude_binary`]. `Err` says why there is none, in a sentence for a person.
pub fn claude_binary() -> Result<PathBuf, String> {
    let (path, from) = match std::env::var_os(CLAUDE_BIN_ENV) {
        Some(path) if !path.is_empty() => (PathBuf::from(path), format!("${CLAUDE_BIN_ENV}")),
        _ => match default_claude_binary() {
            Some(path) => (path, String::from("the default install location")),
            None => {
                return Err(format!(
                    "{CLAUDE_BIN_ENV} is not set and Claude Code has no native package for {}/{}",
                    std::env::consts::OS,
                    std::env::consts::ARCH
                ));
            }
        },
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the claude binary named by {from} does not exist: {} \
             (run `cargo xtask install-claude`, or set {CLAUDE_BIN_ENV})",
            path.display()
        ))
    }
}

/// The `claude` binary for the test `test_name`, or `None` after printing why the test skips.
///
/// # Panics
///
/// When the binary is absent and `BATON_REQUIRE_CLAUDE=1`: then absence is a failure.
pub fn require_claude(test_name: &str) -> Option<PathBuf> {
    match claude_binary() {
        Ok(path) => Some(path),
        Err(reason) => {
            if std::env::var(REQUIRE_CLAUDE_ENV).as_deref() == Ok("1") {
                panic!("{test_name}: {reason}; {REQUIRE_CLAUDE_ENV}=1 makes this a failure");
            }
            eprintln!("skipping {test_name}: {reason}");
            None
        }
    }
}

/// A throw-away environment that keeps the real CLI hermetic: its own `HOME` (so its
/// transcripts, settings and caches live in a temp dir), its own `TMPDIR`, and every variable
/// that points it at the stand-in and keeps it off the network.
///
/// The temp dir is removed when the `ClaudeEnv` is dropped.
#[derive(Debug)]
pub struct ClaudeEnv {
    dir: tempfile::TempDir,
    base_url: String,
}

impl ClaudeEnv {
    /// An environment that talks to `standin`.
    pub fn new(standin: &StandIn) -> ClaudeEnv {
        ClaudeEnv::for_base_url(standin.base_url())
    }

    /// An environment that talks to the API at `base_url` (a loopback address in tests).
    ///
    /// # Panics
    ///
    /// When the temp dir cannot be created.
    pub fn for_base_url(base_url: impl Into<String>) -> ClaudeEnv {
        let dir = tempfile::Builder::new()
            .prefix("baton-claude-env.")
            .tempdir()
            .expect("api-standin: cannot create a temp dir for the CLI's environment");
        for sub in ["home/.claude", "tmp", "work"] {
            std::fs::create_dir_all(dir.path().join(sub))
                .expect("api-standin: cannot fill the CLI's temp dir");
        }
        ClaudeEnv {
            dir,
            base_url: base_url.into(),
        }
    }

    /// The private `HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A new, empty working directory `name` inside the environment.
    ///
    /// # Panics
    ///
    /// When it cannot be created.
    pub fn work_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("work").join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        path
    }

    /// Where the CLI keeps the transcript of `session_id` started in `work_dir`:
    /// `$HOME/.claude/projects/<work_dir with every non-alphanumeric byte as '-'>/<id>.jsonl`.
    pub fn transcript_path(&self, work_dir: &Path, session_id: &str) -> PathBuf {
        let project: String = work_dir
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.home()
            .join(".claude/projects")
            .join(project)
            .join(format!("{session_id}.jsonl"))
    }

    /// The variables to add to the CLI's environment.
    ///
    /// - `ANTHROPIC_BASE_URL` (the stand-in) and a dummy `ANTHROPIC_API_KEY`;
    /// - `HOME`, and `CLAUDE_CONFIG_DIR=$HOME/.claude` (so `.claude.json` lives there too),
    ///   plus the XDG directories inside `HOME`;
    /// - `TMPDIR` inside the environment (the CLI puts sockets and probes there);
    /// - `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, `DISABLE_AUTOUPDATER=1`,
    ///   `DISABLE_TELEMETRY=1`, `DISABLE_ERROR_REPORTING=1`: nothing but the API is contacted
    ///   (checked with strace on 2.1.328: its only `connect` is to the base URL);
    /// - `CLAUDE_CODE_MAX_RETRIES=0`: an API error is reported at once instead of after minutes
    ///   of back-off. A test that wants the CLI's retries overrides it.
    pub fn vars(&self) -> BTreeMap<String, String> {
        let home = self.home();
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        BTreeMap::from([
            ("ANTHROPIC_BASE_URL".into(), self.base_url.clone()),
            (
                "ANTHROPIC_API_KEY".into(),
                "sk-ant-api-standin-dummy".into(),
            ),
            ("HOME".into(), path(home.clone())),
            ("CLAUDE_CONFIG_DIR".into(), path(home.join(".claude"))),
            ("XDG_CONFIG_HOME".into(), path(home.join(".config"))),
            ("XDG_CACHE_HOME".into(), path(home.join(".cache"))),
            ("XDG_DATA_HOME".into(), path(home.join(".local/share"))),
            ("XDG_STATE_HOME".into(), path(home.join(".local/state"))),
            ("TMPDIR".into(), path(self.dir.path().join("tmp"))),
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ),
            ("DISABLE_AUTOUPDATER".into(), "1".into()),
            ("DISABLE_TELEMETRY".into(), "1".into()),
            ("DISABLE_ERROR_REPORTING".into(), "1".into()),
            ("CLAUDE_CODE_MAX_RETRIES".into(), "0".into()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_binary_sits_in_the_workspace_tools_dir() {
        if let Some(path) = default_claude_binary() {
            let text = path.to_string_lossy().into_owned();
            assert!(text.contains(".tools/claude-code/node_modules/@anthropic-ai/claude-code-"));
            assert!(text.ends_with("/claude"));
            assert!(
                path.starts_with(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .parent()
                        .unwrap()
                        .parent()
                        .unwrap()
                )
            );
        }
    }

    #[test]
    fn env_points_at_the_base_url_and_a_private_home() {
        let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
        let vars = env.vars();
        assert_eq!(vars["ANTHROPIC_BASE_URL"], "http://127.0.0.1:9");
        assert_eq!(vars["HOME"], env.home().to_string_lossy());
        assert!(env.home().join(".claude").is_dir());
        assert_eq!(vars["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1");
        let work = env.work_dir("w.1");
        assert!(work.is_dir());
        let transcript = env.transcript_path(&work, "abc");
        let project = transcript
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            project.starts_with("-tmp-") || project.starts_with('-'),
            "{project}"
        );
        assert!(project.ends_with("-work-w-1"), "{project}");
        let root = env.dir.path().to_path_buf();
        drop(env);
        assert!(!root.exists(), "the temp dir goes with the env");
    }
}
