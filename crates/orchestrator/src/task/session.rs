//! The task's session: opened (or reopened) with its lease before the first call, its lease
//! kept before and during every call, rotated when its context fills up or the policy wants a
//! new one, and closed.

use agent::{AgentReply, ErrorKind, SessionId, Usage};
use session_store::{
    BudgetStatus, CallOutcome, LeaseOwner, MilestoneId, NewSession, Session, SessionFilter,
    SessionPolicy, SessionStatus, Store, StoreError, Task, TaskId, TaskStatus,
};

use super::{Assignment, Stop, TaskLoop};
use crate::context::RunContext;
use crate::event::RunEvent;

/// The session the loop holds the lease of. It lives in a slot outside the loop
/// (`Option<ActiveSession>`, empty between a close and the next open); the steps borrow it.
pub(super) struct ActiveSession {
    pub(super) id: SessionId,
    /// Whether the agent has (or may have) a transcript for it: the next call resumes.
    pub(super) started: bool,
    /// Whether this task has made a call in it (a milestone session may carry other tasks).
    pub(super) used_by_task: bool,
    /// The iteration it was opened in, for the `fresh` policy.
    opened_in: u32,
    /// Prompt tokens of the latest model response, and the model's window, for rotation.
    occupancy: Option<(u64, u64)>,
    /// Whether its lease was taken just now, when it was opened: the first call needs no
    /// other. After a call, the lease is taken again before the next.
    freshly_leased: bool,
}

/// A task this runner claimed, and what its loop starts from.
pub(super) struct Claim {
    pub(super) task: Task,
    pub(super) first: FirstSession,
    /// The task's own budget as the claim read it, for the first call's reservation; `None`
    /// when it was not read with the claim.
    pub(super) budget: Option<BudgetStatus>,
}

/// Where a claimed task's loop starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FirstSession {
    /// A new session, opened with its lease in the claim's commit.
    Opened(SessionId),
    /// The task's (or its milestone's) latest session, which the loop reopens.
    Continue(SessionId),
}

/// Why the next session to open is new, which decides its first prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NewSessionReason {
    /// No session yet: continue the task's (or milestone's) latest one if there is one.
    First,
    /// The `fresh` policy: every iteration gets a session of its own.
    FreshPolicy,
    /// The agent lost the old session's transcript.
    TranscriptLost,
    /// The old session's context window filled up.
    Rotated,
}

/// How the loop asks for its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseClaim {
    /// During a call: extend the lease this process holds.
    Renew,
    /// Before a call, or to continue a session: take the lease, which may have lapsed while
    /// this runner was busy elsewhere.
    Take,
}

/// What became of the lease when the loop renewed or took it.
#[derive(Debug)]
pub(super) enum LeaseKept {
    Held,
    /// Another process holds it (or rotated the session): the session is lost to this run.
    Lost(StoreError),
}

/// Why the current session gives way to a new one before the next call.
struct Retirement {
    status: SessionStatus,
    reason: String,
    next: NewSessionReason,
    /// Whether the run is told, as a decision.
    announce: bool,
}

impl ActiveSession {
    fn new(id: SessionId, iteration: u32, started: bool, used_by_task: bool) -> ActiveSession {
        ActiveSession {
            id,
            started,
            used_by_task,
            opened_in: iteration,
            occupancy: None,
            freshly_leased: true,
        }
    }

    /// Takes in what a recorded call tells about the session: whether the agent now keeps a
    /// transcript of it, and, from its answer (`reply`, when it answered), how full the
    /// context window is. `last_usage` is the usage of the call's latest model response.
    pub(super) fn after_call(
        &mut self,
        outcome: CallOutcome,
        reply: Option<&AgentReply>,
        last_usage: Option<Usage>,
    ) {
        // Any call that reached the agent may have left a transcript; one that could not
        // start the agent did not.
        let spawned = reached_agent(outcome);
        self.freshly_leased = false;
        self.started |= spawned;
        self.used_by_task |= spawned;
        if let Some(reply) = reply {
            let used = last_usage.unwrap_or(reply.usage).prompt_tokens();
            self.occupancy = reply.context_window.map(|window| (used, window));
        }
    }
}

