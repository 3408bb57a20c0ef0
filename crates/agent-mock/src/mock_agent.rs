//! [`MockAgent`]: a scripted, in-process [`Agent`] for fast, deterministic orchestration tests.
//!
//! Each call takes one [`Step`] and plays it: succeed with a text and figures, fail with any
//! [`AgentError`], take some time, hang until cancelled or timed out, report another session
//! id, write files, or panic. Steps are taken, in this order of precedence, from the queue of
//! the call's session ([`MockAgent::then_for_session`]), from the first prompt queue whose
//! text the prompt contains ([`MockAgent::then_for_prompt`]), from the general queue
//! ([`MockAgent::then`]), from the script closure ([`MockAgent::scripted`]), and otherwise a
//! plain success answering `done`.
//!
//! Like the real adapter it refuses a call whose working directory does not exist
//! ([`AgentError::WorkingDirMissing`]) and, unless [`MockAgent::without_transcripts`] was
//! used, keeps a transcript per session so that starting a known session fails with
//! [`AgentError::SessionInUse`] and resuming an unknown one with
//! [`AgentError::SessionNotFound`]. A transcript is created as soon as a call starts, as Claude
//! Code's is, so a call that times out still leaves its session resumable. Those transcripts
//! are handed over and taken back through the `Agent` trait's transcript methods (see
//! `handover`), so that a test can move a session to another `MockAgent` as to another host.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use agent::{
    Agent, AgentCall, AgentError, AgentEvent, AgentInfo, AgentReply, CancellationToken, ErrorKind,
    EventSink, ExitInfo, Refusal, Restored, SessionId, SessionPlan, Transcript, TranscriptError,
    Usage,
};

use crate::claude::api_error::ApiFailure;

mod handover;

/// Builds the error of a failing step from the call and the reply the step would have made.
type MakeError = Box<dyn FnOnce(&AgentCall, AgentReply) -> AgentError + Send>;

/// Picks the step of a call that no queue provides, from the call and its number (from 0).
type Script = Box<dyn Fn(&AgentCall, usize) -> Step + Send + Sync>;

/// What one call of a [`MockAgent`] does. Built with a constructor ([`Step::succeed`],
/// [`Step::fail_kind`], [`Step::hang`]...) and adjusted with the builder methods.
pub struct Step {
    action: Action,
    result_text: Option<String>,
    usage: Usage,
    cost_usd: f64,
    turns: u32,
    model: Option<String>,
    context_window: Option<u64>,
    delay: Duration,
    files: Vec<(PathBuf, Vec<u8>)>,
    reported_session: Option<SessionId>,
}

enum Action {
    Succeed,
    Fail(MakeError),
    Hang,
    Panic(String),
}

impl Step {
    fn with_action(action: Action) -> Step {
        Step {
            action,
            result_text: None,
            usage: Usage::ZERO,
            cost_usd: 0.0,
            turns: 1,
            model: None,
            context_window: None,
            delay: Duration::ZERO,
            files: Vec::new(),
            reported_session: None,
        }
    }

    /// Succeeds, answering `text`.
    pub fn succeed(text: impl Into<String>) -> Step {
        Step::with_action(Action::Succeed).result_text(text)
    }

    /// Fails with `error`, as given.
    pub fn fail(error: AgentError) -> Step {
        Step::fail_with(move |_, _| error)
    }

    /// Fails with the error `make` builds from the call and the reply this step would have
    /// made (its session id, text, usage, cost and turns), for errors that carry either.
    pub fn fail_with(
        make: impl FnOnce(&AgentCall, AgentReply) -> AgentError + Send + 'static,
    ) -> Step {
        Step::with_action(Action::Fail(Box::new(make)))
    }

    /// Fails with a representative error of `kind`, filled in from the call and this step's
    /// figures: the call's session, working directory, timeout and max turns, and the reply.
    pub fn fail_kind(kind: ErrorKind) -> Step {
        Step::fail_with(move |call, reply| representative_error(kind, call, reply))
    }

    /// Runs out of turns: [`AgentError::MaxTurns`] with this step's figures and the call's
    /// `max_turns`.
    pub fn max_turns() -> Step {
        Step::fail_kind(ErrorKind::MaxTurns)
    }

