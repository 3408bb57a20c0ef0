//! Who holds a lease: a process named by pid, host and start time, and whether it still runs.
//!
//! A pid alone is not an identity: the kernel reuses pids, so a lease taken by a process that
//! died could look held by whatever unrelated process got its number. The start time (in clock
//! ticks since boot, field 22 of `/proc/<pid>/stat` on Linux) tells the two apart.

use std::fmt;
use std::io;
use std::sync::OnceLock;

/// The process that holds (or held) a session's lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner {
    pub pid: u32,
    /// The host name of the machine the process runs on.
    pub host: String,
    /// When the process started, in clock ticks since boot (Linux); 0 where unknown.
    pub start_time: u64,
}

impl LeaseOwner {
    /// The default liveness check for [`Store::sweep_stale`](crate::Store::sweep_stale).
    ///
    /// Returns `false` only when this machine can tell that the owner is gone: it ran on this
    /// host, and no process with its pid exists, or the process with its pid started at a
    /// different time (the pid was reused), or it is a zombie. An owner on another host is
    /// reported alive, so only its lease expiry can make its session stale. When the host
    /// name cannot be read the owner is reported alive too: a false "dead" would abandon a
    /// session that some process is still using.
    pub fn is_alive(&self) -> bool {
        match this_host() {
            Ok(host) if host == self.host => {}
            _ => return true,
        }
        match process_stat(self.pid) {
            Ok(Some(stat)) => !stat.is_zombie() && stat.start_time == self.start_time,
            Ok(None) => false,
            // Unreadable is not absent (for example a hardened /proc): assume alive.
            Err(_) => true,
        }
    }
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} on {}", self.pid, self.host)
    }
}

/// The identity of the calling process: pid, host name and start time.
///
/// [`LeaseOwner::current`] (in the `sessions::lease` module, which turns the failure into a
/// [`StoreError`](crate::StoreError)) is the public way in; this module reads `/proc` and
/// knows nothing of the store's errors.
pub(crate) fn identify_current() -> io::Result<LeaseOwner> {
    let pid = std::process::id();
    let host = this_host()?.to_owned();
    let start_time = match process_stat(pid)? {
        Some(stat) => stat.start_time,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("/proc/{pid}/stat does not exist for the running process"),
            ));
        }
    };
    Ok(LeaseOwner {
        pid,
        host,
        start_time,
    })
}

/// An agent process recorded in a session: its pid and when it started, so that a sweep
/// after a crash stops that very process, never another that reused its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentProcess {
    pub pid: u32,
    /// When it started, in clock ticks since boot (Linux); 0 where unknown.
    pub start_time: u64,
}

impl AgentProcess {
    /// The process with `pid` as it is now. A pid that no longer names a live process is
    /// recorded with start time 0, which no running process matches.
    pub fn observe(pid: u32) -> AgentProcess {
        let start_time = match process_stat(pid) {
            Ok(Some(stat)) if !stat.is_zombie() => stat.start_time,
            _ => 0,
        };
        AgentProcess { pid, start_time }
    }

    /// Whether this very process still runs here: its pid names a live (not zombie) process
    /// that started when it did.
    pub fn is_running(&self) -> bool {
        if self.start_time == 0 {
            return false;
        }
        match process_stat(self.pid) {
            Ok(Some(stat)) => !stat.is_zombie() && stat.start_time == self.start_time,
            _ => false,
        }
    }
}

/// What the ledger needs from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessStat {
    /// Field 3: `R`, `S`, `D`, `Z`, …
    state: char,
    /// Field 22: start time in clock ticks since boot.
    start_time: u64,
}

impl ProcessStat {
    fn is_zombie(&self) -> bool {
        // A zombie has exited and only waits to be reaped; `X` is a process being torn down.
        matches!(self.state, 'Z' | 'X')
    }
}

/// This machine's host name, read once: it names the lease owner and decides whether an
/// owner's pid can be checked here at all.
pub(crate) fn this_host() -> io::Result<&'static str> {
    static HOST: OnceLock<String> = OnceLock::new();
    if let Some(host) = HOST.get() {
        return Ok(host);
    }
    let host = read_hostname()?;
    Ok(HOST.get_or_init(|| host))
}

fn read_hostname() -> io::Result<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which is valid for writes of that many
    // bytes; gethostname writes at most that many.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buffer
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(buffer.len());
    Ok(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

#[cfg(target_os = "linux")]
fn process_stat(pid: u32) -> io::Result<Option<ProcessStat>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => parse_stat(&text).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/stat has an unexpected format"),
            )
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        // ESRCH: the process went away between open and read.
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Without `/proc` there is no start time to compare; a signal-0 probe still tells whether a
/// process with the pid exists.
#[cfg(not(target_os = "linux"))]
fn process_stat(pid: u32) -> io::Result<Option<ProcessStat>> {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Ok(None);
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let status = unsafe { libc::kill(pid, 0) };
    if status == 0 {
        return Ok(Some(ProcessStat {
            state: 'R',
            start_time: 0,
        }));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ESRCH) => Ok(None),
        Some(libc::EPERM) => Ok(Some(ProcessStat {
            state: 'R',
            start_time: 0,
        })),
        _ => Err(error),
    }
}

/// Parses the fields we need out of a `/proc/<pid>/stat` line.
///
/// Field 2 is the command name in parentheses, and it may itself contain spaces and
/// parentheses, so the fields after it are found from the *last* `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_stat(text: &str) -> Option<ProcessStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    // The first field after the name is field 3 (the state).
    let state = fields.next()?.chars().next()?;
    // Field 22 is 19 fields after field 3.
    let start_time = fields.nth(22 - 4)?.parse().ok()?;
    Some(ProcessStat { state, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 123 0 0 0 5 3 0 0 20 0 1 0 \
                    987654 12345678 400 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcessStat {
                state: 'S',
                start_time: 987_654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (short) R 1 2"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_current_process_is_alive_and_a_reused_pid_is_not() {
        let me = LeaseOwner::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_time > 0);
        assert!(!me.host.is_empty());
        assert!(me.is_alive());

        let reused = LeaseOwner {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(!reused.is_alive());

        // Above the kernel's pid_max (at most 2^22), so no process has it.
        let gone = LeaseOwner {
            pid: 1 << 23,
            ..me.clone()
        };
        assert!(!gone.is_alive());

        let elsewhere = LeaseOwner {
            pid: 1 << 23,
            host: format!("{}-elsewhere", me.host),
            ..me
        };
        assert!(elsewhere.is_alive());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reaped_child_is_gone_and_a_zombie_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let host = this_host().unwrap().to_owned();
        // Until it is reaped the exited child is a zombie: it must not count as alive.
        let mut zombie = None;
        for _ in 0..2000 {
            let stat = process_stat(pid).unwrap().unwrap();
            if stat.is_zombie() {
                zombie = Some(stat);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let start_time = zombie.expect("`true` exits within ten seconds").start_time;
        let owner = LeaseOwner {
            pid,
            host,
            start_time,
        };
        assert!(!owner.is_alive());
        child.wait().unwrap();
        assert_eq!(process_stat(pid).unwrap(), None);
        assert!(!owner.is_alive());
    }
}