/// Claims the assigned task for this process and finds the session its loop starts in. When
/// that is a new one, it is opened in the claim's commit: nothing comes between the two but
/// the loop's start. `None` when the task could not be claimed: another runner took it
/// first, or it is no longer ready.
pub(super) async fn claim(
    context: &RunContext,
    assignment: Assignment,
) -> Result<Option<Claim>, StoreError> {
    let (owner, lease_ttl) = (context.owner.clone(), context.config.lease_ttl);
    let Assignment {
        task,
        milestone,
        policy,
    } = assignment;
    let outage = context.config.ledger_outage;
    // Whether a try came before: only then can the task be this runner's already.
    let tried = std::sync::atomic::AtomicBool::new(false);
    // Minted once for every try: a retry whose first try committed finds the session that
    // try opened under this id, rather than naming one that was never written.
    let fresh = SessionId::new_v4();
    let claimed = context
        .db
        .run_retrying(
            outage,
            move |store| {
                let retry = tried.swap(true, std::sync::atomic::Ordering::Relaxed);
                match claim_and_open(store, task, &owner, policy, lease_ttl, fresh) {
                    Ok(claimed) => Ok(claimed),
                    // A claim retried after the database went away may find its first try
                    // committed: the task is this runner's already, and goes on from there.
                    Err(StoreError::InvalidTransition { .. }) if retry => {
                        match already_ours(store, task, &owner)? {
                            Some(task) => {
                                let first =
                                    match latest_to_continue(store, task.id, milestone, policy)? {
                                        Some(latest) => FirstSession::Continue(latest),
                                        None => FirstSession::Opened(fresh),
                                    };
                                Ok(Claim {
                                    task,
                                    first,
                                    budget: None,
                                })
                            }
                            None => Err(StoreError::InvalidTransition {
                                task,
                                from: store.task(task)?.status,
                                to: TaskStatus::Running,
                            }),
                        }
                    }
                    Err(err) => Err(err),
                }
            },
            |_| {},
        )
        .await;
    match claimed {
        Ok(claimed) => Ok(Some(claimed)),
        Err(
            StoreError::InvalidTransition { .. }
            | StoreError::DependenciesUnmet { .. }
            | StoreError::ClaimTaken { .. },
        ) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Claims `task` and finds the session its loop starts in: the latest it continues under
/// `policy`, which the claim finds in its own statement, or a new one, `fresh`, opened in the
/// claim's commit.
fn claim_and_open(
    store: &mut Store,
    task: TaskId,
    owner: &LeaseOwner,
    policy: SessionPolicy,
    lease_ttl: std::time::Duration,
    fresh: SessionId,
) -> Result<Claim, StoreError> {
    let continuing = (policy != SessionPolicy::Fresh).then_some(policy);
    store.claim_batch(task, owner, continuing, "claim a task", |batch, claimed| {
        let first = match continuable(claimed.latest) {
            Some(latest) => FirstSession::Continue(latest),
            None => FirstSession::Opened(fresh),
        };
        if let FirstSession::Opened(id) = first {
            batch.open_session(&NewSession {
                id,
                task: claimed.task.id,
                milestone: claimed.task.milestone,
                policy,
                owner: owner.clone(),
                lease_ttl,
            })?;
        }
        Ok(Claim {
            task: claimed.task.clone(),
            first,
            budget: Some(claimed.budget),
        })
    })
}

/// The task, when it runs under this very runner's claim (a claim whose commit went through
/// though its answer was lost).
fn already_ours(
    store: &Store,
    task: TaskId,
    owner: &LeaseOwner,
) -> Result<Option<Task>, StoreError> {
    let found = store.task(task)?;
    let ours = found.status == TaskStatus::Running && found.runner.as_ref() == Some(owner);
    Ok(ours.then_some(found))
}

/// The session a task continues, of the latest with its policy in its scope (see
/// [`latest_to_continue`]): never a rotated one.
fn continuable(latest: Option<(SessionId, SessionStatus)>) -> Option<SessionId> {
    latest
        .filter(|&(_, status)| status != SessionStatus::Rotated)
        .map(|(id, _)| id)
}

/// The session a task continues under `policy`: its own latest (the `task` policy), or its
/// milestone's latest (the `milestone` policy); never a rotated one, and never one under the
/// `fresh` policy, which gives every iteration a session of its own.
fn latest_to_continue(
    store: &Store,
    task: TaskId,
    milestone: Option<MilestoneId>,
    policy: SessionPolicy,
) -> Result<Option<SessionId>, StoreError> {
    let filter = match policy {
        SessionPolicy::Fresh => return Ok(None),
        SessionPolicy::Milestone => SessionFilter {
            milestone,
            ..SessionFilter::default()
        },
        SessionPolicy::Task => SessionFilter {
            task: Some(task),
            ..SessionFilter::default()
        },
    };
    Ok(store
        .sessions(&filter)?
        .into_iter()
        .rev()
        .find(|session: &Session| session.policy == policy)
        .filter(|session| session.status != SessionStatus::Rotated)
        .map(|session| session.id))
}

impl TaskLoop {
    /// The session the loop starts with: the one opened with the claim, held from the
    /// start; or none yet, and the one to continue noted for the first call.
    pub(super) fn start(&mut self, first: FirstSession) -> Option<ActiveSession> {
        match first {
            FirstSession::Opened(id) => {
                self.context.events.emit(RunEvent::SessionOpened {
                    task: self.task.id,
                    session: id,
                    policy: self.policy,
                    reopened: false,
                });
                let iteration = self.task.iterations.saturating_add(1);
                Some(ActiveSession::new(id, iteration, false, false))
            }
            FirstSession::Continue(id) => {
                self.continue_first = Some(id);
                None
            }
        }
    }

    /// Makes sure a session is open and leased for the next call: keeps the current one (and
    /// takes its lease again), retires it (rotation, the fresh policy) or opens one per the
    /// policy. The session stays in `slot`; the call borrows it from there.
    pub(super) async fn session_for_call<'slot>(
        &mut self,
        slot: &'slot mut Option<ActiveSession>,
        iteration: u32,
    ) -> Result<&'slot mut ActiveSession, Stop> {
        if let Some(session) = slot.as_ref() {
            match self.retirement(session, iteration) {
                Some(retirement) => {
                    if retirement.announce {
                        self.emit_decision(iteration, retirement.reason.clone());
                    }
                    self.close_session(slot, retirement.status, &retirement.reason)
                        .await?;
                    self.next_session = retirement.next;
                }
                None if session.freshly_leased => {}
                None => self.hold_lease(session.id, iteration).await?,
            }
        }
        let session = match slot.take() {
            Some(session) => session,
            None => self.open_session(iteration).await?,
        };
        Ok(slot.insert(session))
    }

    /// Whether `session` must give way to a new one before the call of `iteration`.
    fn retirement(&self, session: &ActiveSession, iteration: u32) -> Option<Retirement> {
        let threshold = self.context.config.rotation_threshold;
        let full = session
            .occupancy
            .filter(|&(used, window)| window > 0 && used as f64 >= threshold * window as f64);
        if let Some((used, window)) = full {
            return Some(Retirement {
                status: SessionStatus::Rotated,
                reason: format!(
                    "context window {used} of {window} tokens used; rotated to a new session"
                ),
                next: NewSessionReason::Rotated,
                announce: true,
            });
        }
        (self.policy == SessionPolicy::Fresh && session.opened_in != iteration).then(|| {
            Retirement {
                status: SessionStatus::Completed,
                reason: String::from("the fresh policy gives each iteration a new session"),
                next: NewSessionReason::FreshPolicy,
                announce: false,
            }
        })
    }

    /// Makes sure this process still holds the session's lease before a call.
    async fn hold_lease(&mut self, id: SessionId, iteration: u32) -> Result<(), Stop> {
        match self.keep_lease(id, LeaseClaim::Take).await? {
            LeaseKept::Held => Ok(()),
            LeaseKept::Lost(_) => {
                self.emit_decision(
                    iteration,
                    format!("session {id} was taken over by another baton process"),
                );
                Err(Stop::LeaseLost(format!(
                    "session {id} is in use by another baton process"
                )))
            }
        }
    }

    /// Renews or takes this process's lease on session `id` — the one way the loop keeps a
    /// lease. A sweep may have abandoned the session while this runner was busy (a long
    /// check, a rate-limit wait, a stalled ledger): while nobody else took it, it is reopened
    /// and the work goes on. The checks not yet written share the commit.
    pub(super) async fn keep_lease(
        &mut self,
        id: SessionId,
        claim: LeaseClaim,
    ) -> Result<LeaseKept, StoreError> {
        let (owner, ttl) = (self.context.owner.clone(), self.context.config.lease_ttl);
        let kept = match self
            .write_with_unwritten("keep a session lease", move |batch| {
                Ok(match claim {
                    LeaseClaim::Renew => match batch.renew_lease(id, &owner, ttl) {
                        Err(StoreError::SessionClosed { .. }) => {
                            batch.reopen_session(id, &owner, ttl)
                        }
                        other => other,
                    },
                    // Reopening takes the lease of an open session as acquiring does, and
                    // opens again one that a sweep closed; a rotated one is refused.
                    LeaseClaim::Take => batch.reopen_session(id, &owner, ttl),
                })
            })
            .await
        {
            // Another runner took the task or the session over: the lease is theirs.
            Err(fenced @ StoreError::Fenced { .. }) => return Ok(LeaseKept::Lost(fenced)),
            other => other?,
        };
        match kept {
            Ok(lease) => {
                self.lease = Some((id, lease.epoch));
                Ok(LeaseKept::Held)
            }
            Err(
                err @ (StoreError::LeaseHeld { .. }
                | StoreError::LeaseNotHeld { .. }
                | StoreError::SessionRotated { .. }),
            ) => Ok(LeaseKept::Lost(err)),
            Err(err) => Err(err),
        }
    }

    /// Opens the session for the next call: the one found to continue when the task was
    /// claimed, for its first call; otherwise a new one.
    async fn open_session(&mut self, iteration: u32) -> Result<ActiveSession, Stop> {
        if let Some(previous) = self.continue_first.take() {
            return self.continue_session(previous, iteration).await;
        }
        let id = SessionId::new_v4();
        let new = NewSession {
            id,
            task: self.task.id,
            milestone: self.task.milestone,
            policy: self.policy,
            owner: self.context.owner.clone(),
            lease_ttl: self.context.config.lease_ttl,
        };
        let lease = self
            .write_with_unwritten("open a session", move |batch| batch.open_session(&new))
            .await?;
        self.lease = Some((id, lease.epoch));
        self.context.events.emit(RunEvent::SessionOpened {
            task: self.task.id,
            session: id,
            policy: self.policy,
            reopened: false,
        });
        Ok(ActiveSession::new(id, iteration, false, false))
    }

    /// Continues session `id`: takes its lease (reopening it when it ended) and works out
    /// from its recorded calls whether the agent has a transcript of it.
    async fn continue_session(
        &mut self,
        id: SessionId,
        iteration: u32,
    ) -> Result<ActiveSession, Stop> {
        if let LeaseKept::Lost(_) = self.keep_lease(id, LeaseClaim::Take).await? {
            return Err(Stop::LeaseLost(format!(
                "session {id} is in use by another baton process"
            )));
        }
        // Only calls that reached the agent can have made a transcript.
        let reached: Vec<TaskId> = self
            .context
            .ledger(move |store| store.calls_for_session(id))
            .await?
            .into_iter()
            .filter(|call| reached_agent(call.outcome))
            .map(|call| call.task)
            .collect();
        self.context.events.emit(RunEvent::SessionOpened {
            task: self.task.id,
            session: id,
            policy: self.policy,
            reopened: true,
        });
        // Calls that reached the agent made a transcript. Without any, the agent may still
        // have one (a call that Baton did not get to record): starting then answers "in
        // use", and the loop resumes.
        let used_by_task = reached.contains(&self.task.id);
        Ok(ActiveSession::new(
            id,
            iteration,
            !reached.is_empty(),
            used_by_task,
        ))
    }

    /// Closes the session in `slot` as `status`, and empties the slot once it is closed (a
    /// close that failed is tried again on the way out). A session something else ended
    /// first (a sweep, while this runner was stalled) is closed, which is what matters.
    pub(super) async fn close_session(
        &mut self,
        slot: &mut Option<ActiveSession>,
        status: SessionStatus,
        reason: &str,
    ) -> Result<(), StoreError> {
        let Some(session) = slot.as_ref() else {
            return Ok(());
        };
        // The reason quotes the agent's error or the rotation's figures: redacted on its way
        // to the ledger.
        let (id, reason_text) = (session.id, self.context.redactor.redact(reason));
        let closed = self
            .write_with_unwritten("close a session", move |batch| {
                Ok(batch.close_session(id, status, Some(&reason_text)))
            })
            .await?;
        match closed {
            Ok(()) => *slot = None,
            Err(StoreError::CloseConflict { .. }) => {
                *slot = None;
                return Ok(());
            }
            Err(err) => return Err(err),
        }
        self.context.events.emit(RunEvent::SessionClosed {
            task: self.task.id,
            session: id,
            status,
            reason: reason.to_owned(),
        });
        Ok(())
    }
}

/// Whether a call with this outcome reached the agent, which then keeps a transcript of it.
pub(super) fn reached_agent(outcome: CallOutcome) -> bool {
    !matches!(
        outcome,
        CallOutcome::Failed(
            ErrorKind::CannotSpawn | ErrorKind::WorkingDirMissing | ErrorKind::SessionNotFound
        )
    )
}