    /// The model API fails with `status`.
    pub fn api_error(status: u16, message: impl Into<String>) -> Step {
        let message = message.into();
        Step::fail_with(move |_, reply| AgentError::Api {
            status: Some(status),
            message,
            reply: Some(Box::new(reply)),
        })
    }

    /// The model API refuses for a rate limit that resets at `reset_at`.
    pub fn rate_limited(reset_at: Option<SystemTime>) -> Step {
        Step::fail_with(move |_, reply| AgentError::RateLimited {
            reset_at,
            message: String::from("rate limit reached (mock)"),
            reply: Some(Box::new(reply)),
        })
    }

    /// Hangs until the call is cancelled ([`AgentError::Cancelled`]) or its timeout passes
    /// ([`AgentError::Timeout`]).
    pub fn hang() -> Step {
        Step::with_action(Action::Hang)
    }

    /// Panics with `message`, so that callers can test that they survive a panicking agent.
    pub fn panic(message: impl Into<String>) -> Step {
        Step::with_action(Action::Panic(message.into()))
    }

    /// The final text (of a success; of the reply inside a failure).
    pub fn result_text(mut self, text: impl Into<String>) -> Step {
        self.result_text = Some(text.into());
        self
    }

    pub fn usage(mut self, usage: Usage) -> Step {
        self.usage = usage;
        self
    }

    pub fn cost_usd(mut self, cost_usd: f64) -> Step {
        self.cost_usd = cost_usd;
        self
    }

    pub fn turns(mut self, turns: u32) -> Step {
        self.turns = turns;
        self
    }

    /// The model the reply names, when the call names none.
    pub fn model(mut self, model: impl Into<String>) -> Step {
        self.model = Some(model.into());
        self
    }

    pub fn context_window(mut self, tokens: u64) -> Step {
        self.context_window = Some(tokens);
        self
    }

    /// The call takes this long before it ends as scripted. Cancellation and the call's
    /// timeout cut it short, as they would a real call.
    pub fn delay(mut self, delay: Duration) -> Step {
        self.delay = delay;
        self
    }

    /// Writes `contents` to `path`, relative to the call's working directory, before the call
    /// ends (reported as a `Write` tool use). Failing steps write their files too.
    pub fn write_file(mut self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Step {
        self.files.push((path.into(), contents.into()));
        self
    }

    /// Reports `session_id` instead of the assigned session. A call that would have succeeded
    /// then fails with [`AgentError::SessionMismatch`] carrying the reply, as the real adapter
    /// does; a failing step's error is returned as scripted, its reply naming `session_id`.
    pub fn report_session(mut self, session_id: SessionId) -> Step {
        self.reported_session = Some(session_id);
        self
    }

    fn reply(&self, call: &AgentCall, reported: SessionId) -> AgentReply {
        AgentReply {
            session_id: reported,
            result_text: self.result_text.clone(),
            subtype: String::from("success"),
            usage: self.usage,
            cost_usd: self.cost_usd,
            turns: self.turns,
            duration: self.delay,
            model: call.model.clone().or_else(|| self.model.clone()),
            context_window: self.context_window,
            permission_denials: Vec::new(),
            exit_code: None,
        }
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let action = match &self.action {
            Action::Succeed => "succeed",
            Action::Fail(_) => "fail",
            Action::Hang => "hang",
            Action::Panic(_) => "panic",
        };
        f.debug_struct("Step")
            .field("action", &action)
            .field("result_text", &self.result_text)
            .field("usage", &self.usage)
            .field("delay", &self.delay)
            .field("files", &self.files.len())
            .field("reported_session", &self.reported_session)
            .finish_non_exhaustive()
    }
}

/// One call in a session's transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptTurn {
    pub prompt: String,
    /// The answer, when the call ended with one.
    pub answer: Option<String>,
}

/// A scripted agent. Cheap to clone; clones share the script, the recorded calls and the
/// transcripts, so a test keeps one handle while the code under test owns another.
#[derive(Clone, Default)]
pub struct MockAgent {
    shared: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Step>,
    by_session: HashMap<SessionId, VecDeque<Step>>,
    by_prompt: Vec<(String, VecDeque<Step>)>,
    script: Option<Script>,
    calls: Vec<AgentCall>,
    /// `None` when transcripts are not kept.
    transcripts: Option<HashMap<SessionId, Vec<TranscriptTurn>>>,
}

