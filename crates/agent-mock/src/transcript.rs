//! Where Claude Code keeps session transcripts, and how `mock-claude` writes and reads them.
//!
//! Claude Code 2.1.328 (observed) keeps one JSON-lines file per session at
//! `<config dir>/projects/<project dir>/<session id>.jsonl`, where the config dir is
//! `$CLAUDE_CONFIG_DIR` or `$HOME/.claude`, and the project dir is the physical working
//! directory with every UTF-16 code unit that is not an ASCII letter or digit replaced by `-`.
//! A name longer than 200 characters is cut to 200 and given `-` and a base-36 hash of the
//! whole path, so that deep directories stay distinct. [`project_dir_name`] is that rule (the
//! `agent` crate's, shared with the real agent).
//!
//! `--session-id` refuses an id whose transcript exists in the working directory's project
//! dir; `--resume` finds a transcript there first and then in any other project dir (observed:
//! 2.1.328 resumes a session from another directory and appends to the original file).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use agent::{SessionId, Usage};
use serde_json::{Value, json};

pub use agent::{MAX_PROJECT_DIR_LEN, project_dir_name};

/// The transcripts Claude Code keeps under one config dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcripts {
    projects: PathBuf,
}

impl Transcripts {
    /// The transcripts of a CLI run with `HOME=home` (and no `CLAUDE_CONFIG_DIR`).
    pub fn in_home(home: &Path) -> Transcripts {
        Transcripts::in_config_dir(&home.join(".claude"))
    }

    /// The transcripts of a CLI run with `CLAUDE_CONFIG_DIR=config_dir`.
    pub fn in_config_dir(config_dir: &Path) -> Transcripts {
        Transcripts {
            projects: config_dir.join("projects"),
        }
    }

    /// The directory holding every project dir.
    pub fn projects_dir(&self) -> &Path {
        &self.projects
    }

    /// Where a session started in `cwd` keeps its transcript.
    pub fn path(&self, cwd: &Path, session_id: SessionId) -> PathBuf {
        self.projects
            .join(project_dir_name(cwd))
            .join(format!("{session_id}.jsonl"))
    }

    /// The transcript `--resume <session_id>` run in `cwd` continues: the one in `cwd`'s
    /// project dir, else the first one found in another project dir.
    pub fn find(&self, cwd: &Path, session_id: SessionId) -> Option<PathBuf> {
        let own = self.path(cwd, session_id);
        if own.is_file() {
            return Some(own);
        }
        let file_name = format!("{session_id}.jsonl");
        let mut project_dirs: Vec<PathBuf> = fs::read_dir(&self.projects)
            .ok()?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        // Sorted, so that which copy is found does not depend on the directory's order.
        project_dirs.sort();
        project_dirs
            .into_iter()
            .map(|dir| dir.join(&file_name))
            .find(|candidate| candidate.is_file())
    }
}

/// Who said one message of a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One message of a transcript that carries text: a prompt or an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptMessage {
    pub role: Role,
    pub text: String,
}

/// The prompts and answers in a transcript file, in order.
///
/// It reads both `mock-claude`'s transcripts and the real CLI's: lines of other types, tool
/// calls and tool results are skipped, and so is a line that is not JSON (a line cut short by a
/// killed process).
pub fn read_transcript(path: &Path) -> io::Result<Vec<TranscriptMessage>> {
    let reader = BufReader::new(File::open(path)?);
    let mut messages = Vec::new();
    for line in reader.split(b'\n') {
        let Ok(value) = serde_json::from_slice::<Value>(&line?) else {
            continue;
        };
        let role = match value["type"].as_str() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => continue,
        };
        let text = message_text(&value["message"]["content"]);
        if text.is_empty() {
            continue;
        }
        messages.push(TranscriptMessage { role, text });
    }
    Ok(messages)
}

/// The cost and usage of a session's calls so far, as `mock-claude` records them on its
/// `assistant` lines (`costUSD` and `message.usage`). The real CLI restores the same totals on
/// `--resume`; its own transcripts carry no `costUSD`.
pub(crate) fn session_totals(path: &Path) -> io::Result<(f64, Usage)> {
    let reader = BufReader::new(File::open(path)?);
    let mut cost = 0.0;
    let mut usage = Usage::ZERO;
    for line in reader.split(b'\n') {
        let Ok(value) = serde_json::from_slice::<Value>(&line?) else {
            continue;
        };
        if value["type"] != "assistant" {
            continue;
        }
        let Some(line_cost) = value["costUSD"].as_f64() else {
            continue;
        };
        cost += line_cost;
        let tokens = |name: &str| value["message"]["usage"][name].as_u64().unwrap_or(0);
        usage += Usage {
            input_tokens: tokens("input_tokens"),
            output_tokens: tokens("output_tokens"),
            cache_read_tokens: tokens("cache_read_input_tokens"),
            cache_creation_tokens: tokens("cache_creation_input_tokens"),
        };
    }
    Ok((cost, usage))
}

