//! Clusters left behind by test processes killed before their drop could stop the server (a
//! test timed out, a run was killed): each cluster records its owner, and the next cluster
//! started on the machine stops the servers of owners that are gone and removes their files.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::account::{self, Account};
use crate::error::{Error, Result};

/// The prefix of every cluster's temporary directory.
pub(crate) const ROOT_PREFIX: &str = "baton-pg.";

/// The file in a cluster's temporary directory that names the process owning it.
const OWNER_FILE: &str = "owner";

/// Records this process, by pid and start time, as the owner of the cluster in `root`.
pub(crate) fn record_owner(root: &Path) -> Result<()> {
    let pid = std::process::id();
    let identity = format!("{pid} {}", start_time(pid).unwrap_or_default());
    let path = root.join(OWNER_FILE);
    std::fs::write(&path, identity).map_err(|source| Error::Io { path, source })
}

/// Stops and removes every cluster under `base` whose owner is gone and whose files belong to
/// `account`; what cannot be cleaned is left alone (another account's, or one being made).
pub(crate) fn clean_up(base: &Path, account: &Account, binaries: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.filter_map(|entry| entry.ok()) {
        let root = entry.path();
        let is_cluster = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(ROOT_PREFIX));
        let Ok(owner) = std::fs::read_to_string(root.join(OWNER_FILE)) else {
            continue;
        };
        let home = root.join("cluster");
        let ours = std::fs::metadata(&home).is_ok_and(|metadata| account.owns(metadata.uid()));
        if !is_cluster || !ours || owner_is_alive(&owner) {
            continue;
        }
        let data = home.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = account::run(
                account
                    .command(&binaries.join("pg_ctl"))
                    .current_dir(&home)
                    .arg("stop")
                    .arg("--pgdata")
                    .arg(&data)
                    .args(["--mode", "immediate", "--wait", "--timeout", "60"]),
            );
        }
        if std::fs::remove_dir_all(&root).is_ok() {
            eprintln!(
                "pg-testkit: removed the cluster {} left behind by process {}",
                root.display(),
                owner.split_whitespace().next().unwrap_or("?")
            );
        }
    }
}

/// Whether the process recorded as `owner` (`<pid> <start time>`) still runs. Unreadable
/// records and systems without `/proc` count as alive: nothing is removed on a guess.
fn owner_is_alive(owner: &str) -> bool {
    let mut fields = owner.split_whitespace();
    let Some(pid) = fields.next().and_then(|pid| pid.parse::<u32>().ok()) else {
        return true;
    };
    if !Path::new("/proc/self/stat").exists() {
        return true;
    }
    match (start_time(pid), fields.next()) {
        (None, _) => false,
        // The pid was taken by another process since.
        (Some(now), Some(recorded)) => now == recorded,
        (Some(_), None) => true,
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`, in clock ticks since
/// boot): with the pid, it names one process even after the pid is reused.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, field 2, is in parentheses and may hold spaces; field 3 follows it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let pid = std::process::id();
        let start = start_time(pid).unwrap();
        assert!(owner_is_alive(&format!("{pid} {start}")));
        assert!(!owner_is_alive(&format!("{pid} {start}0")));
        assert!(!owner_is_alive(&format!("{} 1", u32::MAX)));
        assert!(owner_is_alive("unreadable"));
    }
}