impl MockAgent {
    /// An agent with an empty script (every call succeeds with `done`) that keeps transcripts.
    pub fn new() -> MockAgent {
        let agent = MockAgent::default();
        agent.state().transcripts = Some(HashMap::new());
        agent
    }

    /// An agent whose calls follow `steps` in order, then succeed with `done`.
    pub fn with_steps(steps: impl IntoIterator<Item = Step>) -> MockAgent {
        let agent = MockAgent::new();
        agent.state().queue.extend(steps);
        agent
    }

    /// An agent whose calls are answered by `script`, given the call and its number (from 0),
    /// whenever no queue has a step for them.
    pub fn scripted(
        script: impl Fn(&AgentCall, usize) -> Step + Send + Sync + 'static,
    ) -> MockAgent {
        let agent = MockAgent::new();
        agent.state().script = Some(Box::new(script));
        agent
    }

    /// Stops keeping transcripts: any session may be started or resumed, any number of times.
    pub fn without_transcripts(self) -> MockAgent {
        self.state().transcripts = None;
        self
    }

    /// Queues a step for the next call that no session or prompt queue claims.
    pub fn then(&self, step: Step) -> &MockAgent {
        self.state().queue.push_back(step);
        self
    }

    /// Queues a step for the next call in `session_id`.
    pub fn then_for_session(&self, session_id: SessionId, step: Step) -> &MockAgent {
        self.state()
            .by_session
            .entry(session_id)
            .or_default()
            .push_back(step);
        self
    }

    /// Queues a step for the next call whose prompt contains `text`.
    pub fn then_for_prompt(&self, text: impl Into<String>, step: Step) -> &MockAgent {
        let text = text.into();
        let mut state = self.state();
        match state.by_prompt.iter_mut().find(|(known, _)| *known == text) {
            Some((_, queue)) => queue.push_back(step),
            None => state.by_prompt.push((text, VecDeque::from([step]))),
        }
        self
    }

    /// Every call made so far, in order, as it was made.
    pub fn calls(&self) -> Vec<AgentCall> {
        self.state().calls.clone()
    }

    /// The calls made in `session_id`, in order.
    pub fn calls_in(&self, session_id: SessionId) -> Vec<AgentCall> {
        self.state()
            .calls
            .iter()
            .filter(|call| call.plan.session_id() == session_id)
            .cloned()
            .collect()
    }

    /// How many scripted steps are still queued (in every queue).
    pub fn steps_left(&self) -> usize {
        let state = self.state();
        state.queue.len()
            + state.by_session.values().map(VecDeque::len).sum::<usize>()
            + state
                .by_prompt
                .iter()
                .map(|(_, queue)| queue.len())
                .sum::<usize>()
    }

    /// The transcript of `session_id`, when there is one.
    pub fn transcript(&self, session_id: SessionId) -> Option<Vec<TranscriptTurn>> {
        self.state()
            .transcripts
            .as_ref()
            .and_then(|transcripts| transcripts.get(&session_id).cloned())
    }

    /// Makes `session_id` known, as if an earlier call (or another process) had started it.
    pub fn seed_transcript(&self, session_id: SessionId) {
        if let Some(transcripts) = self.state().transcripts.as_mut() {
            transcripts.entry(session_id).or_default();
        }
    }

