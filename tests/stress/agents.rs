//! The agents a stress run can use, each set up to play the script in a hermetic
//! environment, and what each keeps as its own record for the audit.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use agent::Agent;
use agent_claude::{ClaudeAgent, ClaudeConfig};
use agent_mock::MockAgent;
use anyhow::Context;
use api_standin::{Answer, ClaudeEnv, RecordedRequest, Script, StandIn, Usage};
use serde_json::{Value, json};
use session_store::Cost;

use crate::stress::script::{self, Plan, Reply};

/// Which agent a stress run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// agent-mock's in-process `MockAgent`.
    Mock,
    /// `mock-claude` subprocesses through `agent-claude`'s adapter, as with the real CLI.
    MockClaude,
    /// The real Claude Code CLI, answered by the Messages-API stand-in on loopback.
    Claude,
}

impl AgentKind {
    pub const ALL: [AgentKind; 3] = [AgentKind::Mock, AgentKind::MockClaude, AgentKind::Claude];

    pub const fn as_str(self) -> &'static str {
        match self {
            AgentKind::Mock => "mock",
            AgentKind::MockClaude => "mock-claude",
            AgentKind::Claude => "claude",
        }
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgentKind {
    type Err = String;

    fn from_str(word: &str) -> Result<AgentKind, String> {
        AgentKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == word)
            .ok_or_else(|| {
                format!("`{word}` is not an agent: expected mock, mock-claude or claude")
            })
    }
}

/// An agent ready to play a plan, its environment, and where its own record is.
pub struct Rig {
    pub agent: Arc<dyn Agent>,
    pub record: Record,
    /// Each task's working directory, in the plan's order.
    pub work_dirs: Vec<PathBuf>,
    /// Holds the private `HOME` and the working directories until the rig is dropped.
    pub env: ClaudeEnv,
}

/// What an agent keeps of its calls, for the audit.
pub enum Record {
    /// The in-process mock: its calls and transcripts.
    Mock(MockAgent),
    /// A CLI's transcripts under `projects` (its `~/.claude/projects`), and for the real CLI
    /// the stand-in that answered it.
    Cli {
        projects: PathBuf,
        standin: Option<StandIn>,
    },
}

/// The model the pinned Claude Code CLI asks the stand-in for by default, and prices the usage
/// it is served at.
pub const CLI_MODEL: &str = "claude-opus-5-5";

/// What the pinned CLI charges per token of [`CLI_MODEL`], in nano-dollars: input, output,
/// cache reads, cache writes ($4, $20, $0.20 and $5 per million). Read off the CLI's own
/// results: in agent-claude's fixtures of 2.1.328, 100 input, 7 output, 20 cache-read and 10
/// cache-creation tokens cost $0.000594, and 24 input and 10 output tokens $0.000296. A newly
/// pinned CLI may pick another model or price it otherwise; the tests that use these figures
/// check the model first, so that they say which.
const CLI_NANO_USD_PER_TOKEN: [i64; 4] = [4_000, 20_000, 200, 5_000];

/// What the pinned CLI charges for `usage` of [`CLI_MODEL`].
pub fn cli_cost(usage: Usage) -> Cost {
    let tokens = [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_creation_tokens,
    ];
    let nano_usd = tokens
        .into_iter()
        .zip(CLI_NANO_USD_PER_TOKEN)
        .map(|(count, price)| {
            i64::try_from(count)
                .unwrap_or(i64::MAX)
                .saturating_mul(price)
        })
        .fold(0i64, i64::saturating_add);
    Cost::from_nano_usd(nano_usd)
}

