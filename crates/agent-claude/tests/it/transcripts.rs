//! A session's transcript read after a call and restored under another config dir, as a
//! runner on another host does, through the real CLI against the stand-in.

use std::fs;

use agent::{Agent, AgentError, CancellationToken, EventSink, Restored, SessionId, SessionPlan};
use agent_claude::{CONFIG_DIR_VARIABLE, ClaudeAgent, project_dir_name};
use api_standin::{Answer, Script};

use crate::support::Harness;

#[tokio::test]
async fn a_session_resumes_under_another_config_dir_from_its_restored_transcript() {
    let Some(h) = Harness::new(
        "a_session_resumes_under_another_config_dir_from_its_restored_transcript",
        Script::queue([
            Answer::text("Noted: the word is QUINCE-REPLY."),
            Answer::text("It was QUINCE."),
        ]),
    ) else {
        return;
    };
    // The call goes through a symbolic link whose name the path rule mangles: the CLI names
    // the project dir after the physical directory.
    let link = h.env.home().join("link.to_work");
    std::os::unix::fs::symlink(&h.work_dir, &link).unwrap();
    let id = SessionId::new_v4();
    let mut first = h.call("Remember the word QUINCE.", SessionPlan::Start(id));
    first.working_dir = link.clone();
    assert!(!h.agent.has_transcript(&first).await.unwrap());
    h.agent
        .call(first.clone(), EventSink::none(), CancellationToken::new())
        .await
        .unwrap();

    let config_a = h.env.home().join(".claude");
    let physical = fs::canonicalize(&h.work_dir).unwrap();
    let written = config_a
        .join("projects")
        .join(project_dir_name(&physical))
        .join(format!("{id}.jsonl"));
    assert!(written.is_file(), "no transcript at {}", written.display());
    assert!(h.agent.has_transcript(&first).await.unwrap());
    let transcript = h.agent.read_transcript(&first).await.unwrap().unwrap();
    assert_eq!(transcript.as_str().as_bytes(), fs::read(&written).unwrap());
    assert!(transcript.as_str().contains("Remember the word QUINCE."));

    // Another host: the same CLI under an empty config dir. Without the transcript put
    // back, it finds no conversation, though `$HOME/.claude` (the first config dir) has it.
    let host = |name: &str| {
        let dir = h.env.home().join(name);
        fs::create_dir(&dir).unwrap();
        let mut config = h.agent.config().clone();
        config.env.insert(
            CONFIG_DIR_VARIABLE.to_owned(),
            dir.to_string_lossy().into_owned(),
        );
        (dir, ClaudeAgent::new(config))
    };
    let second = h.call("Which word was it?", SessionPlan::Resume(id));
    let (_, bare) = host("host-bare");
    let error = bare
        .call(second.clone(), EventSink::none(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(error, AgentError::SessionNotFound { session_id } if session_id == id),
        "{error:?}"
    );
    let (config_b, host_b) = host("host-b");
    assert!(!host_b.has_transcript(&second).await.unwrap());
    let restored = host_b
        .restore_transcript(&second, &transcript)
        .await
        .unwrap();
    let into_b = config_b
        .join("projects")
        .join(project_dir_name(&physical))
        .join(format!("{id}.jsonl"));
    assert_eq!(
        restored,
        Restored::Written {
            path: into_b.clone()
        }
    );
    let reply = host_b
        .call(second, EventSink::none(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(reply.session_id, id);
    assert_eq!(reply.result_text.as_deref(), Some("It was QUINCE."));

    // The bare host's resume made no request.
    let requests = h.standin.message_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].session_id(), Some(id.to_string().as_str()));
    assert!(requests[1].messages_contain("Remember the word QUINCE."));
    assert!(requests[1].messages_contain("Noted: the word is QUINCE-REPLY."));
    // The CLI appended to the restored file, under B; A's copy is as it was.
    let continued = fs::read_to_string(&into_b).unwrap();
    assert!(continued.starts_with(transcript.as_str()));
    assert!(continued.contains("Which word was it?"));
    assert_eq!(fs::read_to_string(&written).unwrap(), transcript.as_str());
}
