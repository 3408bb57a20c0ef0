//! The command line as clap parses it: low-level arguments, before validation.
//!
//! Nothing here reads files, the environment or the ledger. The settings module turns these
//! arguments, the environment and the configuration file into what the commands use.

use std::path::PathBuf;

use agent::SessionId;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use session_store::{Cost, SessionPolicy, SessionStatus, TaskStatus};

use crate::keys::MAX_CONCURRENCY;
/// Which agent runs tasks: defined with the key it sets, `agent.kind`.
pub use crate::keys::{AgentKind, Isolation};

/// The exit codes, as `--help` shows them. docs/user-guide.md has the same table.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    a run ended with tasks not completed (failed, blocked or left pending)
  2    usage error or invalid input: a flag, a configuration key or value, a state change
  3    not found: a task, milestone, session, file, or the workspace itself
  4    the workspace or its ledger database could not be read or written
  5    the agent is unavailable: the claude program is missing or does not answer
  6    baton itself failed: a bug or an unexpected system error; the message says what
  129  stopped because the terminal closed (SIGHUP); the tasks resume on the next run
  130  interrupted by Ctrl-C (SIGINT); the tasks resume on the next run
  143  stopped by SIGTERM; the tasks resume on the next run

Environment:
  BATON_DB            the ledger database, like --db
  BATON_CLAUDE_BIN    the Claude Code executable, overriding `agent.claude_bin`
  BATON_BUSY_TIMEOUT  how long a command waits while another process writes the ledger
                      (default 30s); past it, the command stops with exit 4
  BATON_LEASE_TTL     how long a run's session lease lasts unless renewed (default 1m);
                      past it, other runs take the runner for gone and rescue its work";

/// Run software tasks through Claude Code and keep an exact ledger of every agent session.
#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    after_help = EXIT_CODES_HELP,
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The ledger database to use instead of .baton/baton.db (or set BATON_DB)
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub db: Option<PathBuf>,

    /// Print JSON instead of tables and text
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a workspace (.baton/ with config.toml and the ledger) in the current directory
    Init(InitArgs),
    /// Add, list, show, cancel and retry tasks
    #[command(subcommand)]
    Task(TaskCommand),
    /// Group tasks into milestones
    #[command(subcommand)]
    Milestone(MilestoneCommand),
    /// Run ready tasks until none is left (with --watch, until stopped)
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// List and show agent sessions
    #[command(subcommand)]
    Session(SessionCommand),
    /// Show tokens and cost, by task, milestone or session
    Usage(UsageArgs),
    /// Abandon sessions whose runner is gone and make their tasks runnable again
    Recover,
    /// List and remove the git worktrees of tasks
    #[command(subcommand, after_help = WORKTREE_AFTER_HELP)]
    Worktree(WorktreeCommand),
    /// Check the agent, the ledger and the configuration
    Doctor(DoctorArgs),
    /// Create a throw-away workspace, run example tasks with the built-in mock agent, show the ledger
    Quickstart(QuickstartArgs),
}

const RUN_AFTER_HELP: &str = "\
Exit status: 0 when every task the run took up completed; 1 when one failed, blocked or was
left pending; 129, 130 or 143 when the run was interrupted (its tasks resume on the next run).
With --json, progress goes to stderr as lines and stdout carries one JSON report.

With --watch the run does not end when nothing is ready: it says it waits for work and looks at
the ledger every second, for tasks added since (`baton task add` from anywhere) and for tasks a
runner that stopped left behind (one on another host once its lease, ledger.lease_ttl, has run
out). Ctrl-C or SIGTERM stops it: its running tasks go back to pending, their sessions
resumable, and it exits 130 or 143; with --json its one report is printed then.";

const WORKTREE_AFTER_HELP: &str = "\
Inside a git repository with a commit, each task runs in a worktree of its own at
.baton/worktrees/<id> (run.worktree_dir), on the branch baton/<id>-<title>. A completed task's
work is committed on its branch; failed, blocked and cancelled tasks keep their worktree, and
`baton task retry` continues there. Baton never deletes work that is not on a branch: `remove`
refuses (exit 2, listing the files) a worktree holding uncommitted changes unless --force.";