/// What the agent of `kind` serves when it plays `reply`, which the call that played it must
/// record: its usage and its cost. The scripted agents report the reply's own figures.
/// Through the real CLI a reply that writes a file takes a second request (the `Write`
/// tool's result comes back and is answered with "Done."), and the CLI prices the usage
/// itself.
pub fn served(kind: AgentKind, reply: Reply) -> (Usage, Cost) {
    match kind {
        AgentKind::Mock | AgentKind::MockClaude => {
            (reply.usage(), Cost::from_usd(reply.cost_usd()))
        }
        AgentKind::Claude => {
            let mut usage = reply.usage();
            if reply.file().is_some() {
                usage += DONE_USAGE;
            }
            (usage, cli_cost(usage))
        }
    }
}

/// The usage of the answer that ends a turn after a tool ran.
const DONE_USAGE: Usage = Usage {
    input_tokens: 300,
    output_tokens: 12,
    cache_read_tokens: 1000,
    cache_creation_tokens: 0,
};

impl Rig {
    /// Sets up `kind` to play `plan`. `program` is the executable for the CLI kinds
    /// (`mock-claude` or the real `claude`), and `extra_env` goes into its environment on
    /// top of the hermetic one; `scratch` holds the scenario file.
    pub fn new(
        kind: AgentKind,
        plan: &Plan,
        program: Option<&Path>,
        extra_env: &BTreeMap<String, String>,
        scratch: &Path,
    ) -> anyhow::Result<Rig> {
        // The base URL is replaced below for the real CLI, once the stand-in runs; mock-claude
        // never calls it, and a closed port keeps it that way.
        let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
        let work_dirs: Vec<PathBuf> = plan
            .tasks
            .iter()
            .map(|task| env.work_dir(&format!("task-{:04}", task.number)))
            .collect();
        let projects = env.home().join(".claude/projects");
        let program = || {
            program
                .map(Path::to_path_buf)
                .with_context(|| format!("the {kind} agent needs the path of its executable"))
        };
        let (agent, record): (Arc<dyn Agent>, Record) = match kind {
            AgentKind::Mock => {
                let agent =
                    MockAgent::scripted(|call, _| script::reply_for(&call.prompt).mock_step());
                (Arc::new(agent.clone()), Record::Mock(agent))
            }
            AgentKind::MockClaude => {
                let scenario = scratch.join("scenario.json");
                script::scenario()
                    .write(&scenario)
                    .context("could not write the mock-claude scenario")?;
                let mut config = cli_config(program()?, &env, extra_env);
                config.env.insert(
                    agent_mock::scenario::SCENARIO_ENV.to_owned(),
                    scenario.to_string_lossy().into_owned(),
                );
                (
                    Arc::new(ClaudeAgent::new(config)),
                    Record::Cli {
                        projects,
                        standin: None,
                    },
                )
            }
            AgentKind::Claude => {
                let dirs: HashMap<String, PathBuf> = plan
                    .tasks
                    .iter()
                    .zip(&work_dirs)
                    .map(|(task, dir)| (task.marker(), dir.clone()))
                    .collect();
                let standin =
                    StandIn::start(Script::from_fn(move |request| answer(request, &dirs)));
                let mut config = cli_config(program()?, &env, extra_env);
                config
                    .env
                    .insert("ANTHROPIC_BASE_URL".to_owned(), standin.base_url());
                (
                    Arc::new(ClaudeAgent::new(config)),
                    Record::Cli {
                        projects,
                        standin: Some(standin),
                    },
                )
            }
        };
        Ok(Rig {
            agent,
            record,
            work_dirs,
            env,
        })
    }
}

fn cli_config(program: PathBuf, env: &ClaudeEnv, extra: &BTreeMap<String, String>) -> ClaudeConfig {
    let mut config = ClaudeConfig::new(program);
    config.env = env.vars();
    config.env.extend(extra.clone());
    config.grace = Duration::from_secs(2);
    config
}

