//! Sessions move with their tasks: with mirroring on, each call's transcript is copied into
//! the ledger, and a runner whose agent lacks it (another host, here another `MockAgent`)
//! restores the copy and resumes the same session; without a copy the usual fallback starts
//! a new session seeded from the ledger.

use std::sync::Arc;

use agent::{
    Agent, AgentCall, AgentError, AgentInfo, AgentReply, CancellationToken, EventSink, SessionPlan,
    Transcript, TranscriptError,
};
use agent_mock::{MockAgent, Step};
use orchestrator::{RunConfig, Selection};
use session_store::{SessionStatus, TaskId, TaskStatus};

use crate::support::{Fixture, Recorder, bounded, quick_config, text};

fn mirroring() -> RunConfig {
    RunConfig {
        mirror_transcripts: true,
        ..quick_config()
    }
}

/// A task whose first run fails its check after one call, leaving a started session to resume.
fn task_that_needs_a_second_run(fixture: &mut Fixture) -> TaskId {
    let mut task = fixture.new_task("moving");
    task.max_iterations = 1;
    task.verify_commands = vec![text("test -f done.txt")];
    fixture.add(task)
}

/// An agent that writes the file the check wants.
fn finishing_agent() -> MockAgent {
    MockAgent::scripted(|_, _| Step::succeed("written").write_file("done.txt", ""))
}

async fn run_recorded(
    fixture: &Fixture,
    agent: Arc<dyn Agent>,
    config: RunConfig,
) -> (orchestrator::RunReport, Recorder) {
    let recorder = Recorder::default();
    let orchestrator = fixture
        .orchestrator(agent, config)
        .with_events(recorder.sink());
    let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
        .await
        .unwrap();
    (report, recorder)
}

