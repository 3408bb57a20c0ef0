//! What a watching run keeps besides the scheduler's state: how often it looks at the ledger,
//! which tasks it lets rest before taking them up again, and whether it said it is waiting.
//!
//! A run that ends takes each task up once. A watching run lives on, so a task it took up may
//! come back: a person retried it, or it was given back because another runner held its
//! session. The first kind is new work; the second must not be tried again at once, or two
//! runners would trade it back and forth, so it rests for one lease TTL — by then the other
//! runner's lease is either renewed (it still works there) or expired (recovery frees it).
//!
//! Before each sweep a watching run renews the leases it holds that are running low: a loop
//! renews its session's lease while an agent call runs, not while a long check does, and the
//! run's own sweep must not take an expired lease of a runner alive here for a dead one's.

use std::collections::HashMap;
use std::time::Duration;

use session_store::{SessionFilter, SessionStatus, StoreError, TaskId, Timestamp};
use tokio::time::Instant;

use crate::context::RunContext;
use crate::task::TaskOutcome;

/// A watching run's own state.
#[derive(Debug)]
pub(super) struct Watching {
    /// How long the run waits, with room for more work, before it looks at the ledger again.
    interval: Duration,
    /// When it looks next: a fixed beat, so that tasks ending often do not put it off.
    next_look: Instant,
    /// How long a task given back to another runner rests: the lease TTL.
    rest_after_give_back: Duration,
    /// Tasks not to take up before these instants.
    resting: HashMap<TaskId, Instant>,
    /// Whether the run has said it waits for work since it last started a task.
    said_waiting: bool,
}

impl Watching {
    pub(super) fn new(interval: Duration, lease_ttl: Duration) -> Watching {
        Watching {
            interval,
            next_look: Instant::now() + interval,
            rest_after_give_back: lease_ttl,
            resting: HashMap::new(),
            said_waiting: false,
        }
    }

    /// Takes in how a task's loop ended: `None` when it could not claim the task. A task
    /// given back, or one the run could not claim though it looked ready, rests before the
    /// run tries it again; any other end leaves it free to be taken up when it is pending
    /// again.
    pub(super) fn ended(&mut self, task: TaskId, outcome: Option<&TaskOutcome>) {
        let rest = match outcome {
            Some(TaskOutcome::Skipped { .. }) => self.rest_after_give_back,
            None => self.interval,
            Some(_) => {
                self.resting.remove(&task);
                return;
            }
        };
        self.resting.insert(task, Instant::now() + rest);
    }

    /// When the run looks at the ledger next.
    pub(super) fn next_look(&self) -> Instant {
        self.next_look
    }

    /// The run looked at the ledger: the next look is one interval away.
    pub(super) fn looked(&mut self) {
        self.next_look = Instant::now() + self.interval;
    }

    /// Whether `task` has rested enough to be taken up.
    pub(super) fn rested(&self, task: TaskId) -> bool {
        self.resting
            .get(&task)
            .is_none_or(|until| Instant::now() >= *until)
    }

    /// The run went idle: whether that is news (the first time since it last started a task).
    pub(super) fn went_idle(&mut self) -> bool {
        !std::mem::replace(&mut self.said_waiting, true)
    }

    /// The run started a task: its next idle stretch is news again.
    pub(super) fn started(&mut self) {
        self.said_waiting = false;
    }
}

/// Renews every lease this process holds on an open session that has less than two thirds
/// of the TTL left, so that an idle stretch of a loop (a long check) never lets it run out
/// while the process lives. A session that closed, or that another process took, meanwhile
/// is its loop's business.
pub(super) async fn keep_own_leases(context: &RunContext) -> Result<(), StoreError> {
    let (owner, ttl) = (context.owner.clone(), context.config.lease_ttl);
    context
        .ledger(move |store| {
            let running_low = Timestamp::now().saturating_add(ttl.saturating_mul(2) / 3);
            let open = store.sessions(&SessionFilter {
                status: Some(SessionStatus::Open),
                ..SessionFilter::default()
            })?;
            for session in open {
                let ours = session
                    .lease
                    .as_ref()
                    .is_some_and(|lease| lease.owner == owner && lease.expires_at <= running_low);
                if !ours {
                    continue;
                }
                match store.renew_lease(session.id, &owner, ttl) {
                    Ok(_)
                    | Err(
                        StoreError::SessionClosed { .. }
                        | StoreError::LeaseHeld { .. }
                        | StoreError::LeaseNotHeld { .. },
                    ) => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_given_back_rests_for_the_lease_ttl_and_a_finished_one_not_at_all() {
        let mut watching = Watching::new(Duration::from_secs(1), Duration::from_secs(3600));
        let (given_back, failed) = (TaskId(1), TaskId(2));
        watching.ended(
            given_back,
            Some(&TaskOutcome::Skipped {
                reason: String::from("another runner holds its session"),
            }),
        );
        watching.ended(
            failed,
            Some(&TaskOutcome::Failed {
                reason: String::from("checks failed"),
            }),
        );
        assert!(!watching.rested(given_back));
        assert!(watching.rested(failed));
        // Taken up again later and completed: it no longer rests.
        watching.ended(given_back, Some(&TaskOutcome::Completed));
        assert!(watching.rested(given_back));
    }

    #[test]
    fn going_idle_is_news_once_per_stretch() {
        let mut watching = Watching::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(watching.went_idle());
        assert!(!watching.went_idle());
        watching.started();
        assert!(watching.went_idle());
    }
}