/// The stand-in's answer to one request of the real CLI: the reply the script gives the
/// latest prompt, played as Messages-API answers. A reply that writes a file asks for a
/// `Write` tool use in the task's directory; once the tool's result comes back, it ends the
/// turn.
pub fn answer(request: &RecordedRequest, work_dirs: &HashMap<String, PathBuf>) -> Answer {
    let Some(latest) = latest_user_turn(request) else {
        return Answer::text("Nothing was asked.");
    };
    let reply = script::reply_for(&latest.text);
    if reply == Reply::Unscripted && latest.tool_result {
        return Answer::text("Done.").with_usage(DONE_USAGE);
    }
    match reply {
        Reply::OutOfTurns => {
            Answer::tool_use("Glob", json!({"pattern": "*.nothing"})).with_usage(reply.usage())
        }
        Reply::Overloaded => Answer::overloaded(),
        // Seconds as the API gives them; an API-key login reports no reset time, so Baton
        // backs off instead of waiting for it.
        Reply::RateLimited => Answer::rate_limited(Duration::from_secs(1)),
        Reply::Unscripted => {
            Answer::text("Nothing was scripted for this prompt.").with_usage(reply.usage())
        }
        _ => {
            let dir = request
                .messages()
                .iter()
                .rev()
                .find_map(|message| find_marker(&message.to_string()))
                .and_then(|marker| work_dirs.get(&marker));
            match (reply.file(), dir) {
                (Some((name, contents)), Some(dir)) => {
                    Answer::write_file(dir.join(name), contents).with_usage(reply.usage())
                }
                _ => Answer::text("This conversation names no stress task.")
                    .with_usage(Reply::Unscripted.usage()),
            }
        }
    }
}

/// The latest user message of a request, as the stand-in's scripts read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTurn {
    /// Every text in it: the prompt Baton sent, when this request starts a call.
    pub text: String,
    /// Whether it carries a tool's result: the CLI continues a turn after running a tool.
    pub tool_result: bool,
}

/// The latest user message of `request`, when it has one.
pub fn latest_user_turn(request: &RecordedRequest) -> Option<UserTurn> {
    let latest = request
        .messages()
        .iter()
        .rev()
        .find(|message| message["role"] == "user")?;
    Some(UserTurn {
        text: texts_of(latest),
        tool_result: has_tool_result(latest),
    })
}

/// Every text of a message: its content when it is a string, else its `text` blocks.
fn texts_of(message: &Value) -> String {
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|block| block["type"] == "text")
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn has_tool_result(message: &Value) -> bool {
    message["content"]
        .as_array()
        .is_some_and(|blocks| blocks.iter().any(|block| block["type"] == "tool_result"))
}

/// The last `[stress-task NNNN]` marker in `text`.
fn find_marker(text: &str) -> Option<String> {
    const PREFIX: &str = "[stress-task ";
    let start = text.rfind(PREFIX)?;
    let rest = &text[start..];
    let end = rest.find(']')?;
    Some(rest[..=end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_words_round_trip() {
        for kind in AgentKind::ALL {
            assert_eq!(kind.as_str().parse::<AgentKind>(), Ok(kind));
        }
        assert!("gpt".parse::<AgentKind>().is_err());
    }

    #[test]
    fn cli_prices_match_what_the_cli_charged_in_the_fixtures() {
        let usage = |input, output, cache_read, cache_creation| Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_creation_tokens: cache_creation,
        };
        // success_text, permission_denied, write_tool and max_turns of 2.1.328.
        assert_eq!(cli_cost(usage(100, 7, 20, 10)), Cost::from_usd(0.000594));
        assert_eq!(cli_cost(usage(24, 10, 0, 0)), Cost::from_usd(0.000296));
        assert_eq!(cli_cost(usage(120, 12, 40, 40)), Cost::from_usd(0.000928));
        assert_eq!(cli_cost(usage(80, 12, 2, 4)), Cost::from_usd(0.0005804));
    }

    #[test]
    fn the_latest_marker_names_the_task() {
        let text = "[stress-task 0001] first ... [stress-task 0042] [stress-kind pass] next";
        assert_eq!(find_marker(text).as_deref(), Some("[stress-task 0042]"));
        assert_eq!(find_marker("no marker"), None);
    }
}
