//! Every setting Baton reads, defined once: its name, kind (type and allowed range), default,
//! one line of help, and which sources may set it (the file, an environment variable, a flag).
//!
//! Everything else is derived from [`ALL`]: reading the configuration file and the
//! environment, the precedence between them (flag, environment, file, default), the
//! commented file `baton init` writes, `baton doctor`'s listing, and the table in
//! docs/user-guide.md (a test keeps it in step). Adding a key is one entry in the list below;
//! the code that uses it reads it with `settings.get(keys::NAME)`.

mod value;

#[cfg(test)]
mod guide;

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::Duration;

use agent::PermissionMode;
use clap::ValueEnum;
use orchestrator::RunConfig;
use session_store::{Cost, Durability, NewTask, SessionPolicy, StoreOptions};

pub use value::{Kind, Problem, Value, from_os, from_toml, money};

/// One key: everything Baton knows about it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Definition {
    /// `section.key`, as the file groups it and as messages name it.
    pub name: &'static str,
    pub kind: Kind,
    pub default: DefaultValue,
    /// A sentence or two for people, on one line: the template and the guide show it.
    pub help: &'static str,
    pub sources: Sources,
}

/// Which sources may set a key, besides its default. Precedence: flag, environment, file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    /// Whether `.baton/config.toml` may set it.
    pub file: bool,
    /// The environment variable that sets it.
    pub env: Option<&'static str>,
    /// The flags that set it, each with the command that takes it: `run --concurrency`.
    pub flags: &'static [&'static str],
}

/// What a key is when nothing sets it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    Count(u64),
    Share(f64),
    Duration(Duration),
    /// A word of a [`Kind::Word`], or the text of a [`Kind::Text`] or [`Kind::Path`].
    Text(&'static str),
    /// No value: `means` says what happens instead; `example` is a value as the file would
    /// write it, for the commented template (empty for a key the file cannot set).
    Unset {
        means: &'static str,
        example: &'static str,
    },
}

/// A key together with the type its value is read as (`settings.get(keys::RUN_CONCURRENCY)`
/// is a `u32`).
pub struct Key<T> {
    pub definition: Definition,
    read_as: PhantomData<fn() -> T>,
}

/// A type a key's value is read as. `from_value` is `None` only when the key's kind does not
/// make values of the type, which `tests::every_key_reads_as_its_type` rules out.
pub trait KeyType: Sized {
    fn from_value(value: Option<&Value>) -> Option<Self>;
    /// The value to set; `None` sets nothing (an absent flag, or `None` for an optional key).
    fn into_value(self) -> Option<Value>;
}

/// The most tasks a run may run at once, from the configuration or `run --concurrency`.
pub const MAX_CONCURRENCY: u32 = 64;

/// Which agent runs tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentKind {
    /// Claude Code, headless (`claude -p`)
    Claude,
    /// The built-in mock agent: answers at once, changes nothing; for trying baton out
    Mock,
}

/// How a task's work is kept apart from other tasks' and from the person's checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    // Plain comments, not doc comments: documented variants would turn `--help` into its
    // long form. `worktree`: a git worktree and a branch of its own; `none`: the task's
    // working directory as it is.
    Worktree,
    None,
}

/// What a completed task's branch becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deliver {
    /// The branch is the result; the person's checkout is untouched.
    Branch,
    /// Merged into the base branch in the main worktree when that applies cleanly.
    Merge,
    /// Pushed to the branch of the same name on `run.remote`, never forced.
    Push,
}

/// Whether sessions' transcripts are copied into the ledger (`ledger.mirror_transcripts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorTranscripts {
    /// On for a PostgreSQL ledger (several hosts), off for a SQLite file (one host).
    Auto,
    On,
    Off,
}

/// The word list of an enum with `ALL` and a `const fn as_str`, as a `&'static` slice.
macro_rules! words {
    ($all:expr) => {{
        const WORDS: [&str; $all.len()] = {
            let mut words = [""; $all.len()];
            let mut at = 0;
            while at < words.len() {
                words[at] = $all[at].as_str();
                at += 1;
            }
            words
        };
        &WORDS
    }};
}