#[derive(Debug, Subcommand)]
pub enum WorktreeCommand {
    /// List task worktrees: task, branch, path, state, and whether they hold uncommitted changes
    List,
    /// Remove a task's worktree (its branch stays unless --delete-branch)
    Remove {
        /// The task whose worktree goes
        #[arg(value_parser = task_id_parser(), required_unless_present = "finished", conflicts_with = "finished")]
        id: Option<i64>,
        /// Remove the worktrees of every completed task
        #[arg(long)]
        finished: bool,
        /// Remove a worktree holding uncommitted changes; delete an unmerged branch
        #[arg(long)]
        force: bool,
        /// Delete the task's branch too (refused when not merged into its base, unless --force)
        #[arg(long)]
        delete_branch: bool,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also make one minimal agent call, to prove the credentials work (it costs a fraction
    /// of a cent)
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The agent the workspace runs tasks with
    #[arg(long, value_enum)]
    pub agent: Option<AgentKind>,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Add a task and print its id
    Add(TaskAddArgs),
    /// List tasks
    List(TaskListArgs),
    /// Show a task: its settings, sessions, agent calls and verifications
    Show {
        /// The task's id
        #[arg(value_parser = task_id_parser())]
        id: i64,
    },
    /// Cancel a pending task so that runs leave it alone
    Cancel {
        /// The task's id
        #[arg(value_parser = task_id_parser())]
        id: i64,
    },
    /// Make a failed, blocked or cancelled task pending again; the next run continues it
    Retry {
        /// The task's id
        #[arg(value_parser = task_id_parser())]
        id: i64,
        /// Guidance for the agent, delivered with the next prompt
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
        /// Raise the task's budget to this many US dollars (more than it has spent)
        #[arg(long, value_name = "USD", allow_hyphen_values = true, value_parser = money_parser)]
        max_cost: Option<Cost>,
        /// Raise the task's token budget to this many tokens (more than it has used)
        #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = tokens_parser())]
        max_tokens: Option<u64>,
    },
    /// Print a task's branch diff against its base (through a pager on a terminal)
    Diff {
        /// The task's id
        #[arg(value_parser = task_id_parser())]
        id: i64,
    },
    /// Make a task wait for other tasks to complete first
    Depend {
        /// The task that waits
        #[arg(value_parser = task_id_parser())]
        id: i64,
        /// The tasks it waits for
        #[arg(long, value_name = "ID", required = true, num_args = 1.., value_delimiter = ',', value_parser = task_id_parser())]
        on: Vec<i64>,
    },
}

#[derive(Debug, Args)]
pub struct TaskAddArgs {
    /// A short name for the task
    pub title: String,
    /// What the agent is asked to do (default: the title)
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file (`-` reads standard input)
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// A shell command that must pass for the task to be done; repeat for more, run in order
    #[arg(long = "verify", value_name = "CMD")]
    pub verify: Vec<String>,
    /// The milestone the task belongs to
    #[arg(long, value_name = "NAME")]
    pub milestone: Option<String>,
    /// A task that must complete first; repeat or separate with commas
    #[arg(long, value_name = "ID", value_delimiter = ',', value_parser = task_id_parser())]
    pub after: Vec<i64>,
    /// Agent-then-verify rounds before the task fails (default: tasks.max_iterations, 5)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_iterations: Option<u32>,
    /// The agent's turns per call (default: agent.max_turns, 50). A call that runs out is
    /// resumed with twice the turns, up to 200 a call and never past a budget; `task show`
    /// lists each escalation
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_turns: Option<u32>,
    /// The task's budget in US dollars, across all its calls (default: tasks.max_cost, none)
    #[arg(long, value_name = "USD", allow_hyphen_values = true, value_parser = money_parser)]
    pub max_cost: Option<Cost>,
    /// The task's token budget: input, output and cache tokens together (default:
    /// tasks.max_tokens, none)
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = tokens_parser())]
    pub max_tokens: Option<u64>,
    /// Where the agent and the verification commands run (default: the workspace directory)
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The task's session policy (default: its milestone's, else the run's)
    #[arg(long, value_name = "POLICY", value_parser = policy_parser())]
    pub session_policy: Option<SessionPolicy>,
    /// A git worktree and branch of its own, or its directory as it is (default: run.isolation)
    #[arg(long, value_enum)]
    pub isolation: Option<Isolation>,
    /// The commit the task's branch starts from (default: what HEAD names at its first run)
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
}

