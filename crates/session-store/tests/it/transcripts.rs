//! Session transcripts: saved verbatim (never redacted), replaced whole, read back byte for
//! byte, on both backends.

use agent::{SessionId, Transcript};
use session_store::{Missing, StoreError, Timestamp};

use crate::common::{add_task, call, fake_owner, new_session, temp_store};

/// A transcript with what a redactor would touch and what a careless copy would lose: a
/// token-shaped secret, non-ASCII text, CRLF, trailing spaces and no final newline.
fn awkward_transcript() -> String {
    let secret = format!("sk-ant-api03-{}", "A1b2C3d4".repeat(12));
    format!(
        "{{\"type\":\"user\",\"message\":{{\"content\":\"use {secret}\"}}}}\n\
         {{\"type\":\"assistant\",\"text\":\"naïve café 😀 \\u0000\"}}\r\n   \n\
         {{\"type\":\"user\",\"cut\":"
    )
}

on_both_backends! {
    fn a_transcript_reads_back_byte_for_byte_and_unredacted() {
        let (lab, mut store) = temp_store();
        let task = add_task(&mut store, lab.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        assert_eq!(store.session_transcript(session.id).unwrap(), None);

        let before = Timestamp::now();
        let content = awkward_transcript();
        store
            .save_session_transcript(session.id, &Transcript::verbatim(content.clone()))
            .unwrap();
        let stored = store.session_transcript(session.id).unwrap().unwrap();
        assert_eq!(stored.session, session.id);
        assert_eq!(stored.transcript.as_str(), content, "kept verbatim, secret included");
        assert_eq!(stored.size, content.len() as u64);
        assert!(stored.copied_at >= before);

        // A later copy replaces the earlier one whole, and a large one is kept whole.
        let large = "{\"line\":\"x\"}\n".repeat(200_000);
        store
            .save_session_transcript(session.id, &Transcript::verbatim(large.clone()))
            .unwrap();
        let stored = lab.open().session_transcript(session.id).unwrap().unwrap();
        assert_eq!(stored.transcript.as_str(), large);
        assert_eq!(stored.size, large.len() as u64);
    }

    fn a_transcript_is_saved_in_the_batch_of_its_call() {
        let (lab, mut store) = temp_store();
        let task = add_task(&mut store, lab.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let transcript = Transcript::verbatim("{\"type\":\"user\"}\n");
        store
            .batch("record a call and its transcript", |batch| {
                batch.record_agent_call(&call(session.id, task, 0))?;
                batch.save_session_transcript(session.id, &transcript)
            })
            .unwrap();
        let stored = store.session_transcript(session.id).unwrap().unwrap();
        assert_eq!(stored.transcript, transcript);
        assert_eq!(store.session(session.id).unwrap().totals.agent_calls, 1);
    }

    fn a_transcript_of_an_unknown_session_is_refused() {
        let (_lab, mut store) = temp_store();
        let unknown = SessionId::new_v4();
        let error = store
            .save_session_transcript(unknown, &Transcript::verbatim("x"))
            .unwrap_err();
        assert!(
            matches!(error, StoreError::NotFound(Missing::Session(id)) if id == unknown),
            "{error:?}"
        );
        assert_eq!(store.session_transcript(unknown).unwrap(), None);
    }
}
