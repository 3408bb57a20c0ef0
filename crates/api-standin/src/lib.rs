//! A Messages-API stand-in served on 127.0.0.1 with scripted answers, for tests of the real CLI.
//!
//! The real `claude` CLI talks to whatever `ANTHROPIC_BASE_URL` names. Point it at a
//! [`StandIn`] and it runs end to end with no network: the stand-in streams the answers a
//! [`Script`] gives (text, `tool_use` blocks the CLI really executes, HTTP errors, silence),
//! and records every request it receives so a test can check what the CLI sent.
//!
//! ```no_run
//! use api_standin::{Answer, ClaudeEnv, Script, StandIn};
//!
//! let Some(claude) = api_standin::require_claude("my_test") else { return };
//! let standin = StandIn::start(Script::queue([Answer::text("hello")]));
//! let env = ClaudeEnv::new(&standin);
//! // Run `claude` with `env.vars()` added to its environment, in `env.work_dir("w")`…
//! let requests = standin.message_requests();
//! # let _ = (claude, requests);
//! ```
//!
//! The helpers at the bottom of the list ([`require_claude`], [`ClaudeEnv`]) are shared by
//! every test in the workspace that runs the real CLI.

mod claude;
mod request;
mod rfc3339;
mod script;
mod server;
mod sse;

pub use crate::claude::{
    CLAUDE_BIN_ENV, ClaudeEnv, REQUIRE_CLAUDE_ENV, claude_binary, default_claude_binary,
    require_claude,
};
pub use crate::request::RecordedRequest;
pub use crate::script::{Answer, Block, Script};
pub use crate::server::StandIn;

pub use agent::Usage;