/// Defines each key as a typed constant and lists them all in [`ALL`], so that none can be
/// left out of the file, the listing or the guide.
macro_rules! keys {
    ($( $(#[$doc:meta])* $name:ident: $type:ty = $definition:expr; )*) => {
        $( $(#[$doc])* pub const $name: Key<$type> = Key::new($definition); )*

        /// Every key, in the order the file, `baton doctor` and the guide show them.
        pub const ALL: &[&Definition] = &[$( &$name.definition ),*];

        /// The keys whose value (from `value_of`) does not read as their type: a kind that
        /// does not make values of the key's type.
        #[cfg(test)]
        fn reads_as_its_type(value_of: &dyn Fn(&Definition) -> Option<Value>) -> Vec<&'static str> {
            let mut wrong = Vec::new();
            $(
                if <$type as KeyType>::from_value(value_of(&$name.definition).as_ref()).is_none() {
                    wrong.push($name.definition.name);
                }
            )*
            wrong
        }
    };
}

keys! {
    AGENT_KIND: AgentKind = Definition {
        name: "agent.kind",
        kind: Kind::Word(words!(AgentKind::ALL)),
        default: DefaultValue::Text("claude"),
        help: "Which agent runs tasks: \"claude\" (Claude Code, headless) or \"mock\" (the built-in mock agent, which answers at once and changes nothing; for trying baton out).",
        sources: Sources::FILE.flags(&["run --agent", "init --agent"]),
    };
    AGENT_CLAUDE_BIN: PathBuf = Definition {
        name: "agent.claude_bin",
        kind: Kind::Path,
        default: DefaultValue::Text("claude"),
        help: "The Claude Code executable: a path, or a name looked up on PATH.",
        sources: Sources::FILE.env("BATON_CLAUDE_BIN"),
    };
    AGENT_MODEL: Option<String> = Definition {
        name: "agent.model",
        kind: Kind::Text,
        default: DefaultValue::Unset {
            means: "Claude Code's own choice",
            example: "\"claude-sonnet-4-5\"",
        },
        help: "The model to use, when not Claude Code's default.",
        sources: Sources::FILE,
    };
    AGENT_PERMISSION_MODE: PermissionMode = Definition {
        name: "agent.permission_mode",
        kind: Kind::Word(words!(PermissionMode::ALL)),
        default: DefaultValue::Text("acceptEdits"),
        help: "How the agent may use tools: \"default\", \"acceptEdits\", \"plan\" or \"bypassPermissions\". \"bypassPermissions\" lets every tool run without asking: set it only if you mean it.",
        sources: Sources::FILE,
    };
    AGENT_ALLOWED_TOOLS: Vec<String> = Definition {
        name: "agent.allowed_tools",
        kind: Kind::List,
        default: DefaultValue::Unset {
            means: "Claude Code's own list",
            example: "[\"Read\", \"Edit\", \"Write\", \"Bash(cargo test:*)\"]",
        },
        help: "Tools the agent may use without asking (Claude Code's --allowedTools). Empty: its default.",
        sources: Sources::FILE,
    };
    AGENT_MAX_TURNS: u32 = Definition {
        name: "agent.max_turns",
        kind: Kind::Count { min: 1, max: u32::MAX as u64, unit: "turns" },
        default: DefaultValue::Count(50),
        help: "The agent's turn budget per call, for tasks that set none.",
        sources: Sources::FILE.flags(&["task add --max-turns"]),
    };
    AGENT_TIMEOUT: Duration = Definition {
        name: "agent.timeout",
        kind: Kind::Duration,
        default: DefaultValue::Duration(agent::DEFAULT_CALL_TIMEOUT),
        help: "The wall-clock limit of one agent call, such as \"90s\", \"30m\" or \"2h\".",
        sources: Sources::FILE,
    };
    AGENT_ENV: BTreeMap<String, String> = Definition {
        name: "agent.env",
        kind: Kind::Variables,
        default: DefaultValue::Unset {
            means: "nothing added",
            example: "RUST_BACKTRACE = \"1\"",
        },
        help: "Variables added to the agent's environment, on top of the environment baton runs in.",
        sources: Sources::FILE,
    };
    RUN_CONCURRENCY: u32 = Definition {
        name: "run.concurrency",
        kind: Kind::Count { min: 1, max: MAX_CONCURRENCY as u64, unit: "tasks run at once" },
        default: DefaultValue::Count(1),
        help: "How many tasks run at once.",
        sources: Sources::FILE.flags(&["run --concurrency"]),
    };
    RUN_SESSION_POLICY: SessionPolicy = Definition {
        name: "run.session_policy",
        kind: Kind::Word(words!(SessionPolicy::ALL)),
        default: DefaultValue::Text("task"),
        help: "Which sessions a task's agent calls go to, for tasks and milestones that set none: \"task\" (one per task), \"fresh\" (one per iteration) or \"milestone\" (one per milestone).",
        sources: Sources::FILE.flags(&["run --session-policy"]),
    };
    RUN_CONTEXT_ROTATION_THRESHOLD: f64 = Definition {
        name: "run.context_rotation_threshold",
        kind: Kind::Share { of: "the context window" },
        default: DefaultValue::Share(0.8),
        help: "The share of the model's context window (above 0, at most 1) past which a session is replaced by a new one that starts from a handoff summary.",
        sources: Sources::FILE,
    };
    RUN_VERIFY_TIMEOUT: Duration = Definition {
        name: "run.verify_timeout",
        kind: Kind::Duration,
        default: DefaultValue::Duration(Duration::from_secs(10 * 60)),
        help: "The wall-clock limit of one verification command.",
        sources: Sources::FILE,
    };
    RUN_ISOLATION: Option<Isolation> = Definition {
        name: "run.isolation",
        kind: Kind::Word(words!(Isolation::ALL)),
        default: DefaultValue::Unset {
            means: "\"worktree\" inside a git repository with a commit, \"none\" otherwise",
            example: "\"worktree\"",
        },
        help: "How a task's work is kept apart, for tasks that set none at `task add`: \"worktree\" (a git worktree and a branch of its own) or \"none\" (its directory as it is).",
        sources: Sources::FILE.flags(&["run --isolation"]),
    };
    RUN_WORKTREE_DIR: Option<PathBuf> = Definition {
        name: "run.worktree_dir",
        kind: Kind::Path,
        default: DefaultValue::Unset {
            means: ".baton/worktrees under the repository's top level",
            example: "\"../worktrees\"",
        },
        help: "Where task worktrees are made, one directory per task id; relative to the workspace. Outside the repository, tools that walk up from a worktree do not find the checkout's files.",
        sources: Sources::FILE,
    };
    RUN_DELIVER: Deliver = Definition {
        name: "run.deliver",
        kind: Kind::Word(words!(Deliver::ALL)),
        default: DefaultValue::Text("branch"),
        help: "What a completed task's branch becomes: \"branch\" (the branch is the result), \"merge\" (merged into its base branch in your checkout when that is clean and merges cleanly) or \"push\" (pushed to the branch of the same name on run.remote, never forced).",
        sources: Sources::FILE,
    };
    RUN_REMOTE: String = Definition {
        name: "run.remote",
        kind: Kind::Text,
        default: DefaultValue::Text("origin"),
        help: "The git remote whose URL `task add` records; deliver = \"push\" pushes to the remote with that URL in each host's clone, or to this one for a task that recorded none.",
        sources: Sources::FILE,
    };
    RUN_CLONES: Option<PathBuf> = Definition {
        name: "run.clones",
        kind: Kind::Path,
        default: DefaultValue::Unset {
            means: "none: a task whose repository has no clone on this host is blocked",
            example: "\"/var/lib/baton/clones\"",
        },
        help: "Where Baton clones a task's repository, from the remote recorded when the task was added, on a host that has no clone of it (neither at the path the task was added at nor where `baton run` was started); relative to the workspace.",
        sources: Sources::FILE,
    };
    RUN_MAX_COST: Option<Cost> = Definition {
        name: "run.max_cost",
        kind: Kind::Money,
        default: DefaultValue::Unset {
            means: "no limit",
            example: "20.00",
        },
        help: "The most a run's agent calls together may spend, in US dollars; once spent, the run starts no new call and exits 1.",
        sources: Sources::FILE.flags(&["run --max-cost"]),
    };
    RUN_MAX_TOKENS: Option<u64> = Definition {
        name: "run.max_tokens",
        kind: Kind::Count { min: 1, max: i64::MAX as u64, unit: "tokens" },
        default: DefaultValue::Unset {
            means: "no limit",
            example: "50000000",
        },
        help: "The most tokens (input, output, cache read and cache creation together) a run's agent calls together may use.",
        sources: Sources::FILE.flags(&["run --max-tokens"]),
    };
    TASKS_MAX_ITERATIONS: u32 = Definition {
        name: "tasks.max_iterations",
        kind: Kind::Count { min: 1, max: u32::MAX as u64, unit: "iterations" },
        default: DefaultValue::Count(NewTask::DEFAULT_MAX_ITERATIONS as u64),
        help: "How many agent-then-verify rounds a new task gets before it fails.",
        sources: Sources::FILE.flags(&["task add --max-iterations"]),
    };
    TASKS_MAX_COST: Option<Cost> = Definition {
        name: "tasks.max_cost",
        kind: Kind::Money,
        default: DefaultValue::Unset {
            means: "no limit",
            example: "5.00",
        },
        help: "The budget of a new task in US dollars, across all its calls, sessions and retries; once spent, the task is blocked until a person raises it.",
        sources: Sources::FILE.flags(&["task add --max-cost"]),
    };
    TASKS_MAX_TOKENS: Option<u64> = Definition {
        name: "tasks.max_tokens",
        kind: Kind::Count { min: 1, max: i64::MAX as u64, unit: "tokens" },
        default: DefaultValue::Unset {
            means: "no limit",
            example: "5000000",
        },
        help: "The token budget of a new task (input, output, cache read and cache creation together), across all its calls.",
        sources: Sources::FILE.flags(&["task add --max-tokens"]),
    };
    API_CLI_RETRIES: u32 = Definition {
        name: "api.cli_retries",
        kind: Kind::Count { min: 0, max: 20, unit: "retries" },
        default: DefaultValue::Count(1),
        help: "How often Claude Code itself retries a failed API request (its CLAUDE_CODE_MAX_RETRIES) before it reports the failure; Baton's own retries, pauses and fail-fast stops handle the rest. Raise it to prefer Claude Code's retries.",
        sources: Sources::FILE,
    };
    API_MAX_OUTAGE: Duration = Definition {
        name: "api.max_outage",
        kind: Kind::Duration,
        default: DefaultValue::Duration(Duration::from_secs(30 * 60)),
        help: "How long a run waits, in all, for a model API that keeps failing (5xx, overloaded, unreachable) before it stops with exit 5 and leaves its tasks pending.",
        sources: Sources::FILE,
    };
    API_OUTAGE_PAUSE: Duration = Definition {
        name: "api.outage_pause",
        kind: Kind::Duration,
        default: DefaultValue::Duration(Duration::from_secs(10)),
        help: "When the model API fails several times in a row across tasks, the whole run pauses this long before one call probes it; each failed probe doubles the pause, up to a minute.",
        sources: Sources::FILE,
    };
    LEDGER_PATH: Option<PathBuf> = Definition {
        name: "ledger.path",
        kind: Kind::Path,
        default: DefaultValue::Unset {
            means: ".baton/baton.db in the workspace",
            example: "",
        },
        help: "The ledger database: a file, or a PostgreSQL URL (`postgres://user@host/db`, libpq's syntax) that runners on several hosts share; `baton init` with it creates the ledger there. Later commands need it too for a file; for a URL, `baton init` writes it into the workspace's `ledger.url`.",
        sources: Sources::NONE.env("BATON_DB").flags(&["--db"]),
    };
    LEDGER_URL: Option<String> = Definition {
        name: "ledger.url",
        kind: Kind::LedgerUrl,
        default: DefaultValue::Unset {
            means: "the workspace's own SQLite file",
            example: "\"postgres://baton@db.internal/baton\"",
        },
        help: "A PostgreSQL ledger that every runner of the workspace shares, in libpq's URL syntax; a password comes from PGPASSWORD or ~/.pgpass, never from this file. --db and BATON_DB, when given, name the ledger instead.",
        sources: Sources::FILE,
    };
    LEDGER_BUSY_TIMEOUT: Duration = Definition {
        name: "ledger.busy_timeout",
        kind: Kind::Duration,
        default: DefaultValue::Duration(StoreOptions::DEFAULT_BUSY_TIMEOUT),
        help: "How long a command waits while another process holds the ledger's write lock; past it, the command stops with exit 4 and changes nothing.",
        sources: Sources::FILE.env("BATON_BUSY_TIMEOUT"),
    };
    LEDGER_DURABILITY: Durability = Definition {
        name: "ledger.durability",
        kind: Kind::Word(words!(Durability::ALL)),
        default: DefaultValue::Text("full"),
        help: "When a commit reaches the disk: \"full\" (before it returns, so a committed call survives a power cut) or \"normal\" (faster; the last commits before a power cut may be lost).",
        sources: Sources::FILE,
    };
    LEDGER_LEASE_TTL: Duration = Definition {
        name: "ledger.lease_ttl",
        kind: Kind::Duration,
        default: DefaultValue::Duration(RunConfig::DEFAULT_LEASE_TTL),
        help: "How long a run's hold on a session (its lease) lasts unless renewed; a running agent call renews it every third of that, and every run says it lives (its heartbeat) as often. A run on another host silent for longer is taken for gone: its tasks and sessions are rescued, and should it come back it writes nothing for them.",
        sources: Sources::FILE.env("BATON_LEASE_TTL"),
    };
    LEDGER_MAX_OUTAGE: Duration = Definition {
        name: "ledger.max_outage",
        kind: Kind::Duration,
        default: DefaultValue::Duration(RunConfig::DEFAULT_LEDGER_OUTAGE),
        help: "How long a run keeps trying a ledger it cannot reach (a PostgreSQL server restarting, a dropped connection), pausing between tries, before it stops with exit 4; what the agent did meanwhile is written once the ledger is back, and never twice.",
        sources: Sources::FILE,
    };
    LEDGER_MIRROR_TRANSCRIPTS: MirrorTranscripts = Definition {
        name: "ledger.mirror_transcripts",
        kind: Kind::Word(words!(MirrorTranscripts::ALL)),
        default: DefaultValue::Text("auto"),
        help: "Whether each session's agent transcript is copied into the ledger after every call, so that a task taken over by a runner on another host resumes the same conversation: \"on\", \"off\", or \"auto\" (on for a PostgreSQL ledger, off for a SQLite file). The copy is verbatim, not redacted: it holds whatever the agent saw.",
        sources: Sources::FILE,
    };
}

impl Sources {
    /// Nothing but the default.
    pub const NONE: Sources = Sources {
        file: false,
        env: None,
        flags: &[],
    };
    /// The configuration file only.
    pub const FILE: Sources = Sources {
        file: true,
        env: None,
        flags: &[],
    };

    pub const fn env(self, variable: &'static str) -> Sources {
        Sources {
            env: Some(variable),
            ..self
        }
    }

    pub const fn flags(self, flags: &'static [&'static str]) -> Sources {
        Sources { flags, ..self }
    }

    /// The flag alone, without its command: `--concurrency`.
    pub fn flag_name(&self) -> Option<&'static str> {
        self.flags
            .first()
            .map(|flag| flag.rsplit(' ').next().unwrap_or(flag))
    }
}

impl Definition {
    /// The table the key belongs to: `run` for `run.concurrency`.
    pub fn section(&self) -> &'static str {
        self.name.split_once('.').map_or("", |(section, _)| section)
    }

    /// The key's name within its table: `concurrency` for `run.concurrency`.
    pub fn short_name(&self) -> &'static str {
        self.name.split_once('.').map_or(self.name, |(_, key)| key)
    }

    /// The value the key has when nothing sets it.
    pub fn default_value(&self) -> Option<Value> {
        match self.default {
            DefaultValue::Count(count) => Some(Value::Count(count)),
            DefaultValue::Share(share) => Some(Value::Share(share)),
            DefaultValue::Duration(duration) => Some(Value::Duration(duration)),
            DefaultValue::Text(text) => match self.kind {
                Kind::Word(words) => words
                    .iter()
                    .find(|word| **word == text)
                    .map(|word| Value::Word(word)),
                Kind::Path => Some(Value::Path(PathBuf::from(text))),
                _ => Some(Value::Text(text.to_owned())),
            },
            DefaultValue::Unset { .. } => None,
        }
    }

    /// What an unset key means, for a person: "Claude Code's own choice".
    pub fn unset_means(&self) -> Option<&'static str> {
        match self.default {
            DefaultValue::Unset { means, .. } => Some(means),
            _ => None,
        }
    }

    /// The default as the file writes it (`50`, `"30m"`), or the example of an unset key.
    pub fn default_in_file(&self) -> String {
        match self.default {
            DefaultValue::Unset { example, .. } => example.to_owned(),
            _ => self
                .default_value()
                .map(|value| value.to_toml())
                .unwrap_or_default(),
        }
    }
}

