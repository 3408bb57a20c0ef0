//! Secrets never reach the database file: a fake key written through every write API is
//! absent from the file's bytes, and what is read back says what was taken out.

use std::path::Path;
use std::time::Duration;

use agent::{ErrorKind, SessionId};
use session_store::{
    CallOutcome, EventFilter, LeaseOwner, NewEvent, NewMilestone, NewSession, NewTask,
    NewVerification, Redactor, SessionPolicy, SessionStatus, Store, StoreOptions, TaskStatus,
    Timestamp,
};

use crate::common::{call, dead_local_owner, fake_owner};

/// Made up, shaped like an Anthropic key so that both ways of finding it apply.
const FAKE_KEY: &str = "sk-ant-api03-FAKEFAKEFAKE-ledger-test-0123456789abcdefXYZ";
/// Made up, shaped like a GitHub token, and in no variable: only its shape gives it away.
const FAKE_GITHUB: &str = "ghp_FAKEledgerTest0123456789abcdefghijkl";
/// Made up, in a variable, with a character JSON escapes.
const FAKE_QUOTED: &str = "pa\"ss-word-FAKE-0042";

fn options() -> StoreOptions {
    StoreOptions {
        redactor: Redactor::from_vars([
            ("ANTHROPIC_API_KEY", FAKE_KEY),
            ("DB_PASSWORD", FAKE_QUOTED),
        ]),
        ..StoreOptions::default()
    }
}

/// Text that carries every secret, the way check output or an agent's answer might.
fn leaky(what: &str) -> String {
    format!("{what}: key={FAKE_KEY} token={FAKE_GITHUB} password={FAKE_QUOTED}")
}

/// Whether `bytes` holds `needle`.
fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Asserts that no file of the ledger (the database, its write-ahead log and shared memory)
/// holds any of the secrets, nor a recognisable piece of one.
#[track_caller]
fn assert_no_secret_in_files(path: &Path) {
    let mut checked = 0;
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        checked += 1;
        for secret in [
            FAKE_KEY,
            FAKE_GITHUB,
            FAKE_QUOTED,
            &FAKE_KEY[13..29],
            &FAKE_GITHUB[4..20],
            &FAKE_QUOTED[4..],
        ] {
            assert!(!holds(&bytes, secret), "`{file}` holds `{secret}`");
        }
    }
    assert!(checked > 0, "no ledger file at {}", path.display());
}

