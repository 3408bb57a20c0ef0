//! Helpers shared by the integration tests: temporary stores, fake lease owners, and calls
//! with distinct figures.

use std::path::Path;
use std::time::Duration;

use agent::{ExitInfo, PlanKind, SessionId, Usage};
use redact::{Redacted, Redactor};
use session_store::{
    CallOutcome, Cost, LeaseOwner, MilestoneId, NewAgentCall, NewMilestone, NewSession, NewTask,
    SessionPolicy, Store, StoreOptions, TaskId, Timestamp,
};
use tempfile::TempDir;

/// The store's options in these tests: a redactor that knows the token shapes only.
pub fn options() -> StoreOptions {
    StoreOptions::new(Redactor::new())
}

/// A literal of the test, as the store takes text.
pub fn text(literal: &'static str) -> Redacted {
    Redacted::trusted(literal)
}

/// Text the test composed, as the store takes text.
pub fn composed(text: String) -> Redacted {
    Redactor::new().redact_owned(text)
}

/// A store on a new file in a new temporary directory, which lives as long as the `TempDir`.
pub fn temp_store() -> (TempDir, Store) {
    let directory = tempfile::tempdir().expect("a temporary directory can be created");
    let store = Store::open_with(directory.path().join("baton.db"), &options())
        .expect("a new ledger opens");
    (directory, store)
}

/// A lease owner that is not a real process: on a host of its own, so only lease expiry can
/// make it stale.
pub fn fake_owner(pid: u32) -> LeaseOwner {
    LeaseOwner {
        pid,
        host: String::from("fake-host.invalid"),
        start_time: 1000 + u64::from(pid),
    }
}

/// A lease owner on this host whose process certainly does not exist.
pub fn dead_local_owner() -> LeaseOwner {
    LeaseOwner {
        // Above the kernel's largest pid_max (2^22), so no process has it.
        pid: 1 << 23,
        ..LeaseOwner::current().expect("this process has an identity")
    }
}

/// A milestone named `name`, with no description or policy.
pub fn add_milestone(store: &mut Store, name: &str) -> MilestoneId {
    store
        .create_milestone(&NewMilestone {
            name: composed(name.to_owned()),
            description: text(""),
            policy: None,
        })
        .expect("a new milestone is created")
}

/// A task in `directory` with default settings.
pub fn add_task(store: &mut Store, directory: &Path, title: &str) -> TaskId {
    store
        .add_task(&NewTask::new(
            composed(title.to_owned()),
            composed(format!("do {title}")),
            directory,
        ))
        .expect("a valid task is added")
}

/// A session of `task` under the task policy, leased to `owner` for an hour.
pub fn new_session(task: TaskId, owner: LeaseOwner) -> NewSession {
    NewSession {
        id: SessionId::new_v4(),
        task,
        milestone: None,
        policy: SessionPolicy::Task,
        owner,
        lease_ttl: Duration::from_secs(3600),
    }
}

/// A successful call whose figures all derive from `seed`, so that different calls add up to
/// sums that catch a lost or doubled update.
pub fn call(session: SessionId, task: TaskId, seed: u64) -> NewAgentCall {
    let started_at = Timestamp::from_millis(1_700_000_000_000 + seed as i64);
    NewAgentCall {
        session,
        task,
        iteration: 1 + (seed % 3) as u32,
        plan: if seed == 0 {
            PlanKind::Start
        } else {
            PlanKind::Resume
        },
        prompt: composed(format!("prompt {seed}")),
        result_text: Some(composed(format!("result {seed}"))),
        outcome: CallOutcome::Success,
        subtype: Some(text("success")),
        error_message: None,
        reported_session: Some(session),
        usage: Usage {
            input_tokens: 100 + seed,
            output_tokens: 20 + 2 * seed,
            cache_read_tokens: 1000 + 7 * seed,
            cache_creation_tokens: 50 + seed % 11,
        },
        cost: Cost::from_nano_usd(1_234_567 + 1_001 * seed as i64),
        turns: 1 + (seed % 5) as u32,
        duration: Duration::from_millis(300 + seed),
        exit: Some(ExitInfo::Code(0)),
        started_at,
        ended_at: started_at.saturating_add(Duration::from_millis(300 + seed)),
    }
}