impl<T> Key<T> {
    pub const fn new(definition: Definition) -> Key<T> {
        Key {
            definition,
            read_as: PhantomData,
        }
    }
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Key<T> {
        *self
    }
}

impl<T> Copy for Key<T> {}

impl AgentKind {
    pub const ALL: [AgentKind; 2] = [AgentKind::Claude, AgentKind::Mock];

    pub const fn as_str(self) -> &'static str {
        match self {
            AgentKind::Claude => "claude",
            AgentKind::Mock => "mock",
        }
    }
}

impl Isolation {
    pub const ALL: [Isolation; 2] = [Isolation::Worktree, Isolation::None];

    pub const fn as_str(self) -> &'static str {
        match self {
            Isolation::Worktree => "worktree",
            Isolation::None => "none",
        }
    }
}

impl Deliver {
    pub const ALL: [Deliver; 3] = [Deliver::Branch, Deliver::Merge, Deliver::Push];

    pub const fn as_str(self) -> &'static str {
        match self {
            Deliver::Branch => "branch",
            Deliver::Merge => "merge",
            Deliver::Push => "push",
        }
    }
}

impl MirrorTranscripts {
    pub const ALL: [MirrorTranscripts; 3] = [
        MirrorTranscripts::Auto,
        MirrorTranscripts::On,
        MirrorTranscripts::Off,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MirrorTranscripts::Auto => "auto",
            MirrorTranscripts::On => "on",
            MirrorTranscripts::Off => "off",
        }
    }

    /// Whether transcripts are mirrored into a ledger that is (or is not) PostgreSQL.
    pub const fn is_on(self, postgres: bool) -> bool {
        match self {
            MirrorTranscripts::Auto => postgres,
            MirrorTranscripts::On => true,
            MirrorTranscripts::Off => false,
        }
    }
}

