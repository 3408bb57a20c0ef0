//! Branch names (`baton/<task id>-<slug>`), finding a free one without clobbering, and
//! deleting a branch only when its work is safe.

use std::collections::HashSet;
use std::fmt;

use crate::command::argv;
use crate::error::GitError;
use crate::porcelain::CommitId;
use crate::repository::Repository;

/// The longest slug [`slug`] makes, in characters (all ASCII).
pub const SLUG_MAX_LENGTH: usize = 40;

/// Where every task branch lives: `baton/…`.
pub const BRANCH_PREFIX: &str = "baton/";

/// How many suffixes [`Repository::free_branch_name`] tries (`-2` to this) before giving up.
const LAST_SUFFIX: u32 = 1000;

/// A title as a branch-name slug: lowercase ASCII letters and digits, every other run of
/// characters one dash, no dash at either end, at most [`SLUG_MAX_LENGTH`] characters (cut
/// at a dash when one is near). Accented Latin letters lose their accents (`é` → `e`);
/// letters of other scripts separate words like punctuation, so the slug may be empty.
pub fn slug(title: &str) -> String {
    let mut slug = String::new();
    for character in title.chars().flat_map(char::to_lowercase) {
        if character.is_ascii_alphanumeric() {
            slug.push(character);
        } else if let Some(folded) = without_accent(character) {
            slug.push_str(folded);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    if slug.len() > SLUG_MAX_LENGTH {
        let mid_word = slug.as_bytes()[SLUG_MAX_LENGTH] != b'-';
        slug.truncate(SLUG_MAX_LENGTH);
        // A cut inside a word moves back to the last word boundary, when that keeps most.
        if let Some(dash) = slug
            .rfind('-')
            .filter(|dash| mid_word && *dash >= SLUG_MAX_LENGTH / 2)
        {
            slug.truncate(dash);
        }
    }
    slug.trim_end_matches('-').to_owned()
}

/// The branch of a task: `baton/<task id>-<slug of its title>`, or `baton/<task id>` when
/// the title leaves no slug. The id goes through [`slug`]'s character rules, so any id makes
/// a valid name.
pub fn task_branch_name(task_id: impl fmt::Display, title: &str) -> String {
    let id = slug(&task_id.to_string());
    let id = if id.is_empty() { "task".to_owned() } else { id };
    match slug(title) {
        title if title.is_empty() => format!("{BRANCH_PREFIX}{id}"),
        title => format!("{BRANCH_PREFIX}{id}-{title}"),
    }
}

/// Whether `git branch NAME` would accept the name: the rules of `git check-ref-format
/// --branch`, applied to `refs/heads/NAME`.
pub fn is_valid_branch_name(name: &str) -> bool {
    let forbidden =
        |character: char| character.is_ascii_control() || " ~^:?*[\\".contains(character);
    !name.is_empty()
        && name != "@"
        && name != "HEAD"
        && !name.starts_with('-')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("@{")
        && !name.chars().any(forbidden)
        && name.split('/').all(|component| {
            !component.is_empty() && !component.starts_with('.') && !component.ends_with(".lock")
        })
}

/// What [`Repository::delete_branch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedBranch {
    pub branch: String,
    /// The commit the branch pointed at, so that a message can say how to get it back.
    pub head: CommitId,
}

impl Repository {
    /// The commit a branch points at, or `None` when there is no such branch.
    pub fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, GitError> {
        self.try_resolve_commit(&format!("refs/heads/{branch}"))
    }

    /// `wanted` when no branch has that name, else the first free of `wanted-2`,
    /// `wanted-3`, …: an existing branch is never reused or moved. A name is taken also when
    /// branches live under it (`wanted/…`), since git could not create it. Call it under
    /// [`Repository::lock_worktrees`] and create the branch before letting go, or another
    /// process may pick the same name.
    pub fn free_branch_name(&self, wanted: &str) -> Result<String, GitError> {
        if !is_valid_branch_name(wanted) {
            return Err(GitError::InvalidBranchName {
                name: wanted.to_owned(),
            });
        }
        let taken = self.branches_near(wanted)?;
        let is_free =
            |name: &str| !taken.contains(name) && !taken.iter().any(|branch| under(branch, name));
        if is_free(wanted) {
            return Ok(wanted.to_owned());
        }
        (2..=LAST_SUFFIX)
            .map(|suffix| format!("{wanted}-{suffix}"))
            .find(|name| is_free(name))
            .ok_or_else(|| GitError::NoFreeBranchName {
                wanted: wanted.to_owned(),
                last_suffix: LAST_SUFFIX,
            })
    }

    /// Creates a branch at a commit; fails, touching nothing, when it exists.
    pub fn create_branch(&self, branch: &str, start: &CommitId) -> Result<(), GitError> {
        if !is_valid_branch_name(branch) {
            return Err(GitError::InvalidBranchName {
                name: branch.to_owned(),
            });
        }
        // `--no-track`: the branch is Baton's, never tied to an upstream by configuration.
        self.run_here(argv![
            "branch",
            "--no-track",
            "--end-of-options",
            branch,
            start
        ])?
        .success()?;
        Ok(())
    }

    /// Moves `branch`, which no worktree has checked out (its files would be left behind;
    /// a registration whose directory is gone does not count), forward to `target`:
    /// refused when `target` does not contain the branch's head. The move is conditional
    /// on the branch still being where it was read, so a commit made meanwhile is never
    /// dropped.
    pub fn fast_forward_branch(&self, branch: &str, target: &CommitId) -> Result<(), GitError> {
        let head = self
            .branch_head(branch)?
            .ok_or_else(|| GitError::NoSuchBranch {
                branch: branch.to_owned(),
            })?;
        if let Some(worktree) = self.worktrees()?.into_iter().find(|worktree| {
            worktree.branch.as_deref() == Some(branch) && worktree.prunable.is_none()
        }) {
            return Err(GitError::BranchCheckedOut {
                branch: branch.to_owned(),
                path: worktree.path,
            });
        }
        if !self.is_ancestor(head.as_str(), target.as_str())? {
            return Err(GitError::NotFastForward {
                branch: branch.to_owned(),
                target: target.as_str().to_owned(),
            });
        }
        self.run_here(argv![
            "update-ref",
            "-m",
            "baton: fast-forward",
            format!("refs/heads/{branch}"),
            target,
            &head,
        ])?
        .success()?;
        Ok(())
    }

    /// Deletes a branch, refusing when its commits are not all in `base` (unless `force`) and
    /// always when a worktree has it checked out. The deletion is conditional on the branch
    /// still being where it was checked, so a commit made meanwhile is never dropped.
    pub fn delete_branch(
        &self,
        branch: &str,
        base: &str,
        force: bool,
    ) -> Result<DeletedBranch, GitError> {
        let head = self
            .branch_head(branch)?
            .ok_or_else(|| GitError::NoSuchBranch {
                branch: branch.to_owned(),
            })?;
        if let Some(worktree) = self
            .worktrees()?
            .into_iter()
            .find(|worktree| worktree.branch.as_deref() == Some(branch))
        {
            return Err(GitError::BranchCheckedOut {
                branch: branch.to_owned(),
                path: worktree.path,
            });
        }
        if !force && !self.is_ancestor(head.as_str(), base)? {
            return Err(GitError::NotMerged {
                branch: branch.to_owned(),
                base: base.to_owned(),
            });
        }
        self.run_here(argv![
            "update-ref",
            "-d",
            format!("refs/heads/{branch}"),
            &head,
        ])?
        .success()?;
        Ok(DeletedBranch {
            branch: branch.to_owned(),
            head,
        })
    }

    /// The branches in the same directory as `name` (`baton/…` for `baton/12-x`), by short
    /// name: one git call however many suffixes are tried.
    fn branches_near(&self, name: &str) -> Result<HashSet<String>, GitError> {
        let directory = name.rfind('/').map_or("", |slash| &name[..slash]);
        let pattern = format!("refs/heads/{directory}");
        let finished = self
            .run_here(argv!["for-each-ref", "--format=%(refname)", pattern])?
            .success()?;
        Ok(finished
            .stdout_text()?
            .lines()
            .filter_map(|reference| reference.strip_prefix("refs/heads/"))
            .map(str::to_owned)
            .collect())
    }
}

/// The ASCII letters a lowercase accented Latin letter stands for.
fn without_accent(character: char) -> Option<&'static str> {
    Some(match character {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'ī' => "i",
        'ł' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ř' => "r",
        'ß' => "ss",
        'ś' | 'š' => "s",
        'ť' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Whether `branch` lives under `name` as a directory (`name/…`).
fn under(branch: &str, name: &str) -> bool {
    branch
        .strip_prefix(name)
        .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_ascii_words_joined_by_dashes() {
        let cases = [
            ("Fix the login bug", "fix-the-login-bug"),
            ("  --Add `--json` to task list!  ", "add-json-to-task-list"),
            ("Café au lait: naïve résumé", "cafe-au-lait-naive-resume"),
            ("Straße ÆON", "strasse-aeon"),
            ("Fix 日本語 bug", "fix-bug"),
            ("日本語のタイトル", ""),
            ("v2.0 release/notes", "v2-0-release-notes"),
            ("", ""),
        ];
        for (title, expected) in cases {
            assert_eq!(slug(title), expected, "{title:?}");
        }
    }

    #[test]
    fn long_slugs_are_cut_at_a_word_boundary() {
        let title = "Make the scheduler start dependent tasks from their predecessors' branches";
        let cut = slug(title);
        assert!(cut.len() <= SLUG_MAX_LENGTH, "{cut}");
        assert_eq!(cut, "make-the-scheduler-start-dependent-tasks");
        assert_eq!(
            slug("Make the scheduler start dependent taskforce"),
            "make-the-scheduler-start-dependent"
        );
        let one_word = "a".repeat(100);
        assert_eq!(slug(&one_word).len(), SLUG_MAX_LENGTH);
    }

    #[test]
    fn task_branch_names_fall_back_when_the_title_has_no_slug() {
        assert_eq!(task_branch_name(12, "Fix it"), "baton/12-fix-it");
        assert_eq!(task_branch_name(7, "日本語"), "baton/7");
        assert_eq!(task_branch_name("", "x"), "baton/task-x");
    }

    #[test]
    fn branch_name_rules_follow_check_ref_format() {
        for valid in ["main", "baton/12-fix", "a.b/c-d", "x@y", "é"] {
            assert!(is_valid_branch_name(valid), "{valid}");
        }
        for invalid in [
            "", "@", "HEAD", "-x", "a..b", "a/.b", ".a", "a.lock", "a.lock/b", "a b", "a~1", "a^",
            "a:b", "a?", "a*", "a[b", "a\\b", "a@{1}", "a/", "/a", "a//b", "a.", "a\tb",
        ] {
            assert!(!is_valid_branch_name(invalid), "{invalid}");
        }
    }

    #[test]
    fn a_branch_lives_under_a_name_only_past_a_slash() {
        assert!(under("baton/1-x/y", "baton/1-x"));
        assert!(!under("baton/1-x-2", "baton/1-x"));
        assert!(!under("baton/1-x", "baton/1-x"));
    }
}
