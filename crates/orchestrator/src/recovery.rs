//! Recovery after a crash: abandon sessions whose runner is gone, stop the agent processes
//! they left behind, and make their tasks runnable again so they resume their sessions.

use std::time::Duration;

use redact::Redacted;
use session_store::{LeaseOwner, StoreError, SweptSession, TaskId, TaskStatus, Timestamp};

use crate::db::Db;

/// How long a stale agent's process group gets between TERM and KILL.
const STALE_AGENT_GRACE: Duration = Duration::from_secs(3);

/// What recovery did about one stale session or orphaned task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The session it abandoned, when it was a session.
    pub session: Option<SweptSession>,
    /// The task it made runnable again.
    pub task: TaskId,
    /// Whether an agent process of the session was still running and was stopped.
    pub stopped_agent: bool,
    /// Whether the task went back to `pending` (it was `running`).
    pub requeued: bool,
}

/// Abandons sessions whose runner is gone, stops the agent processes they left running, and
/// makes their tasks (and tasks whose runner died before opening a session) pending again.
///
/// [`Orchestrator::run`](crate::Orchestrator::run) does this first; it is public on its own
/// for `baton recover`, which needs no agent.
///
/// A runner on another host is alive while it heartbeats: `lease_ttl` is how long its
/// silence may last before its tasks are taken back.
pub async fn recover(db: &Db, lease_ttl: Duration) -> Result<Vec<Recovered>, StoreError> {
    let swept = db
        .run(|store| store.sweep_stale(Timestamp::now(), |owner: &LeaseOwner| owner.is_alive()))
        .await?;
    let here = LeaseOwner::current()?.host;
    let mut recovered = Vec::new();
    for session in swept {
        // A process id names a process on its own host only.
        let local = session
            .owner
            .as_ref()
            .is_none_or(|owner| owner.host == here);
        let stopped_agent = match session.agent {
            Some(agent) if local && agent.is_running() => {
                stop_group(agent.pid).await;
                true
            }
            _ => false,
        };
        let task = session.task;
        let requeued = requeue(db, task, lease_ttl).await?;
        recovered.push(Recovered {
            session: Some(session),
            task,
            stopped_agent,
            requeued,
        });
    }
    // Tasks claimed by a runner that died before it opened a session have no session to
    // sweep; the store finds them by their runner.
    let orphaned = db
        .run(|store| store.requeue_orphaned_tasks(|owner: &LeaseOwner| owner.is_alive()))
        .await?;
    // A runner elsewhere that stopped heartbeating (killed, or cut off) is dead to this one.
    let stale_before = Timestamp::now().saturating_sub(lease_ttl);
    let silent = db
        .run(move |store| store.requeue_tasks_of_silent_runners(stale_before))
        .await?;
    for task in orphaned.into_iter().chain(silent) {
        if recovered.iter().any(|item| item.task == task) {
            continue;
        }
        recovered.push(Recovered {
            session: None,
            task,
            stopped_agent: false,
            requeued: true,
        });
    }
    stop_stale_checks(db).await?;
    Ok(recovered)
}

/// Stops the check processes a dead runner left running, and forgets every recorded check
/// whose runner is gone. A check of a task whose runner still runs here is its runner's.
/// Only the very process recorded (pid and start time) leads the group that is stopped.
async fn stop_stale_checks(db: &Db) -> Result<(), StoreError> {
    let stale = db
        .run(|store| {
            let mut stale = Vec::new();
            for check in store.check_processes()? {
                let runner = store.task(check.task)?.runner;
                if !runner.is_some_and(|runner| runner.is_alive()) {
                    stale.push(check);
                }
            }
            Ok(stale)
        })
        .await?;
    for check in stale {
        if check.is_running_here() {
            stop_group(check.pid).await;
        }
        db.run(move |store| store.clear_check_process(check.task, check.pid))
            .await?;
    }
    Ok(())
}

/// Puts a task whose runner is gone back to `pending`. A task whose runner still runs on this
/// machine (its lease merely expired while it was busy, say in a long check) is left to it:
/// the runner reopens the session before its next call. A task that moved on in the meantime (it
/// finished) is left as it is.
async fn requeue(db: &Db, task: TaskId, lease_ttl: Duration) -> Result<bool, StoreError> {
    let reason = Redacted::trusted(
        "its runner stopped while it was running; it resumes its session on the next run",
    );
    let requeued = db
        .run(move |store| {
            // A runner on this machine is seen alive; one elsewhere is alive while it
            // heartbeats.
            let here = LeaseOwner::current()?.host;
            let runner = store.task(task)?.runner;
            let since = Timestamp::now().saturating_sub(lease_ttl);
            if let Some(runner) = runner {
                let alive = if runner.host == here {
                    runner.is_alive()
                } else {
                    store.is_heartbeating(&runner, since)?
                };
                if alive {
                    return Ok(false);
                }
            }
            store
                .set_task_status(task, TaskStatus::Pending, Some(&reason))
                .map(|_| true)
        })
        .await;
    match requeued {
        Ok(requeued) => Ok(requeued),
        Err(StoreError::InvalidTransition { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Stops a stale agent: TERM to its process group (it leads one), a grace period, then KILL.
async fn stop_group(pid: u32) {
    let Ok(group) = libc::pid_t::try_from(pid) else {
        return;
    };
    signal_group(group, libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + STALE_AGENT_GRACE;
    while tokio::time::Instant::now() < deadline {
        if !group_exists(group) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal_group(group, libc::SIGKILL);
}

fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions; a stale group only yields ESRCH.
    unsafe {
        libc::killpg(group, signal);
    }
}

fn group_exists(group: libc::pid_t) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check.
    unsafe { libc::killpg(group, 0) == 0 }
}