on_both_backends! {
    #[tokio::test]
    async fn a_session_resumes_on_another_host_from_the_ledgers_copy() {
        let mut fixture = Fixture::new();
        let task = task_that_needs_a_second_run(&mut fixture);
        let here = MockAgent::with_steps([Step::succeed("did nothing")]);
        let report = fixture.run_with(&here, mirroring()).await;
        assert!(!report.all_completed());
        let session = fixture.sessions_of(task)[0].id;
        let copy = fixture
            .ledger(|store| store.session_transcript(session))
            .unwrap()
            .unwrap();
        assert!(copy.transcript.as_str().contains("Do moving."), "{copy:?}");
        assert_eq!(copy.size, copy.transcript.as_str().len() as u64);

        fixture
            .ledger(|store| store.retry_task(task, None))
            .unwrap();
        // Another host: an agent that has never seen the session.
        let there = finishing_agent();
        let (report, recorder) = run_recorded(&fixture, Arc::new(there.clone()), mirroring()).await;
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(there.calls()[0].plan, SessionPlan::Resume(session));
        assert_eq!(fixture.sessions_of(task).len(), 1, "no new session");
        assert_eq!(
            fixture
                .ledger(|store| store.session(session))
                .unwrap()
                .status,
            SessionStatus::Completed
        );
        // The conversation continued: the first host's turn, then this one's.
        let turns = there.transcript(session).unwrap();
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0], here.transcript(session).unwrap()[0]);
        assert!(
            recorder
                .decisions()
                .iter()
                .any(|decision| decision.starts_with("restored the transcript of session")),
            "{:?}",
            recorder.decisions()
        );
        // The ledger's copy is the latest: it has both turns.
        let copy = fixture
            .ledger(|store| store.session_transcript(session))
            .unwrap()
            .unwrap();
        assert_eq!(copy.transcript.as_str().lines().count(), 2);
    }

    #[tokio::test]
    async fn without_a_copy_the_task_continues_in_a_new_seeded_session() {
        let mut fixture = Fixture::new();
        let task = task_that_needs_a_second_run(&mut fixture);
        // The first run does not mirror: the ledger has no copy.
        let here = MockAgent::with_steps([Step::succeed("did nothing")]);
        fixture.run_with(&here, quick_config()).await;
        let session = fixture.sessions_of(task)[0].id;
        assert_eq!(
            fixture
                .ledger(|store| store.session_transcript(session))
                .unwrap(),
            None
        );

        fixture
            .ledger(|store| store.retry_task(task, None))
            .unwrap();
        let there = finishing_agent();
        let (report, recorder) = run_recorded(&fixture, Arc::new(there.clone()), mirroring()).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = there.calls();
        assert_eq!(calls[0].plan, SessionPlan::Resume(session));
        assert!(matches!(calls[1].plan, SessionPlan::Start(id) if id != session));
        let decisions = recorder.decisions();
        assert!(
            decisions.iter().any(|d| d.contains("the ledger no copy")),
            "{decisions:?}"
        );
        let old = fixture.ledger(|store| store.session(session)).unwrap();
        assert!(old.end_reason.unwrap().contains("transcript lost"));
    }

    #[tokio::test]
    async fn nothing_is_copied_when_mirroring_is_off() {
        let mut fixture = Fixture::new();
        let task = fixture.task("plain", &[]);
        let agent = MockAgent::new();
        assert!(fixture.run(&agent).await.all_completed());
        let session = fixture.sessions_of(task)[0].id;
        assert!(agent.transcript(session).is_some());
        assert_eq!(
            fixture
                .ledger(|store| store.session_transcript(session))
                .unwrap(),
            None
        );
    }

    /// A transcript that cannot be read is said, and the task goes on to complete.
    #[tokio::test]
    async fn a_transcript_that_cannot_be_read_is_a_warning_not_a_failure() {
        struct Unreadable(MockAgent);

        #[async_trait::async_trait]
        impl Agent for Unreadable {
            async fn call(
                &self,
                call: AgentCall,
                events: EventSink,
                cancel: CancellationToken,
            ) -> Result<AgentReply, AgentError> {
                self.0.call(call, events, cancel).await
            }

            async fn probe(&self) -> Result<AgentInfo, AgentError> {
                self.0.probe().await
            }

            async fn read_transcript(
                &self,
                _call: &AgentCall,
            ) -> Result<Option<Transcript>, TranscriptError> {
                Err(TranscriptError::NoLocation)
            }
        }

        let mut fixture = Fixture::new();
        let task = fixture.task("unreadable", &[]);
        let (report, recorder) = run_recorded(
            &fixture,
            Arc::new(Unreadable(MockAgent::new())),
            mirroring(),
        )
        .await;
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(fixture.get(task).status, TaskStatus::Completed);
        let session = fixture.sessions_of(task)[0].id;
        assert_eq!(
            fixture
                .ledger(|store| store.session_transcript(session))
                .unwrap(),
            None
        );
        assert!(
            recorder
                .decisions()
                .iter()
                .any(|d| d.starts_with("could not copy the transcript")
                    && d.contains("the task goes on")),
            "{:?}",
            recorder.decisions()
        );
    }

    /// A session that went from this host to another and back: this host's own transcript is
    /// older than the ledger's copy, which extends it, so the copy replaces it before the resume
    /// and the conversation goes on with the other host's turn in it.
    #[tokio::test]
    async fn a_session_back_on_its_first_host_goes_on_from_the_newer_copy() {
        let mut fixture = Fixture::new();
        let task = task_that_needs_a_second_run(&mut fixture);
        let first = MockAgent::with_steps([
            Step::succeed("did nothing"),
            Step::succeed("written").write_file("done.txt", ""),
        ]);
        fixture.run_with(&first, mirroring()).await;
        let session = fixture.sessions_of(task)[0].id;

        fixture
            .ledger(|store| store.retry_task(task, None))
            .unwrap();
        let other = MockAgent::with_steps([Step::succeed("did nothing either")]);
        let report = fixture.run_with(&other, mirroring()).await;
        assert!(!report.all_completed(), "{report:?}");
        assert_eq!(other.transcript(session).unwrap().len(), 2);

        fixture
            .ledger(|store| store.retry_task(task, None))
            .unwrap();
        let (report, recorder) = run_recorded(&fixture, Arc::new(first.clone()), mirroring()).await;
        assert!(report.all_completed(), "{report:?}");
        // Back on the first host, the session went on from the copy, not from the first
        // host's own, older transcript: the other host's turn is in it.
        let turns = first.transcript(session).unwrap();
        assert_eq!(turns.len(), 3, "{turns:?}");
        assert_eq!(turns[1], other.transcript(session).unwrap()[1]);
        assert!(
            recorder
                .decisions()
                .iter()
                .any(|decision| decision.starts_with("brought the transcript of session")),
            "{:?}",
            recorder.decisions()
        );
    }
}