#[derive(Debug, Args)]
pub struct TaskListArgs {
    /// Only tasks in this state
    #[arg(long, value_name = "STATUS", value_parser = task_status_parser())]
    pub status: Option<TaskStatus>,
    /// Only tasks of this milestone
    #[arg(long, value_name = "NAME")]
    pub milestone: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MilestoneCommand {
    /// Create a milestone
    Add {
        /// A unique name
        name: String,
        /// What the milestone is about
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// The session policy of its tasks, unless a task sets its own
        #[arg(long, value_name = "POLICY", value_parser = policy_parser())]
        session_policy: Option<SessionPolicy>,
        /// The budget its tasks share, in US dollars
        #[arg(long, value_name = "USD", allow_hyphen_values = true, value_parser = money_parser)]
        max_cost: Option<Cost>,
        /// The token budget its tasks share
        #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = tokens_parser())]
        max_tokens: Option<u64>,
    },
    /// List milestones with their progress and usage
    List,
    /// Show a milestone and its tasks
    Show {
        /// The milestone's name
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run only these tasks (default: every pending task)
    #[arg(value_name = "ID", value_parser = task_id_parser())]
    pub ids: Vec<i64>,
    /// Run only tasks of this milestone
    #[arg(long, value_name = "NAME")]
    pub milestone: Option<String>,
    /// How many tasks run at once (default: run.concurrency, 1)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONCURRENCY)))]
    pub concurrency: Option<u32>,
    /// The session policy of tasks and milestones that set none (default: run.session_policy)
    #[arg(long, value_name = "POLICY", value_parser = policy_parser())]
    pub session_policy: Option<SessionPolicy>,
    /// The agent to run tasks with (default: agent.kind)
    #[arg(long, value_enum)]
    pub agent: Option<AgentKind>,
    /// Isolation of tasks that set none (default: run.isolation; a worktree inside a git repository)
    #[arg(long, value_enum)]
    pub isolation: Option<Isolation>,
    /// The most this run's agent calls may spend together, in US dollars (default:
    /// run.max_cost, none)
    #[arg(long, value_name = "USD", allow_hyphen_values = true, value_parser = money_parser)]
    pub max_cost: Option<Cost>,
    /// The most tokens this run's agent calls may use together (default: run.max_tokens, none)
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = tokens_parser())]
    pub max_tokens: Option<u64>,
    /// Keep running until stopped (Ctrl-C, SIGTERM), taking up tasks as they become ready:
    /// new ones, and those a stopped runner left
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List sessions, oldest first
    List {
        /// Only sessions of this task
        #[arg(long, value_name = "ID", value_parser = task_id_parser())]
        task: Option<i64>,
        /// Only sessions in this state
        #[arg(long, value_name = "STATUS", value_parser = session_status_parser())]
        status: Option<SessionStatus>,
        /// Only sessions of this milestone's tasks
        #[arg(long, value_name = "NAME")]
        milestone: Option<String>,
    },
    /// Show a session and every agent call made in it
    Show {
        /// The session's id (a UUID)
        #[arg(value_name = "UUID")]
        id: SessionId,
    },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// How to group the figures
    #[arg(long, value_enum, default_value_t = UsageBy::Task)]
    pub by: UsageBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsageBy {
    Task,
    Milestone,
    Session,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where to create the example workspace; it must not exist yet (default: a new
    /// directory under the system's temp directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// An amount of dollars above zero, read exactly (see [`crate::keys::money`]).
fn money_parser(text: &str) -> Result<Cost, String> {
    match crate::keys::money(text) {
        Ok(crate::keys::Value::Money(cost)) => Ok(cost),
        Ok(_) => Err(String::from("is not an amount of dollars")),
        Err(problem) => Err(problem.to_string()),
    }
}

fn tokens_parser() -> impl TypedValueParser<Value = u64> {
    clap::value_parser!(u64).range(1..=i64::MAX as u64)
}

fn task_id_parser() -> impl TypedValueParser<Value = i64> {
    clap::value_parser!(i64).range(1..)
}

fn policy_parser() -> impl TypedValueParser<Value = SessionPolicy> {
    PossibleValuesParser::new(SessionPolicy::ALL.map(SessionPolicy::as_str)).map(|word| {
        SessionPolicy::parse(&word).expect("invariant: the parser only accepts policy words")
    })
}

fn task_status_parser() -> impl TypedValueParser<Value = TaskStatus> {
    PossibleValuesParser::new(TaskStatus::ALL.map(TaskStatus::as_str)).map(|word| {
        TaskStatus::parse(&word).expect("invariant: the parser only accepts task states")
    })
}

fn session_status_parser() -> impl TypedValueParser<Value = SessionStatus> {
    PossibleValuesParser::new(SessionStatus::ALL.map(SessionStatus::as_str)).map(|word| {
        SessionStatus::parse(&word).expect("invariant: the parser only accepts session states")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn task_ids_start_at_one_and_lists_take_commas() {
        let cli = Cli::try_parse_from([
            "baton", "task", "add", "t", "--after", "1,2", "--after", "3",
        ])
        .unwrap();
        let Command::Task(TaskCommand::Add(args)) = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!(args.after, [1, 2, 3]);
        assert!(Cli::try_parse_from(["baton", "task", "show", "0"]).is_err());
        assert!(Cli::try_parse_from(["baton", "session", "show", "nope"]).is_err());
    }

    #[test]
    fn prompt_and_prompt_file_exclude_each_other() {
        let parsed = Cli::try_parse_from([
            "baton",
            "task",
            "add",
            "t",
            "--prompt",
            "p",
            "--prompt-file",
            "f",
        ]);
        assert!(parsed.is_err());
    }
}
