//! A session's transcript as the agent keeps it, and the optional capability of an agent to
//! hand it over after a call and put it back before a resume.
//!
//! Claude Code keeps a session's conversation in a file on the host that ran it; a session
//! continued on another host finds nothing to resume. An agent that can read and restore its
//! transcripts lets Baton carry them in the ledger (see [`Agent::read_transcript`] and
//! [`Agent::restore_transcript`]); one that cannot keeps the trait's defaults, which say so.
//!
//! [`Agent::read_transcript`]: crate::Agent::read_transcript
//! [`Agent::restore_transcript`]: crate::Agent::restore_transcript

use std::fmt;
use std::path::{Path, PathBuf};

/// A session's transcript exactly as the agent wrote it: never redacted, never reformatted.
///
/// A resume needs the file byte for byte, so this is the one kind of free text Baton keeps
/// without passing it through a redactor: it may hold anything the agent saw (file contents,
/// command output, secrets among them). It is UTF-8 text: Claude Code writes JSON lines.
#[derive(Clone, PartialEq, Eq)]
pub struct Transcript {
    text: String,
}

impl Transcript {
    /// The transcript whose content is `text`, as the agent wrote it.
    pub fn verbatim(text: impl Into<String>) -> Transcript {
        Transcript { text: text.into() }
    }

    /// The transcript's content.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The content's size in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether the transcript is empty.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether this transcript goes on from `older`: it begins with all of it and holds more.
    /// An agent's transcript only ever grows, so such a copy is a later state of the same
    /// conversation (the session went on elsewhere since `older` was written).
    pub fn extends(&self, older: &str) -> bool {
        self.text.len() > older.len() && self.text.starts_with(older)
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

impl fmt::Debug for Transcript {
    /// The size only: a transcript may hold secrets, and is long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transcript({} bytes)", self.text.len())
    }
}

/// Why a transcript could not be read or put in place.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The agent keeps no transcripts Baton can carry (the trait's default).
    #[error("this agent does not hand over its transcripts")]
    Unsupported,
    /// The agent does not know where its transcripts are (no config dir, no home).
    #[error("the agent's transcript directory is unknown")]
    NoLocation,
    /// Reading or writing the transcript's file failed.
    #[error("failed to {operation} the transcript {}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8 text, so it cannot be carried verbatim as text.
    #[error("the transcript {} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
}

/// What [`Agent::restore_transcript`](crate::Agent::restore_transcript) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The transcript was written where a resume finds it.
    Written { path: PathBuf },
    /// The agent has a transcript of the session already; it was left as it is.
    AlreadyThere { path: PathBuf },
}

/// The longest project dir name Claude Code uses before it cuts the name and adds a hash.
pub const MAX_PROJECT_DIR_LEN: usize = 200;

/// The name of the directory under `<config dir>/projects/` that holds the transcripts of
/// sessions run in `working_dir` (a physical path), as Claude Code 2.1.328 names it (observed;
/// `docs/claude-cli-observed.md`): every UTF-16 code unit that is not an ASCII letter or
/// digit becomes `-`, and a name longer than [`MAX_PROJECT_DIR_LEN`] is cut there and given
/// `-` and a base-36 hash of the whole path, so that deep directories stay distinct.
///
/// The real agent and the mock one both follow it, so it lives with the contract.
///
/// ```
/// use std::path::Path;
/// use agent::project_dir_name;
///
/// assert_eq!(project_dir_name(Path::new("/tmp/obs/work.dir/sub")), "-tmp-obs-work-dir-sub");
/// assert_eq!(project_dir_name(Path::new("/tmp/a_b c+d~é")), "-tmp-a-b-c-d--");
/// ```
pub fn project_dir_name(working_dir: &Path) -> String {
    let path = working_dir.to_string_lossy();
    // JavaScript replaces per UTF-16 code unit, so a character outside the BMP becomes "--".
    let mut name = String::with_capacity(path.len());
    for character in path.chars() {
        if character.is_ascii_alphanumeric() {
            name.push(character);
        } else {
            name.extend(std::iter::repeat_n('-', character.len_utf16()));
        }
    }
    if name.len() <= MAX_PROJECT_DIR_LEN {
        return name;
    }
    // Every character of `name` is ASCII, so cutting at a byte index is cutting at a character.
    name.truncate(MAX_PROJECT_DIR_LEN);
    name.push('-');
    name.push_str(&to_base36(java_string_hash(&path).unsigned_abs()));
    name
}

/// Java's `String.hashCode` over UTF-16 code units, which Claude Code uses for long names.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

fn to_base36(mut value: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if value == 0 {
        return String::from("0");
    }
    let mut digits = Vec::new();
    while value > 0 {
        digits.push(DIGITS[(value % 36) as usize]);
        value /= 36;
    }
    digits.into_iter().rev().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mangles_every_non_alphanumeric_unit() {
        assert_eq!(
            project_dir_name(Path::new("/tmp/obs/work.dir/sub")),
            "-tmp-obs-work-dir-sub"
        );
        assert_eq!(
            project_dir_name(Path::new("/tmp/obs/a_b c+d~é")),
            "-tmp-obs-a-b-c-d--"
        );
        // An emoji is two UTF-16 code units, so two dashes.
        assert_eq!(project_dir_name(Path::new("/e😀x")), "-e--x");
    }

    #[test]
    fn long_names_are_cut_and_hashed_like_the_real_cli() {
        // Names observed from Claude Code 2.1.328 for these directories.
        let path = format!("/tmp/obs/e😀x/{}/{}", "a".repeat(120), "b".repeat(120));
        let name = project_dir_name(Path::new(&path));
        assert_eq!(name.len(), 207);
        assert!(name.starts_with("-tmp-obs-e--x-aaaa"), "{name}");
        assert!(name.ends_with(
            "-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-l8r3kq"
        ));

        let exactly_200 = format!("/tmp/obs/{}", "c".repeat(191));
        assert_eq!(project_dir_name(Path::new(&exactly_200)).len(), 200);
        let just_over = format!("/tmp/obs/{}", "d".repeat(192));
        assert!(project_dir_name(Path::new(&just_over)).ends_with("ddd-kyk8k6"));
    }

    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(to_base36(0), "0");
        assert_eq!(to_base36(35), "z");
        assert_eq!(to_base36(36), "10");
    }
}