/// What `mock-claude` writes to a transcript: one line per prompt and per answer, shaped like
/// the real CLI's `user` and `assistant` lines.
pub(crate) struct TranscriptWriter {
    file: File,
    session_id: SessionId,
    cwd: String,
}

impl TranscriptWriter {
    /// Opens `path` for appending, creating it and its directory when needed.
    pub(crate) fn open(
        path: &Path,
        session_id: SessionId,
        cwd: &Path,
    ) -> io::Result<TranscriptWriter> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(TranscriptWriter {
            file,
            session_id,
            cwd: cwd.to_string_lossy().into_owned(),
        })
    }

    pub(crate) fn prompt(&mut self, prompt: &str) -> io::Result<()> {
        self.write_line(json!({
            "type": "user",
            "message": {"role": "user", "content": prompt},
            "sessionId": self.session_id.to_string(),
            "cwd": self.cwd,
            "uuid": uuid::Uuid::new_v4().to_string(),
            "timestamp": iso8601(SystemTime::now()),
            "entrypoint": "mock-claude",
        }))
    }

    pub(crate) fn answer(
        &mut self,
        text: &str,
        model: &str,
        usage: &Value,
        cost_usd: f64,
    ) -> io::Result<()> {
        self.write_line(json!({
            "type": "assistant",
            "message": {
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "usage": usage,
            },
            "costUSD": cost_usd,
            "sessionId": self.session_id.to_string(),
            "cwd": self.cwd,
            "uuid": uuid::Uuid::new_v4().to_string(),
            "timestamp": iso8601(SystemTime::now()),
            "entrypoint": "mock-claude",
        }))
    }

    fn write_line(&mut self, value: Value) -> io::Result<()> {
        let mut line = value.to_string();
        line.push('\n');
        // One write per line, so that lines of two processes appending at once stay whole.
        self.file.write_all(line.as_bytes())
    }
}

/// The text of a message's `content`: a string, or the `text` blocks of a list.
fn message_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|block| block["type"] == "text")
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// `2026-11-24T04:08:52.411Z`, as the real transcripts write times.
pub(crate) fn iso8601(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_times_like_the_cli() {
        let time = UNIX_EPOCH + Duration::from_millis(1_795_493_332_411);
        assert_eq!(iso8601(time), "2026-11-24T04:08:52.411Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn reads_text_of_mock_and_real_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let id = SessionId::new_v4();
        let mut writer = TranscriptWriter::open(&path, id, dir.path()).unwrap();
        writer.prompt("first prompt").unwrap();
        writer
            .answer("first answer", "m", &json!({}), 0.25)
            .unwrap();
        drop(writer);
        // Lines the real CLI writes: a queue operation, a tool result, a text block list.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        writeln!(
            file,
            r#"{{"type":"queue-operation","operation":"enqueue"}}"#
        )
        .unwrap();
        writeln!(
            file,
            r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","content":"ok"}}]}}}}"#
        )
        .unwrap();
        writeln!(
            file,
            r#"{{"type":"assistant","message":{{"content":[{{"type":"text","text":"real"}}]}}}}"#
        )
        .unwrap();
        writeln!(file, "{{cut short").unwrap();

        let messages = read_transcript(&path).unwrap();
        let texts: Vec<_> = messages.iter().map(|m| (m.role, m.text.as_str())).collect();
        assert_eq!(
            texts,
            vec![
                (Role::User, "first prompt"),
                (Role::Assistant, "first answer"),
                (Role::Assistant, "real"),
            ]
        );
        assert_eq!(session_totals(&path).unwrap().0, 0.25);
    }

    #[test]
    fn find_prefers_the_working_directory_then_any_project() {
        let home = tempfile::tempdir().unwrap();
        let transcripts = Transcripts::in_home(home.path());
        let id = SessionId::new_v4();
        assert_eq!(transcripts.find(Path::new("/w/one"), id), None);

        let elsewhere = transcripts.path(Path::new("/w/two"), id);
        fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
        fs::write(&elsewhere, "").unwrap();
        assert_eq!(transcripts.find(Path::new("/w/one"), id), Some(elsewhere));

        let own = transcripts.path(Path::new("/w/one"), id);
        fs::create_dir_all(own.parent().unwrap()).unwrap();
        fs::write(&own, "").unwrap();
        assert_eq!(transcripts.find(Path::new("/w/one"), id), Some(own));
        assert!(
            transcripts
                .projects_dir()
                .ends_with(Path::new(".claude/projects"))
        );
    }
}