/// Makes an enum with `ALL` and `as_str` (the words of its [`Kind::Word`]) a [`KeyType`].
macro_rules! word_type {
    ($($type:ty),*) => {$(
        impl KeyType for $type {
            fn from_value(value: Option<&Value>) -> Option<Self> {
                match value? {
                    Value::Word(word) => <$type>::ALL.into_iter().find(|item| item.as_str() == *word),
                    _ => None,
                }
            }

            fn into_value(self) -> Option<Value> {
                Some(Value::Word(self.as_str()))
            }
        }
    )*};
}

word_type!(
    AgentKind,
    Deliver,
    Durability,
    Isolation,
    MirrorTranscripts,
    PermissionMode,
    SessionPolicy
);

impl KeyType for u32 {
    fn from_value(value: Option<&Value>) -> Option<u32> {
        match value? {
            Value::Count(count) => u32::try_from(*count).ok(),
            _ => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::Count(u64::from(self)))
    }
}

impl KeyType for u64 {
    fn from_value(value: Option<&Value>) -> Option<u64> {
        match value? {
            Value::Count(count) => Some(*count),
            _ => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::Count(self))
    }
}

impl KeyType for Cost {
    fn from_value(value: Option<&Value>) -> Option<Cost> {
        match value? {
            Value::Money(cost) => Some(*cost),
            _ => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::Money(self))
    }
}