    /// Loses the transcript of `session_id`, as if its file had been deleted.
    pub fn forget_transcript(&self, session_id: SessionId) {
        if let Some(transcripts) = self.state().transcripts.as_mut() {
            transcripts.remove(&session_id);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A step that panics does so with the lock released, so poisoning would only come
        // from a panicking test thread; the state is still consistent then.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the call and takes its step.
    fn take_step(&self, call: &AgentCall) -> Step {
        let mut state = self.state();
        let index = state.calls.len();
        state.calls.push(call.clone());
        let session_id = call.plan.session_id();
        if let Some(step) = state
            .by_session
            .get_mut(&session_id)
            .and_then(VecDeque::pop_front)
        {
            return step;
        }
        let by_prompt = state
            .by_prompt
            .iter_mut()
            .filter(|(text, _)| call.prompt.contains(text.as_str()))
            .find_map(|(_, queue)| queue.pop_front());
        if let Some(step) = by_prompt.or_else(|| state.queue.pop_front()) {
            return step;
        }
        match &state.script {
            Some(script) => script(call, index),
            None => Step::succeed("done"),
        }
    }

    /// Checks the call's session against the transcripts; on success, records the prompt in
    /// the transcript of the session the call reports.
    fn open_transcript(&self, call: &AgentCall, reported: SessionId) -> Result<(), AgentError> {
        let mut state = self.state();
        let Some(transcripts) = state.transcripts.as_mut() else {
            return Ok(());
        };
        match call.plan {
            SessionPlan::Start(session_id) if transcripts.contains_key(&session_id) => {
                return Err(AgentError::SessionInUse { session_id });
            }
            SessionPlan::Resume(session_id) if !transcripts.contains_key(&session_id) => {
                return Err(AgentError::SessionNotFound { session_id });
            }
            _ => {}
        }
        transcripts
            .entry(reported)
            .or_default()
            .push(TranscriptTurn {
                prompt: call.prompt.clone(),
                answer: None,
            });
        Ok(())
    }

    fn record_answer(&self, reported: SessionId, answer: Option<String>) {
        let mut state = self.state();
        let turn = state
            .transcripts
            .as_mut()
            .and_then(|transcripts| transcripts.get_mut(&reported))
            .and_then(|turns| turns.last_mut());
        if let Some(turn) = turn {
            turn.answer = answer;
        }
    }
}

impl std::fmt::Debug for MockAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("MockAgent")
            .field("calls", &state.calls.len())
            .field("queued", &state.queue.len())
            .field("keeps_transcripts", &state.transcripts.is_some())
            .finish_non_exhaustive()
    }
}

/// Errors that come before an agent process would have started: they leave no transcript.
const PRE_START_KINDS: [ErrorKind; 4] = [
    ErrorKind::CannotSpawn,
    ErrorKind::WorkingDirMissing,
    ErrorKind::SessionInUse,
    ErrorKind::SessionNotFound,
];

