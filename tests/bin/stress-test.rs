//! `stress-test`: runs scripted tasks through the orchestrator and audits the ledger they leave
//! (see the `tests` library's `stress` module). `cargo xtask stress-test` builds and runs it.
//!
//! Exits 0 when the audit finds nothing, 1 when it finds a violation (each is printed), and 2
//! when the run could not be carried out at all.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pg_testkit::TestDatabase;
use session_store::SessionPolicy;
use tests::stress::{self, AgentKind, Mix, StressConfig};

/// The variable that names the `mock-claude` executable, when `--mock-claude` does not.
const MOCK_CLAUDE_ENV: &str = "BATON_MOCK_CLAUDE";
/// The `mock-claude` this package builds, looked for beside this executable.
const MOCK_CLAUDE_NAME: &str = "contract-mock-claude";

/// Runs scripted tasks through Baton's orchestrator, then audits the ledger.
///
/// The tasks are a seeded mix: verification passing first time, passing after feedback,
/// running out of turns, transient API failures (529 and 429), and tasks that fail once their
/// iterations run out. The audit checks that every agent call belongs to a session committed
/// before the call started, that the session the agent reported is the recorded one, that no
/// session is left open, that no two calls on one session overlap, that every total equals the
/// sum of its calls, and that each task ended as its script implies.
#[derive(Parser)]
#[command(name = "stress-test")]
struct Args {
    /// How many tasks to run.
    #[arg(long, default_value_t = 10)]
    tasks: usize,
    /// How many tasks run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// How many iterations (agent call, then verification) each task may take.
    #[arg(long, default_value_t = 3)]
    iterations: u32,
    /// The agent: mock (in process), mock-claude (subprocesses), or claude (the real CLI
    /// against a loopback Messages-API stand-in).
    #[arg(long, default_value = "mock-claude")]
    agent: AgentKind,
    /// The session policy: task, fresh or milestone (milestones of five tasks).
    #[arg(long, default_value = "task", value_parser = parse_policy)]
    policy: SessionPolicy,
    /// The seed the mix of tasks is dealt from.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `mock-claude` executable. Default: $BATON_MOCK_CLAUDE, else `contract-mock-claude`
    /// beside this program.
    #[arg(long)]
    mock_claude: Option<PathBuf>,
    /// The real `claude` executable. Default: $BATON_TEST_CLAUDE_BIN, else the one
    /// `cargo xtask install-claude` installs.
    #[arg(long)]
    claude: Option<PathBuf>,
    /// Cancel the run (a violation) when it takes longer than this many seconds.
    #[arg(long, default_value_t = 1800)]
    time_limit: u64,
    /// Keep the ledger and print where it is.
    #[arg(long)]
    keep_ledger: bool,
    /// Put the ledger on the PostgreSQL server at this `postgres://…` URL (libpq's syntax,
    /// password included, as `cargo xtask pg` prints it): the run makes a new database there
    /// (the role needs CREATEDB) and drops it afterwards, unless --keep-ledger. Default: a
    /// new SQLite file in the run's temp dir.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

fn parse_policy(word: &str) -> Result<SessionPolicy, String> {
    SessionPolicy::parse(word).ok_or_else(|| {
        format!("`{word}` is not a session policy: expected task, fresh or milestone")
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let program = match args.agent {
        AgentKind::Mock => Ok(None),
        AgentKind::MockClaude => mock_claude(args.mock_claude.clone()).map(Some),
        AgentKind::Claude => match args.claude.clone() {
            Some(path) => Ok(Some(path)),
            None => api_standin::claude_binary().map(Some),
        },
    };
    let program = match program {
        Ok(program) => program,
        Err(reason) => {
            eprintln!("stress-test: error: {reason}");
            return ExitCode::from(2);
        }
    };
    let database = match args.db.as_deref().map(scratch_database).transpose() {
        Ok(database) => database,
        Err(reason) => {
            eprintln!("stress-test: error: {reason}");
            return ExitCode::from(2);
        }
    };
    let config = StressConfig {
        tasks: args.tasks,
        concurrency: args.concurrency,
        iterations: args.iterations,
        agent: args.agent,
        policy: args.policy,
        seed: args.seed,
        mix: Mix::Scripted,
        verify: true,
        program,
        time_limit: Duration::from_secs(args.time_limit),
        keep_ledger: args.keep_ledger,
        ledger: database.as_ref().map(TestDatabase::url),
        agent_env: Default::default(),
        budgets: stress::Budgets::ROOMY,
    };
    let result = stress::run(&config);
    if args.keep_ledger {
        // The database outlives this program: its URL is in the report. (Forgetting the
        // handle skips its drop, which would drop the database.)
        std::mem::forget(database);
    }
    match result {
        Ok(run) => {
            print!("{}", stress::render(&run));
            if run.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("stress-test: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// A new, empty database for the run on the server at `url`, dropped with the value.
fn scratch_database(url: &str) -> Result<TestDatabase, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "--db takes a postgres:// URL, not `{url}` (without --db the ledger is a new \
             SQLite file)"
        ));
    }
    TestDatabase::create_in(url, "stress").map_err(|error| {
        format!(
            "could not make a database for the run on the server at --db: {}",
            pg_testkit::chain(&error)
        )
    })
}

/// The `mock-claude` to run: the flag, the variable, or the one built beside this program.
fn mock_claude(flag: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = flag.or_else(|| std::env::var_os(MOCK_CLAUDE_ENV).map(PathBuf::from)) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("mock-claude not found at {}", path.display()))
        };
    }
    let beside = std::env::current_exe()
        .map_err(|err| format!("cannot find this program's own path: {err}"))?
        .with_file_name(MOCK_CLAUDE_NAME);
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "mock-claude not found at {} (build it with `cargo build -p tests --bin {MOCK_CLAUDE_NAME}` \
             in the same profile, or pass --mock-claude or set {MOCK_CLAUDE_ENV})",
            beside.display()
        ))
    }
}
