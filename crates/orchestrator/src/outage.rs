//! A failing API pauses the whole run, not each task: transient failures (5xx, overloaded,
//! a refused or reset connection) that keep coming across tasks stop every loop from calling
//! until a pause has passed; then one call goes first as a probe, and the rest follow when it
//! succeeds. Each failed probe doubles the pause; past the run's bound on the total pause the
//! run stops (see `halt`). No task spends its retries or iterations on the outage.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::RetryPolicy;

/// What a loop does after a transient failure, as the run's outage sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// No outage (yet): the task retries on its own, as it would for any passing failure.
    OwnRetry,
    /// The run is paused: wait for it (see [`Outage::before_call`]) and call again, without
    /// counting a retry. `announce` is the first time this pause is reported.
    Paused {
        failures: u32,
        wait: Duration,
        announce: bool,
    },
    /// The API has been failing longer than the run may wait, in all.
    GiveUp { paused: Duration },
}

/// The outage state one run shares among its loops.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    state: Mutex<State>,
    /// Wakes loops waiting for a pause to end or a probe to succeed.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Transient failures in a row across the run, and when the first of them came.
    failures: u32,
    streak_since: Option<Instant>,
    /// While paused: when the pause ends.
    paused_until: Option<Instant>,
    /// How many pauses this outage has had (each doubles the next).
    pauses: u32,
    /// The pauses of this outage, in all.
    paused: Duration,
    /// The probe call under way, if any: everyone else waits for its answer.
    probe: Option<u64>,
    /// The number the next probe gets, so that a probe's guard clears its own turn only.
    next_probe: u64,
}

/// A loop's turn to call, from [`Outage::before_call`]. When the loop is the probe and ends
/// without reporting an answer ([`Outage::succeeded`], [`Outage::failed`]) — its task was
/// blocked, cancelled, or the ledger failed — dropping this hands the probe to another loop,
/// so that no loop waits for an answer that never comes.
#[must_use = "the turn lasts until the call's answer is reported"]
pub(crate) struct Probe<'outage> {
    outage: &'outage Outage,
    probe: Option<u64>,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        let Some(probe) = self.probe else {
            return;
        };
        let mut state = self.outage.lock();
        if state.probe == Some(probe) {
            state.probe = None;
            drop(state);
            self.outage.changed.notify_waiters();
        }
    }
}