#[test]
fn secrets_written_through_every_api_never_reach_the_database_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("baton.db");
    let mut store = Store::open_with(&path, &options()).unwrap();

    let milestone = store
        .create_milestone(&NewMilestone {
            name: leaky("milestone"),
            description: leaky("description"),
            policy: None,
        })
        .unwrap();
    let mut new_task = NewTask::new(leaky("title"), leaky("prompt"), directory.path());
    new_task.milestone = Some(milestone);
    new_task.verify_commands = vec![leaky("echo"), String::from("true")];
    let task = store.add_task(&new_task).unwrap();
    let other = store
        .add_task(&NewTask::new("plain", "plain", directory.path()))
        .unwrap();
    store.add_dependency(other, task).unwrap();

    let owner = LeaseOwner::current().unwrap();
    store.claim_task(task, &owner).unwrap();
    let session = NewSession {
        id: SessionId::new_v4(),
        task,
        milestone: Some(milestone),
        policy: SessionPolicy::Task,
        owner: owner.clone(),
        lease_ttl: Duration::from_secs(3600),
    };
    store.open_session(&session).unwrap();
    let mut recorded = call(session.id, task, 1);
    recorded.prompt = leaky("prompt sent");
    recorded.result_text = Some(leaky("answer"));
    recorded.subtype = Some(leaky("subtype"));
    recorded.error_message = Some(leaky("error"));
    recorded.outcome = CallOutcome::Failed(ErrorKind::Execution);
    store.record_agent_call(&recorded).unwrap();
    store
        .record_verification(&NewVerification {
            task,
            iteration: 1,
            command: leaky("command"),
            exit: None,
            timed_out: true,
            output_tail: leaky("output").repeat(100),
            duration: Duration::from_millis(5),
        })
        .unwrap();
    store
        .append_event(&NewEvent {
            task: Some(task),
            session: Some(session.id),
            kind: leaky("kind"),
            detail: serde_json::json!({ "said": leaky("json detail"), "n": 1 }).to_string(),
        })
        .unwrap();
    store
        .append_event(&NewEvent {
            task: None,
            session: None,
            kind: String::from("note"),
            detail: leaky("plain detail"),
        })
        .unwrap();
    store
        .close_session(session.id, SessionStatus::Failed, Some(&leaky("closed")))
        .unwrap();
    store
        .set_task_status(task, TaskStatus::Failed, Some(&leaky("failed")))
        .unwrap();
    store.retry_task(task, Some(&leaky("guidance"))).unwrap();
    store
        .set_task_guidance(task, Some(&leaky("more guidance")))
        .unwrap();
    // Reopening logs how the session had ended, from the row.
    store
        .reopen_session(session.id, &owner, Duration::from_secs(3600))
        .unwrap();
    store.release_lease(session.id, &owner).unwrap();
    store.sweep_stale(Timestamp::now(), |_| true).unwrap();

    // A second session swept from a dead owner, and a task requeued from a dead runner.
    store
        .set_task_status(task, TaskStatus::Running, None)
        .unwrap();
    let swept = NewSession {
        id: SessionId::new_v4(),
        owner: dead_local_owner(),
        ..session.clone()
    };
    store.open_session(&swept).unwrap();
    store
        .sweep_stale(Timestamp::now(), LeaseOwner::is_alive)
        .unwrap();
    let third = store
        .add_task(&NewTask::new(leaky("third"), "p", directory.path()))
        .unwrap();
    store.claim_task(third, &fake_owner(7)).unwrap();
    store.requeue_orphaned_tasks(|_| false).unwrap();

    // What is read back says what was taken out, and by what name.
    let read = store.task(task).unwrap();
    assert_eq!(
        read.title,
        "title: key=[redacted ANTHROPIC_API_KEY] token=[redacted] password=[redacted DB_PASSWORD]"
    );
    assert!(read.prompt.contains("[redacted ANTHROPIC_API_KEY]"));
    assert!(read.verify_commands[0].contains("[redacted ANTHROPIC_API_KEY]"));
    assert!(
        read.guidance
            .as_deref()
            .unwrap()
            .contains("[redacted DB_PASSWORD]")
    );
    let milestone = store.milestone(milestone).unwrap();
    assert!(milestone.name.contains("[redacted ANTHROPIC_API_KEY]"));
    assert!(milestone.description.contains("[redacted]"));
    let calls = store.calls_for_task(task).unwrap();
    assert!(calls[0].prompt.contains("[redacted ANTHROPIC_API_KEY]"));
    let verifications = store.verifications_for_task(task).unwrap();
    assert!(
        verifications[0]
            .output_tail
            .contains("[redacted ANTHROPIC_API_KEY]")
    );
    let events = store.events(&EventFilter::default()).unwrap();
    let json_event = events
        .iter()
        .find(|event| event.detail.contains("json detail"))
        .expect("the appended JSON event is there");
    let detail: serde_json::Value = serde_json::from_str(&json_event.detail).unwrap();
    assert_eq!(
        detail["said"],
        "json detail: key=[redacted ANTHROPIC_API_KEY] token=[redacted] password=[redacted DB_PASSWORD]",
        "a JSON detail stays JSON"
    );
    assert!(json_event.kind.starts_with("kind: key=[redacted"));
    let everything = format!("{read:?}{milestone:?}{calls:?}{verifications:?}{events:?}");
    for secret in [FAKE_KEY, FAKE_GITHUB, FAKE_QUOTED] {
        assert!(!everything.contains(secret), "read back `{secret}`");
    }

    // The write-ahead log holds every page written so far; then the database file alone.
    assert_no_secret_in_files(&path);
    drop(store);
    let checkpoint = rusqlite::Connection::open(&path).unwrap();
    checkpoint
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(checkpoint);
    assert_no_secret_in_files(&path);
}

#[test]
fn values_added_to_an_open_store_are_redacted_from_then_on() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = Store::open_with(
        directory.path().join("baton.db"),
        &StoreOptions {
            redactor: Redactor::new(),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(store.redactor().names().count(), 0);
    assert!(
        store
            .redactor_mut()
            .add("SERVICE_PASSPHRASE", "correct-horse-battery")
    );
    let task = store
        .add_task(&NewTask::new(
            "t",
            "log in with correct-horse-battery",
            directory.path(),
        ))
        .unwrap();
    assert_eq!(
        store.task(task).unwrap().prompt,
        "log in with [redacted SERVICE_PASSPHRASE]"
    );
}