#[async_trait::async_trait]
impl Agent for MockAgent {
    async fn call(
        &self,
        call: AgentCall,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<AgentReply, AgentError> {
        let stop = Stop {
            deadline: tokio::time::Instant::now() + call.timeout,
            timeout: call.timeout,
            cancel: &cancel,
        };
        let step = self.take_step(&call);
        if !call.working_dir.is_dir() {
            return Err(AgentError::WorkingDirMissing {
                path: call.working_dir.clone(),
            });
        }
        if cancel.is_cancelled() {
            return Err(AgentError::Cancelled {
                partial_usage: Usage::ZERO,
            });
        }
        let assigned = call.plan.session_id();
        let reported = step.reported_session.unwrap_or(assigned);
        let reply = step.reply(&call, reported);
        let Step {
            action,
            delay,
            files,
            ..
        } = step;
        // Like the real CLI, a call that would run past its money limit stops there, whether
        // it was going to finish or to run out of turns.
        let play = match (
            Play::new(action, &call, &reply)?,
            over_budget(&call, &reply),
        ) {
            (Play::Succeed, Some(error)) => Play::Fail(error),
            (Play::Fail(error), Some(budget)) if error.kind() == ErrorKind::MaxTurns => {
                Play::Fail(budget)
            }
            (play, _) => play,
        };
        self.open_transcript(&call, reported)?;
        events.emit(AgentEvent::Init {
            session_id: reported,
            model: reply.model.clone(),
        });
        stop.wait(delay).await?;
        write_files(&call, &files, &events)?;
        self.end(play, assigned, reply, &events, &stop).await
    }

    async fn probe(&self) -> Result<AgentInfo, AgentError> {
        Ok(AgentInfo {
            name: String::from("mock"),
            version: String::from(env!("CARGO_PKG_VERSION")),
            program: None,
        })
    }

    async fn read_transcript(
        &self,
        call: &AgentCall,
    ) -> Result<Option<Transcript>, TranscriptError> {
        self.hand_over(call)
    }

    async fn has_transcript(&self, call: &AgentCall) -> Result<bool, TranscriptError> {
        self.holds(call)
    }

    async fn restore_transcript(
        &self,
        call: &AgentCall,
        transcript: &Transcript,
    ) -> Result<Restored, TranscriptError> {
        self.take_over(call, transcript)
    }
}

impl MockAgent {
    /// Ends a call that has started as its step says: with its reply, its error, when it is
    /// stopped, or with a panic.
    async fn end(
        &self,
        play: Play,
        assigned: SessionId,
        reply: AgentReply,
        events: &EventSink,
        stop: &Stop<'_>,
    ) -> Result<AgentReply, AgentError> {
        let reported = reply.session_id;
        match play {
            Play::Succeed => {
                if let Some(text) = &reply.result_text {
                    events.emit(AgentEvent::Text { text: text.clone() });
                }
                events.emit(AgentEvent::Usage { usage: reply.usage });
                self.record_answer(reported, reply.result_text.clone());
                if reported != assigned {
                    return Err(AgentError::SessionMismatch {
                        assigned,
                        reported,
                        reply: Some(Box::new(reply)),
                    });
                }
                Ok(reply)
            }
            Play::Fail(error) => {
                events.emit(AgentEvent::Usage { usage: reply.usage });
                let answer = error.reply().and_then(|reply| reply.result_text.clone());
                self.record_answer(reported, answer);
                Err(error)
            }
            Play::Hang => Err(stop.stopped().await),
            Play::Panic(message) => panic!("{message}"),
        }
    }
}

/// The error of a successful step whose cost reaches the call's money limit, as Claude Code
/// reports it: `error_max_budget_usd`, no result text, having spent the limit.
fn over_budget(call: &AgentCall, reply: &AgentReply) -> Option<AgentError> {
    let limit = call.max_cost_usd?;
    if reply.cost_usd < limit {
        return None;
    }
    let mut spent = reply.clone();
    spent.cost_usd = limit;
    spent.result_text = None;
    spent.subtype = String::from("error_max_budget_usd");
    spent.exit_code = Some(1);
    Some(AgentError::BudgetExceeded {
        reply: Box::new(spent),
    })
}

/// What a call does once its step's error, if any, is made.
enum Play {
    Succeed,
    Fail(AgentError),
    Hang,
    Panic(String),
}

impl Play {
    /// Makes a failing step's error now, so that errors which come before a process would
    /// start are returned before the transcripts are touched.
    fn new(action: Action, call: &AgentCall, reply: &AgentReply) -> Result<Play, AgentError> {
        Ok(match action {
            Action::Fail(make) => {
                let error = make(call, reply.clone());
                if PRE_START_KINDS.contains(&error.kind()) {
                    return Err(error);
                }
                Play::Fail(error)
            }
            Action::Succeed => Play::Succeed,
            Action::Hang => Play::Hang,
            Action::Panic(message) => Play::Panic(message),
        })
    }
}

/// What stops a call early: its cancellation, and its deadline.
struct Stop<'a> {
    deadline: tokio::time::Instant,
    timeout: Duration,
    cancel: &'a CancellationToken,
}

impl Stop<'_> {
    /// Waits until the call is stopped: cancelled, or past its deadline.
    async fn stopped(&self) -> AgentError {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => AgentError::Cancelled { partial_usage: Usage::ZERO },
            () = tokio::time::sleep_until(self.deadline) => AgentError::Timeout {
                after: self.timeout,
                partial_usage: Usage::ZERO,
            },
        }
    }

    /// Takes `delay`, unless the call is stopped first.
    async fn wait(&self, delay: Duration) -> Result<(), AgentError> {
        if delay.is_zero() {
            // No timer for an instant answer: a zero-length sleep still waits for the timer
            // wheel's next tick (up to a millisecond), which would dominate fast tests and
            // benchmarks. A call cancelled before it started is still cancelled.
            if self.cancel.is_cancelled() {
                return Err(AgentError::Cancelled {
                    partial_usage: Usage::ZERO,
                });
            }
            return Ok(());
        }
        let until = tokio::time::Instant::now() + delay;
        tokio::select! {
            biased;
            error = self.stopped() => Err(error),
            () = tokio::time::sleep_until(until) => Ok(()),
        }
    }
}