impl Outage {
    /// Waits until this loop may call the agent: not while the run is paused, and not while
    /// another loop's probe is under way. After a pause, the first loop to get here is the
    /// probe, until its answer is reported or the returned [`Probe`] drops. Cancellation-safe:
    /// dropping the future leaves no state behind.
    pub(crate) async fn before_call(&self) -> Probe<'_> {
        loop {
            let notified = self.changed.notified();
            let wait = {
                let mut state = self.lock();
                match state.paused_until {
                    Some(until) if Instant::now() < until => Some(until),
                    Some(_) if state.probe.is_some() => None,
                    Some(_) => {
                        let probe = state.next_probe;
                        state.next_probe = probe.wrapping_add(1);
                        state.probe = Some(probe);
                        return Probe {
                            outage: self,
                            probe: Some(probe),
                        };
                    }
                    None => {
                        return Probe {
                            outage: self,
                            probe: None,
                        };
                    }
                }
            };
            match wait {
                Some(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// A call got an answer from the API (any answer but a transient failure): the outage,
    /// if there was one, is over.
    pub(crate) fn succeeded(&self) {
        let mut state = self.lock();
        let was_paused = state.paused_until.is_some();
        *state = State {
            next_probe: state.next_probe,
            ..State::default()
        };
        drop(state);
        if was_paused {
            self.changed.notify_waiters();
        }
    }

    /// A call failed transiently: decides whether the run pauses, and for how long.
    pub(crate) fn failed(&self, policy: &RetryPolicy) -> AfterFailure {
        if policy.outage_after == 0 {
            return AfterFailure::OwnRetry;
        }
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(since) = state.streak_since
            && now.duration_since(since) > policy.outage_window
            && state.paused_until.is_none()
        {
            // Failures too far apart are no outage: the streak starts again.
            state.failures = 0;
        }
        if state.failures == 0 {
            state.streak_since = Some(now);
        }
        state.failures = state.failures.saturating_add(1);
        let paused_now = state.paused_until.is_some_and(|until| now < until);
        if paused_now {
            // A call that was under way when the pause began: it waits for the same pause.
            let wait = state
                .paused_until
                .map_or(Duration::ZERO, |until| until - now);
            return AfterFailure::Paused {
                failures: state.failures,
                wait,
                announce: false,
            };
        }
        if state.failures < policy.outage_after && state.paused_until.is_none() {
            return AfterFailure::OwnRetry;
        }
        let wait = pause(policy, state.pauses);
        if state.paused.saturating_add(wait) > policy.max_outage {
            return AfterFailure::GiveUp {
                paused: state.paused,
            };
        }
        state.pauses = state.pauses.saturating_add(1);
        state.paused = state.paused.saturating_add(wait);
        state.paused_until = Some(now + wait);
        state.probe = None;
        let failures = state.failures;
        drop(state);
        self.changed.notify_waiters();
        AfterFailure::Paused {
            failures,
            wait,
            announce: true,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pause after `pauses` earlier ones: the first pause, doubling, up to the longest
/// back-off.
fn pause(policy: &RetryPolicy, pauses: u32) -> Duration {
    let factor = 2u32.saturating_pow(pauses);
    policy
        .outage_pause
        .saturating_mul(factor)
        .min(policy.max_delay.max(policy.outage_pause))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            outage_after: 3,
            outage_window: Duration::from_secs(60),
            outage_pause: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            max_outage: Duration::from_secs(100),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_pause_the_run_with_growing_pauses_then_give_up() {
        let outage = Outage::default();
        let policy = policy();
        assert_eq!(outage.failed(&policy), AfterFailure::OwnRetry);
        assert_eq!(outage.failed(&policy), AfterFailure::OwnRetry);
        let mut waits = Vec::new();
        loop {
            match outage.failed(&policy) {
                AfterFailure::Paused { wait, announce, .. } => {
                    assert!(announce);
                    waits.push(wait.as_secs());
                    let _probe = outage.before_call().await;
                }
                AfterFailure::GiveUp { paused } => {
                    // The next pause (60 s) would take the total past the 100 s bound.
                    assert_eq!(paused, Duration::from_secs(70));
                    break;
                }
                AfterFailure::OwnRetry => panic!("an outage is never the task's own retry"),
            }
        }
        assert_eq!(waits, [10, 20, 40]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_ends_the_outage_and_a_probe_goes_first() {
        let outage = std::sync::Arc::new(Outage::default());
        let policy = policy();
        for _ in 0..3 {
            outage.failed(&policy);
        }
        let _probe = outage.before_call().await;
        let waiting = {
            let outage = std::sync::Arc::clone(&outage);
            tokio::spawn(async move {
                let _probe = outage.before_call().await;
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "others wait for the probe");
        outage.succeeded();
        waiting.await.unwrap();
        assert_eq!(outage.failed(&policy), AfterFailure::OwnRetry);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_ends_without_an_answer_hands_the_turn_on() {
        let outage = std::sync::Arc::new(Outage::default());
        let policy = policy();
        for _ in 0..3 {
            outage.failed(&policy);
        }
        let probe = outage.before_call().await;
        let waiting = {
            let outage = std::sync::Arc::clone(&outage);
            tokio::spawn(async move {
                let _probe = outage.before_call().await;
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "others wait for the probe");
        // The probe's task is blocked before it calls: another loop becomes the probe.
        drop(probe);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting loop goes on once the probe is given up")
            .unwrap();
    }
}
