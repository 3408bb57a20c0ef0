//! `MockAgentTrait`, the `mockall` mock: for tests whose question is "was the agent called with
//! this session".

use std::path::Path;

use agent::{
    Agent, AgentCall, AgentError, AgentReply, CancellationToken, EventSink, SessionId, SessionPlan,
};
use agent_mock::MockAgentTrait;
use mockall::Sequence;

/// A stand-in for the orchestrator's rule: the first iteration starts the task's session, every
/// later one resumes it with the verification's feedback.
async fn run_iterations(
    agent: &dyn Agent,
    session: SessionId,
    dir: &Path,
    feedback: &[&str],
) -> Result<Vec<AgentReply>, AgentError> {
    let mut replies = Vec::new();
    let first = AgentCall::new("do the task", SessionPlan::Start(session), dir);
    replies.push(
        agent
            .call(first, EventSink::none(), CancellationToken::new())
            .await?,
    );
    for text in feedback {
        let prompt = format!("The verification failed:\n{text}");
        let next = AgentCall::new(prompt, SessionPlan::Resume(session), dir);
        replies.push(
            agent
                .call(next, EventSink::none(), CancellationToken::new())
                .await?,
        );
    }
    Ok(replies)
}

#[tokio::test]
async fn later_iterations_resume_the_session_the_first_one_started() {
    let session = SessionId::new_v4();
    let mut agent = MockAgentTrait::new();
    let mut order = Sequence::new();
    agent
        .expect_call()
        .withf(move |call, _, _| call.plan == SessionPlan::Start(session))
        .times(1)
        .in_sequence(&mut order)
        .returning(|call, _, _| Ok(AgentReply::empty(call.plan.session_id())));
    agent
        .expect_call()
        .withf(move |call, _, _| {
            call.plan == SessionPlan::Resume(session) && call.prompt.contains("test_x failed")
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(|call, _, _| Ok(AgentReply::empty(call.plan.session_id())));
    agent.expect_probe().never();

    let dir = tempfile::tempdir().unwrap();
    let replies = run_iterations(&agent, session, dir.path(), &["test_x failed"])
        .await
        .unwrap();
    assert_eq!(replies.len(), 2);
    // Dropping `agent` checks that every expectation was met.
}

#[tokio::test]
async fn an_error_from_the_mock_reaches_the_caller() {
    let session = SessionId::new_v4();
    let mut agent = MockAgentTrait::new();
    agent.expect_call().times(1).returning(|call, _, _| {
        Err(AgentError::SessionInUse {
            session_id: call.plan.session_id(),
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let error = run_iterations(&agent, session, dir.path(), &["never reached"])
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::SessionInUse { session_id } if session_id == session));
}
