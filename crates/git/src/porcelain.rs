//! Readers of git's machine-readable output: `status --porcelain -z` and
//! `worktree list --porcelain -z`. Pure functions, tested on git's exact bytes.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A commit's full object id (40 hex digits, or 64 in a SHA-256 repository).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(String);

/// One entry of `git status --porcelain`: a path with changes not committed on the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// The two status letters (`XY`): index then work tree; `??` is untracked.
    pub code: String,
    /// The path relative to the worktree's top level (for a rename, the new path).
    pub path: PathBuf,
}

/// One worktree, as `git worktree list --porcelain` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// The absolute path git registered (symbolic links resolved).
    pub path: PathBuf,
    /// The commit checked out; `None` for a bare repository or an unborn branch.
    pub head: Option<CommitId>,
    /// The branch checked out (short name, `main` for `refs/heads/main`); `None` when
    /// detached or bare.
    pub branch: Option<String>,
    /// The main worktree of a bare repository (no files).
    pub bare: bool,
    /// HEAD is detached.
    pub detached: bool,
    /// `Some(reason)` when locked (`Some("")` without a reason).
    pub locked: Option<String>,
    /// `Some(reason)` when git would prune it (its directory is gone).
    pub prunable: Option<String>,
}

impl CommitId {
    /// A full hexadecimal object id, or `None`.
    pub fn parse(text: &str) -> Option<CommitId> {
        let text = text.trim();
        let hexadecimal = text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        (hexadecimal && (text.len() == 40 || text.len() == 64)).then(|| CommitId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl AsRef<OsStr> for CommitId {
    fn as_ref(&self) -> &OsStr {
        OsStr::new(&self.0)
    }
}

/// Reads `git status --porcelain=v1 -z`; `None` when the output is malformed.
pub(crate) fn parse_status(output: &[u8]) -> Option<Vec<StatusEntry>> {
    let mut entries = Vec::new();
    let mut fields = output.split(|byte| *byte == 0);
    while let Some(field) = fields.next() {
        if field.is_empty() {
            continue;
        }
        if field.len() < 4 || field[2] != b' ' {
            return None;
        }
        let code = String::from_utf8_lossy(&field[..2]).into_owned();
        // A rename or copy is followed by its original path, which is not an entry.
        if code.contains(['R', 'C']) {
            fields.next()?;
        }
        entries.push(StatusEntry {
            code,
            path: path_from_bytes(&field[3..]),
        });
    }
    Some(entries)
}

/// Reads `git worktree list --porcelain -z`; `None` when the output is malformed.
pub(crate) fn parse_worktrees(output: &[u8]) -> Option<Vec<Worktree>> {
    let mut worktrees = Vec::new();
    let mut current: Option<Worktree> = None;
    for field in output.split(|byte| *byte == 0) {
        if field.is_empty() {
            // An empty field ends a record.
            worktrees.extend(current.take());
            continue;
        }
        let (key, value) = match field.iter().position(|byte| *byte == b' ') {
            Some(space) => (&field[..space], Some(&field[space + 1..])),
            None => (field, None),
        };
        if key == b"worktree" {
            worktrees.extend(current.take());
            current = Some(Worktree::at(path_from_bytes(value?)));
            continue;
        }
        current.as_mut()?.read_attribute(key, value)?;
    }
    worktrees.extend(current);
    Some(worktrees)
}

impl Worktree {
    fn at(path: PathBuf) -> Worktree {
        Worktree {
            path,
            head: None,
            branch: None,
            bare: false,
            detached: false,
            locked: None,
            prunable: None,
        }
    }

    /// Reads one attribute line of a record; `None` when it is malformed. Attributes this
    /// crate does not know are skipped: a later git may add some.
    fn read_attribute(&mut self, key: &[u8], value: Option<&[u8]>) -> Option<()> {
        let text =
            |value: Option<&[u8]>| String::from_utf8_lossy(value.unwrap_or(b"")).into_owned();
        match key {
            b"HEAD" => {
                let head = CommitId::parse(&text(value))?;
                // An unborn branch shows as all zeros.
                self.head = head
                    .as_str()
                    .bytes()
                    .any(|byte| byte != b'0')
                    .then_some(head);
            }
            b"branch" => {
                let reference = text(value);
                let branch = reference.strip_prefix("refs/heads/").unwrap_or(&reference);
                self.branch = Some(branch.to_owned());
            }
            b"bare" => self.bare = true,
            b"detached" => self.detached = true,
            b"locked" => self.locked = Some(text(value)),
            b"prunable" => self.prunable = Some(text(value)),
            _ => {}
        }
        Some(())
    }
}

fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "641d6e862c21d833925d11fe4c85668f5539a306";

    #[test]
    fn status_entries_skip_the_original_path_of_a_rename() {
        let output = b" M src/lib.rs\0R  new name.rs\0old name.rs\0?? notes/a b.txt\0";
        let entries = parse_status(output).unwrap();
        let summary: Vec<_> = entries
            .iter()
            .map(|entry| format!("{}|{}", entry.code, entry.path.display()))
            .collect();
        assert_eq!(
            summary,
            [" M|src/lib.rs", "R |new name.rs", "??|notes/a b.txt"]
        );
        assert_eq!(parse_status(b"").unwrap(), []);
        assert_eq!(parse_status(b"garbage"), None);
    }

    #[test]
    fn worktree_records_carry_locks_and_prunable_reasons() {
        let output = format!(
            "worktree /r\0HEAD {HEAD}\0branch refs/heads/main\0\0\
             worktree /r/.baton/worktrees/1\0HEAD {HEAD}\0branch refs/heads/baton/1-x\0locked task 1\nrunning\0\0\
             worktree /gone\0HEAD {HEAD}\0detached\0prunable gitdir file points to non-existent location\0\0\
             worktree /plain-lock\0HEAD {HEAD}\0branch refs/heads/b\0locked\0\0"
        );
        let worktrees = parse_worktrees(output.as_bytes()).unwrap();
        assert_eq!(worktrees.len(), 4);
        assert_eq!(worktrees[0].branch.as_deref(), Some("main"));
        assert_eq!(worktrees[0].head.as_ref().map(CommitId::as_str), Some(HEAD));
        assert_eq!(worktrees[1].branch.as_deref(), Some("baton/1-x"));
        assert_eq!(worktrees[1].locked.as_deref(), Some("task 1\nrunning"));
        assert!(worktrees[2].detached);
        assert_eq!(worktrees[2].branch, None);
        assert_eq!(
            worktrees[2].prunable.as_deref(),
            Some("gitdir file points to non-existent location")
        );
        assert_eq!(worktrees[3].locked.as_deref(), Some(""));
    }

    #[test]
    fn a_bare_main_worktree_and_an_unborn_head() {
        let zeros = "0".repeat(40);
        let output = format!(
            "worktree /srv/r.git\0bare\0\0worktree /w\0HEAD {zeros}\0branch refs/heads/new\0\0"
        );
        let worktrees = parse_worktrees(output.as_bytes()).unwrap();
        assert!(worktrees[0].bare);
        assert_eq!(worktrees[1].head, None);
        assert_eq!(parse_worktrees(b"HEAD abc\0"), None);
    }

    #[test]
    fn commit_ids_are_full_lowercase_hexadecimal() {
        assert!(CommitId::parse(HEAD).is_some());
        assert!(CommitId::parse(&"a".repeat(64)).is_some());
        assert!(CommitId::parse("641d6e8").is_none());
        assert!(CommitId::parse(&HEAD.to_uppercase()).is_none());
        assert_eq!(CommitId::parse(HEAD).unwrap().short(), "641d6e862c21");
    }
}
