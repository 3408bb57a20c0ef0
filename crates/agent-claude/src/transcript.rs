//! Where Claude Code keeps a session's transcript, and reading and restoring it so that a
//! session continues on another host.
//!
//! Claude Code 2.1.328 (observed, see `docs/claude-cli-observed.md`) keeps one JSON-lines
//! file per session at `<config dir>/projects/<project dir>/<session id>.jsonl`. The config
//! dir is `$CLAUDE_CONFIG_DIR`, else `$HOME/.claude`; the project dir is the **physical**
//! working directory (symbolic links resolved) with every UTF-16 code unit that is not an
//! ASCII letter or digit replaced by `-`, cut at 200 characters and given `-` and a base-36
//! hash of the whole path when longer. `--resume` finds the file in the working directory's
//! project dir, or else in any other project dir under the same config dir.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use agent::{AgentCall, Restored, SessionId, Transcript, TranscriptError, project_dir_name};

/// The variable that names Claude Code's config dir.
pub const CONFIG_DIR_VARIABLE: &str = "CLAUDE_CONFIG_DIR";

/// Where one call's session keeps its transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TranscriptPlace {
    /// `<config dir>/projects`.
    projects: PathBuf,
    /// The file a call in the working directory writes.
    own: PathBuf,
    session_id: SessionId,
}

impl TranscriptPlace {
    /// The place for `call`, whose process gets `inherited` overlaid by `configured` and then
    /// by the call's own variables. `None` when no config dir can be told.
    pub(crate) fn of(
        call: &AgentCall,
        configured: &BTreeMap<String, String>,
        inherited: &BTreeMap<String, String>,
    ) -> Option<TranscriptPlace> {
        let projects = config_dir([&call.env, configured, inherited])?.join("projects");
        // The CLI names the project dir after the physical directory it runs in.
        let working_dir =
            fs::canonicalize(&call.working_dir).unwrap_or_else(|_| call.working_dir.clone());
        let session_id = call.plan.session_id();
        let own = projects
            .join(project_dir_name(&working_dir))
            .join(format!("{session_id}.jsonl"));
        Some(TranscriptPlace {
            projects,
            own,
            session_id,
        })
    }

    /// The transcript a resume continues: the working directory's own, else the first found
    /// in another project dir (sorted, so which one does not depend on the directory's order).
    pub(crate) fn find(&self) -> Option<PathBuf> {
        if self.own.is_file() {
            return Some(self.own.clone());
        }
        let file_name = format!("{}.jsonl", self.session_id);
        let mut project_dirs: Vec<PathBuf> = fs::read_dir(&self.projects)
            .ok()?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        project_dirs.sort();
        project_dirs
            .into_iter()
            .map(|dir| dir.join(&file_name))
            .find(|candidate| candidate.is_file())
    }

    /// The transcript's content, verbatim; `None` when there is none.
    pub(crate) fn read(&self) -> Result<Option<Transcript>, TranscriptError> {
        let Some(path) = self.find() else {
            return Ok(None);
        };
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            // Gone between the look and the read: there is none.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TranscriptError::Io {
                    operation: "read",
                    path,
                    source,
                });
            }
        };
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(Transcript::verbatim(text))),
            Err(_) => Err(TranscriptError::NotText { path }),
        }
    }

    /// Writes `transcript` as the working directory's own, unless one is found already that
    /// `transcript` does not [extend](Transcript::extends); one it extends is replaced where
    /// it was found. The file is written aside and renamed into place, so that a CLI never
    /// reads half of it.
    pub(crate) fn restore(&self, transcript: &Transcript) -> Result<Restored, TranscriptError> {
        let failed = |operation, path: &Path| {
            let path = path.to_owned();
            move |source| TranscriptError::Io {
                operation,
                path,
                source,
            }
        };
        let target = match self.find() {
            Some(path) => {
                let here = fs::read(&path).map_err(failed("read", &path))?;
                let extends = std::str::from_utf8(&here).is_ok_and(|here| transcript.extends(here));
                if !extends {
                    return Ok(Restored::AlreadyThere { path });
                }
                path
            }
            None => self.own.clone(),
        };
        Self::write_into_place(&target, &self.projects, transcript)?;
        Ok(Restored::Written { path: target })
    }

    fn write_into_place(
        target: &Path,
        projects: &Path,
        transcript: &Transcript,
    ) -> Result<(), TranscriptError> {
        let failed = |operation, path: &Path| {
            let path = path.to_owned();
            move |source| TranscriptError::Io {
                operation,
                path,
                source,
            }
        };
        let directory = target.parent().unwrap_or(projects);
        fs::create_dir_all(directory).map_err(failed("make the directory of", target))?;
        let aside = target.with_extension("jsonl.baton-restore");
        fs::write(&aside, transcript.as_str()).map_err(failed("write", &aside))?;
        fs::rename(&aside, target).map_err(failed("move into place", target))?;
        Ok(())
    }
}

