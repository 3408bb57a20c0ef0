//! Secrets never reach the database file: a fake key written through every write API is
//! absent from the file's bytes, and what is read back says what was taken out.
//!
//! The store takes free text only as [`Redacted`], so every field below goes through the
//! test's redactor: the type leaves no other way (the `redact` crate's doctests pin that a
//! `Redacted` cannot be made from plain text). What the type cannot prove is that the texts
//! the store composes itself are redacted with the redactor it was opened with; the second
//! test shows that.

use std::path::Path;
use std::time::Duration;

use agent::{ErrorKind, SessionId};
use redact::{Redacted, Redactor};
use session_store::{
    CallOutcome, EventFilter, LeaseOwner, NewEvent, NewMilestone, NewSession, NewTask,
    NewVerification, SessionPolicy, SessionStatus, Store, StoreOptions, TaskStatus, Timestamp,
};

use crate::common::{call, dead_local_owner, fake_owner};

/// Made up, shaped like an Anthropic key so that both ways of finding it apply.
const FAKE_KEY: &str = "sk-ant-api03-FAKEFAKEFAKE-ledger-test-0123456789abcdefXYZ";
/// Made up, shaped like a GitHub token, and in no variable: only its shape gives it away.
const FAKE_GITHUB: &str = "ghp_FAKEledgerTest0123456789abcdefghijkl";
/// Made up, in a variable, with a character JSON escapes.
const FAKE_QUOTED: &str = "pa\"ss-word-FAKE-0042";

/// What the CLI would build from an environment holding the two variables.
fn redactor() -> Redactor {
    Redactor::from_vars([
        ("ANTHROPIC_API_KEY", FAKE_KEY),
        ("DB_PASSWORD", FAKE_QUOTED),
    ])
}

fn options() -> StoreOptions {
    StoreOptions::new(redactor())
}

/// Text that carries every secret, the way check output or an agent's answer might.
fn raw_leaky(what: &str) -> String {
    format!("{what}: key={FAKE_KEY} token={FAKE_GITHUB} password={FAKE_QUOTED}")
}

/// [`raw_leaky`], redacted as a caller of the store must.
fn leaky(what: &str) -> Redacted {
    redactor().redact_owned(raw_leaky(what))
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

on_both_backends! {
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
        new_task.verify_commands = vec![leaky("echo"), Redacted::trusted("true")];
        let task = store.add_task(&new_task).unwrap();
        let other = store
            .add_task(&NewTask::new(
                redact::Redacted::trusted("plain"),
                redact::Redacted::trusted("plain"),
                directory.path(),
            ))
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
                output_tail: redactor().redact_owned(raw_leaky("output").repeat(100)),
                duration: Duration::from_millis(5),
            })
            .unwrap();
        store
            .append_event(&NewEvent {
                task: Some(task),
                session: Some(session.id),
                kind: leaky("kind"),
                detail: redactor()
                    .redact_json_value(serde_json::json!({ "said": raw_leaky("json detail"), "n": 1 })),
            })
            .unwrap();
        store
            .append_event(&NewEvent {
                task: None,
                session: None,
                kind: redact::Redacted::trusted("note"),
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
            .add_task(&NewTask::new(
                leaky("third"),
                Redacted::trusted("p"),
                directory.path(),
            ))
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

    /// A host name, a reason or guidance that reaches the store redacted by a caller's redactor
    /// that did not know a secret (here, one that knows token shapes only), and that the store
    /// composes into a text of its own: the composed text is redacted with the redactor the store
    /// was opened with.
    fn texts_the_store_composes_are_redacted_with_the_redactor_given_at_open() {
        const SECRET: &str = "composed-secret-value-0042";
        let directory = tempfile::tempdir().unwrap();
        let known = Redactor::new().with_value("RUNNER_TOKEN", SECRET);
        let mut store =
            Store::open_with(directory.path().join("baton.db"), &StoreOptions::new(known)).unwrap();
        let unaware = Redactor::new();
        let task = store
            .add_task(&NewTask::new(
                Redacted::trusted("t"),
                Redacted::trusted("p"),
                directory.path(),
            ))
            .unwrap();

        // The sweep's reason names the lease holder, whose host carries the secret.
        let leaky_owner = LeaseOwner {
            pid: 4242,
            host: format!("host-{SECRET}"),
            start_time: 1,
        };
        store.claim_task(task, &fake_owner(7)).unwrap();
        let swept = NewSession {
            id: SessionId::new_v4(),
            task,
            milestone: None,
            policy: SessionPolicy::Task,
            owner: leaky_owner,
            lease_ttl: Duration::from_secs(3600),
        };
        store.open_session(&swept).unwrap();
        store.sweep_stale(Timestamp::now(), |_| false).unwrap();
        let end_reason = store.session(swept.id).unwrap().end_reason.unwrap();
        assert_eq!(
            end_reason,
            "its lease holder, process 4242 on host-[redacted RUNNER_TOKEN], is gone"
        );

        // Reopening logs how the session had ended, read back from the row, where a caller's
        // redactor that did not know the secret let it through.
        let owner = LeaseOwner::current().unwrap();
        let resumed = NewSession {
            id: SessionId::new_v4(),
            owner: owner.clone(),
            ..swept.clone()
        };
        store.open_session(&resumed).unwrap();
        let reason = unaware.redact_owned(format!("closed after {SECRET}"));
        store
            .close_session(resumed.id, SessionStatus::Failed, Some(&reason))
            .unwrap();
        store
            .reopen_session(resumed.id, &owner, Duration::from_secs(3600))
            .unwrap();

        // Retrying with guidance logs "retried with guidance: …".
        store
            .set_task_status(task, TaskStatus::Failed, Some(&Redacted::trusted("failed")))
            .unwrap();
        let guidance = unaware.redact_owned(format!("try {SECRET} instead"));
        store.retry_task(task, Some(&guidance)).unwrap();

        let events = store.events(&EventFilter::default()).unwrap();
        let detail = |kind: &str| {
            let event = events
                .iter()
                .rev()
                .find(|event| event.kind == kind)
                .unwrap_or_else(|| panic!("a `{kind}` event"));
            serde_json::from_str::<serde_json::Value>(&event.detail).unwrap()
        };
        assert_eq!(
            detail("session_swept")["owner"]["host"],
            "host-[redacted RUNNER_TOKEN]"
        );
        assert_eq!(
            detail("session_reopened")["end_reason"],
            "closed after [redacted RUNNER_TOKEN]"
        );
        assert_eq!(
            detail("task_status")["reason"],
            "retried with guidance: try [redacted RUNNER_TOKEN] instead"
        );
        assert!(
            !format!("{events:?}").contains(SECRET),
            "no event holds the secret: {events:#?}"
        );
    }
}