/// Writes a step's files in the call's working directory, each reported as a `Write` tool
/// use and its result.
fn write_files(
    call: &AgentCall,
    files: &[(PathBuf, Vec<u8>)],
    events: &EventSink,
) -> Result<(), AgentError> {
    for (path, contents) in files {
        let path = call.working_dir.join(path);
        write_file(&path, contents)?;
        events.emit(AgentEvent::ToolUse {
            name: String::from("Write"),
            summary: path.display().to_string(),
        });
        events.emit(AgentEvent::ToolResult { is_error: false });
    }
    Ok(())
}

fn write_file(path: &std::path::Path, contents: &[u8]) -> Result<(), AgentError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(AgentError::Io)?;
    }
    std::fs::write(path, contents).map_err(AgentError::Io)
}

/// An error of `kind` as the real adapter would report it for `call`.
fn representative_error(kind: ErrorKind, call: &AgentCall, reply: AgentReply) -> AgentError {
    let session_id = call.plan.session_id();
    let with_subtype = |subtype: &str| {
        let mut reply = reply.clone();
        reply.subtype = subtype.to_owned();
        Box::new(reply)
    };
    match kind {
        ErrorKind::SessionInUse => AgentError::SessionInUse { session_id },
        ErrorKind::SessionNotFound => AgentError::SessionNotFound { session_id },
        ErrorKind::SessionMismatch => {
            let mut reply = reply.clone();
            if reply.session_id == session_id {
                reply.session_id = SessionId::new_v4();
            }
            AgentError::SessionMismatch {
                assigned: session_id,
                reported: reply.session_id,
                reply: Some(Box::new(reply)),
            }
        }
        ErrorKind::Timeout => AgentError::Timeout {
            after: call.timeout,
            partial_usage: reply.usage,
        },
        ErrorKind::Cancelled => AgentError::Cancelled {
            partial_usage: reply.usage,
        },
        ErrorKind::Crashed => AgentError::Crashed {
            exit: ExitInfo::Signal(9),
            stderr_tail: String::from("mock agent crashed"),
        },
        ErrorKind::MalformedOutput => AgentError::MalformedOutput {
            detail: String::from("mock agent printed garbage"),
        },
        ErrorKind::CannotSpawn => AgentError::CannotSpawn {
            program: PathBuf::from("mock-agent"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "mock agent is absent"),
        },
        ErrorKind::WorkingDirMissing => AgentError::WorkingDirMissing {
            path: call.working_dir.clone(),
        },
        ErrorKind::Api => AgentError::Api {
            status: Some(500),
            message: String::from("internal server error (mock)"),
            reply: Some(with_subtype("success")),
        },
        ErrorKind::RateLimited => AgentError::RateLimited {
            reset_at: None,
            message: String::from("rate limit reached (mock)"),
            reply: Some(with_subtype("success")),
        },
        ErrorKind::MaxTurns => AgentError::MaxTurns {
            max_turns: call.max_turns,
            reply: with_subtype("error_max_turns"),
        },
        ErrorKind::BudgetExceeded => AgentError::BudgetExceeded {
            reply: with_subtype("error_max_budget_usd"),
        },
        ErrorKind::Execution => AgentError::Execution {
            errors: vec![String::from("mock execution error")],
            reply: with_subtype("error_during_execution"),
        },
        ErrorKind::Io => AgentError::Io(std::io::Error::other("mock i/o failure")),
        ErrorKind::Authentication
        | ErrorKind::Permission
        | ErrorKind::Billing
        | ErrorKind::ModelUnavailable => refused(kind, with_subtype("success")),
    }
}

/// A refusal no retry fixes, as the real adapter reports it: the real CLI's text for what
/// the API answered, from the one table `mock-claude` plays too.
fn refused(kind: ErrorKind, reply: Box<AgentReply>) -> AgentError {
    let (refusal, status, api_says) = match kind {
        ErrorKind::Permission => (Refusal::Permission, 403, "not allowed (mock)"),
        ErrorKind::Billing => (
            Refusal::Billing,
            400,
            "Your credit balance is too low to access the Anthropic API. (mock)",
        ),
        ErrorKind::ModelUnavailable => (Refusal::ModelUnavailable, 404, "model: mock"),
        _ => (Refusal::Authentication, 401, "invalid x-api-key (mock)"),
    };
    AgentError::Refused {
        refusal,
        status: Some(status),
        message: ApiFailure::new(status, api_says, "mock").text,
        reply: Some(reply),
    }
}
