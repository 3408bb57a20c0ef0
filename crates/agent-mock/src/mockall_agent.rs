//! [`MockAgentTrait`]: a `mockall` mock of the [`Agent`](agent::Agent) trait, for tests whose
//! question is exactly "was the agent called, and with what".
//!
//! Prefer [`MockAgent`](crate::MockAgent) to play a conversation; use this one to set
//! expectations on the calls themselves:
//!
//! ```
//! use agent::{Agent, AgentCall, AgentReply, CancellationToken, EventSink, SessionId, SessionPlan};
//! use agent_mock::MockAgentTrait;
//!
//! let session = SessionId::new_v4();
//! let mut agent = MockAgentTrait::new();
//! agent
//!     .expect_call()
//!     .withf(move |call, _, _| call.plan == SessionPlan::Resume(session))
//!     .times(1)
//!     .returning(move |_, _, _| Ok(AgentReply::empty(session)));
//!
//! let call = AgentCall::new("go on", SessionPlan::Resume(session), "/tmp");
//! let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let reply = runtime
//!     .block_on(agent.call(call, EventSink::none(), CancellationToken::new()))
//!     .unwrap();
//! assert_eq!(reply.session_id, session);
//! ```

use agent::{AgentCall, AgentError, AgentInfo, AgentReply, CancellationToken, EventSink};

mockall::mock! {
    /// A `mockall` mock of [`agent::Agent`]: `MockAgentTrait::new()`, then `expect_call()` and
    /// `expect_probe()`.
    pub AgentTrait {}

    #[async_trait::async_trait]
    impl agent::Agent for AgentTrait {
        async fn call(
            &self,
            call: AgentCall,
            events: EventSink,
            cancel: CancellationToken,
        ) -> Result<AgentReply, AgentError>;

        async fn probe(&self) -> Result<AgentInfo, AgentError>;
    }
}