/// The config dir the CLI uses with these environments, the first overriding the rest:
/// `CLAUDE_CONFIG_DIR` from any of them wins over `HOME`, as the CLI reads them.
fn config_dir<const N: usize>(layers: [&BTreeMap<String, String>; N]) -> Option<PathBuf> {
    let first = |name: &str| {
        layers
            .iter()
            .find_map(|layer| layer.get(name).filter(|value| !value.is_empty()))
    };
    if let Some(dir) = first(CONFIG_DIR_VARIABLE) {
        return Some(PathBuf::from(dir));
    }
    first("HOME").map(|home| Path::new(home).join(".claude"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::SessionPlan;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_config_dir_comes_from_the_nearest_claude_config_dir_then_home() {
        let call = env(&[("HOME", "/call-home")]);
        let configured = env(&[("CLAUDE_CONFIG_DIR", "/configured")]);
        let inherited = env(&[("CLAUDE_CONFIG_DIR", "/inherited"), ("HOME", "/home")]);
        assert_eq!(
            config_dir([&call, &configured, &inherited]),
            Some(PathBuf::from("/configured"))
        );
        assert_eq!(
            config_dir([&call, &env(&[]), &env(&[("HOME", "/home")])]),
            Some(PathBuf::from("/call-home/.claude"))
        );
        assert_eq!(
            config_dir([&env(&[("CLAUDE_CONFIG_DIR", "")]), &env(&[]), &env(&[])]),
            None
        );
    }

    #[test]
    fn restores_once_and_reads_back_verbatim() {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work.dir");
        fs::create_dir(&work).unwrap();
        let id = SessionId::new_v4();
        let call = AgentCall::new("p", SessionPlan::Resume(id), &work);
        let config = env(&[("CLAUDE_CONFIG_DIR", root.path().join("c").to_str().unwrap())]);
        let place = TranscriptPlace::of(&call, &config, &BTreeMap::new()).unwrap();
        assert_eq!(place.read().unwrap(), None);

        let transcript = Transcript::verbatim("{\"a\":1}\r\n{\"b\":\"é\"}");
        let Restored::Written { path } = place.restore(&transcript).unwrap() else {
            panic!("nothing was there to keep");
        };
        let canonical = fs::canonicalize(&work).unwrap();
        assert_eq!(
            path,
            root.path()
                .join("c/projects")
                .join(project_dir_name(&canonical))
                .join(format!("{id}.jsonl"))
        );
        assert_eq!(place.read().unwrap(), Some(transcript.clone()));
        assert_eq!(
            place.restore(&Transcript::verbatim("other")).unwrap(),
            Restored::AlreadyThere { path: path.clone() }
        );
        // A copy that goes on from the file here (the session went on elsewhere) replaces it
        // where it is; a shorter one does not.
        let newer = Transcript::verbatim("{\"a\":1}\r\n{\"b\":\"é\"}\n{\"c\":2}");
        assert_eq!(
            place.restore(&newer).unwrap(),
            Restored::Written { path: path.clone() }
        );
        assert_eq!(place.read().unwrap(), Some(newer));
        assert_eq!(
            place.restore(&transcript).unwrap(),
            Restored::AlreadyThere { path }
        );
    }
}