impl KeyType for f64 {
    fn from_value(value: Option<&Value>) -> Option<f64> {
        match value? {
            Value::Share(share) => Some(*share),
            _ => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::Share(self))
    }
}

impl KeyType for Duration {
    fn from_value(value: Option<&Value>) -> Option<Duration> {
        match value? {
            Value::Duration(duration) => Some(*duration),
            _ => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::Duration(self))
    }
}

impl KeyType for String {
    fn from_value(value: Option<&Value>) -> Option<String> {
        match value? {
            Value::Text(text) => Some(text.clone()),
            _ => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::Text(self))
    }
}

impl KeyType for PathBuf {
    fn from_value(value: Option<&Value>) -> Option<PathBuf> {
        match value? {
            Value::Path(path) => Some(path.clone()),
            _ => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::Path(self))
    }
}

/// A list: unset is empty.
impl KeyType for Vec<String> {
    fn from_value(value: Option<&Value>) -> Option<Vec<String>> {
        match value {
            None => Some(Vec::new()),
            Some(Value::List(items)) => Some(items.clone()),
            Some(_) => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::List(self))
    }
}

/// Variables: unset is none.
impl KeyType for BTreeMap<String, String> {
    fn from_value(value: Option<&Value>) -> Option<BTreeMap<String, String>> {
        match value {
            None => Some(BTreeMap::new()),
            Some(Value::Variables(variables)) => Some(variables.clone()),
            Some(_) => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        Some(Value::Variables(self))
    }
}

/// A key that may be unset.
impl<T: KeyType> KeyType for Option<T> {
    fn from_value(value: Option<&Value>) -> Option<Option<T>> {
        match value {
            None => Some(None),
            Some(value) => T::from_value(Some(value)).map(Some),
        }
    }

    fn into_value(self) -> Option<Value> {
        self.and_then(T::into_value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_unique_and_sectioned() {
        let mut seen = BTreeSet::new();
        for key in ALL {
            assert!(seen.insert(key.name), "{} is defined twice", key.name);
            assert!(
                !key.section().is_empty() && !key.short_name().contains('.'),
                "{} must be `section.key`",
                key.name
            );
            assert!(
                key.help.ends_with('.') && !key.help.contains('\n'),
                "{}: help is one sentence or two, on one line",
                key.name
            );
        }
    }

    #[test]
    fn every_default_is_a_value_of_its_kind_and_range() {
        for key in ALL {
            let Some(value) = key.default_value() else {
                assert!(key.unset_means().is_some(), "{} has no default", key.name);
                continue;
            };
            let reread = value::from_text(key, &value.to_string());
            if !matches!(key.kind, Kind::List | Kind::Variables) {
                assert_eq!(reread, Ok(value), "{}", key.name);
            }
        }
    }

    #[test]
    fn every_key_reads_as_its_type() {
        assert_eq!(
            reads_as_its_type(&|key| key.default_value()),
            Vec::<&str>::new()
        );
        // Every word of every word key, and the largest count of every count key.
        for key in ALL {
            let values: Vec<Value> = match key.kind {
                Kind::Word(words) => words.iter().map(|word| Value::Word(word)).collect(),
                Kind::Count { min, max, .. } => vec![Value::Count(min), Value::Count(max)],
                _ => continue,
            };
            for value in values {
                let wrong = reads_as_its_type(&|other| {
                    if other.name == key.name {
                        Some(value.clone())
                    } else {
                        other.default_value()
                    }
                });
                assert_eq!(wrong, Vec::<&str>::new(), "{value}");
            }
        }
    }

    #[test]
    fn the_help_of_a_word_key_names_every_word() {
        for key in ALL {
            if let Kind::Word(words) = key.kind {
                for word in words {
                    assert!(
                        key.help.contains(&format!("\"{word}\"")),
                        "{}: the help does not explain \"{word}\"",
                        key.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_key_has_a_source_and_every_file_key_a_template_line() {
        for key in ALL {
            let sources = key.sources;
            assert!(
                sources.file || sources.env.is_some() || !sources.flags.is_empty(),
                "{} cannot be set",
                key.name
            );
            if sources.file {
                assert!(!key.default_in_file().is_empty(), "{}", key.name);
            }
            if matches!(key.kind, Kind::Variables) {
                assert!(sources.env.is_none() && sources.flags.is_empty());
            }
        }
    }

    #[test]
    fn the_environment_variables_are_in_the_help() {
        for key in ALL {
            if let Some(variable) = key.sources.env {
                assert!(
                    crate::flags::EXIT_CODES_HELP.contains(&format!("  {variable} ")),
                    "`baton --help` does not mention {variable}"
                );
            }
        }
    }
}
