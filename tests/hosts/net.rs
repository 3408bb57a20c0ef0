//! The network of a [`super::Hosts`] world: one network namespace per host, joined to the
//! machine by a veth pair whose two ends get the two usable addresses of a `/30` of their own.
//!
//! Every name carries this process's id, so that tests running at once never share one, and
//! everything made is removed when its [`Link`] is dropped, also when a test panics. Addresses
//! come from `10.200.0.0/16`; a `/30` that any route of the machine other than its default one
//! already covers is passed over, so the test never shadows a network the machine uses.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

/// How many `/30` blocks are tried before giving up.
const BLOCK_ATTEMPTS: u32 = 64;

/// One host's namespace and its veth pair.
#[derive(Debug)]
pub struct Link {
    /// The namespace, as `ip netns` names it.
    pub namespace: String,
    /// The veth end on the machine's side, where the server listens.
    pub outer: String,
    /// The veth end inside the namespace.
    pub inner: String,
    /// The address of [`Link::outer`]: the server's, as this host reaches it.
    pub server_address: Ipv4Addr,
    /// The address of [`Link::inner`]: the host's own.
    pub host_address: Ipv4Addr,
}

impl Link {
    /// Makes host `index`'s namespace (with its loopback up) and veth pair, both ends up.
    ///
    /// # Errors
    ///
    /// When `ip` fails (not root, no `ip`, no namespaces in this kernel or container); what was
    /// made by then is removed.
    pub fn create(index: u32) -> anyhow::Result<Link> {
        let pid = std::process::id();
        let (server_address, host_address) = free_block(pid, index)?;
        let mut link = Link {
            namespace: format!("baton-{pid}-h{index}"),
            // Interface names have at most 15 bytes: `bh` + up to 7 digits + `o`/`i` + index.
            outer: format!("bh{pid}o{index}"),
            inner: format!("bh{pid}i{index}"),
            server_address,
            host_address,
        };
        ip(&["netns", "add", &link.namespace])?;
        let made = link.wire();
        if let Err(error) = made {
            link.remove();
            return Err(error);
        }
        Ok(link)
    }

    fn wire(&mut self) -> anyhow::Result<()> {
        let namespace = self.namespace.clone();
        ip(&[
            "link",
            "add",
            &self.outer,
            "type",
            "veth",
            "peer",
            "name",
            &self.inner,
        ])?;
        ip(&["link", "set", &self.inner, "netns", &namespace])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", self.server_address),
            "dev",
            &self.outer,
        ])?;
        ip(&["link", "set", &self.outer, "up"])?;
        let inner_address = format!("{}/30", self.host_address);
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            &inner_address,
            "dev",
            &self.inner,
        ])?;
        ip(&["-n", &namespace, "link", "set", &self.inner, "up"])?;
        ip(&["-n", &namespace, "link", "set", "lo", "up"])
    }

    /// Takes the host's end of the link down (`false`) or up again (`true`), inside its
    /// namespace, as a pulled cable or a failed switch port would.
    pub fn set_up(&self, up: bool) -> anyhow::Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&[
            "netns",
            "exec",
            &self.namespace,
            "ip",
            "link",
            "set",
            &self.inner,
            state,
        ])
    }

    fn remove(&mut self) {
        // Deleting one end of a veth pair deletes both; the namespace takes its end along too.
        let _ = quiet_ip(&["link", "del", &self.outer]);
        let _ = quiet_ip(&["netns", "del", &self.namespace]);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Removes the namespaces and veth pairs of test processes that are gone (killed before their
/// guards ran, as by a test runner's timeout): a name carries the pid that made it.
pub fn clean_up_leftovers() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some((pid, index)) = name
            .strip_prefix("baton-")
            .and_then(|rest| rest.split_once("-h"))
        else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let _ = quiet_ip(&["link", "del", &format!("bh{pid}o{index}")]);
        let _ = quiet_ip(&["netns", "del", name]);
    }
}

/// Whether this process may make namespaces: root, with `ip` and `unshare` at hand. `Err`
/// says what is missing.
pub fn preconditions() -> Result<(), String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespaces need root (`ip netns add`)".to_owned());
    }
    for program in ["ip", "unshare"] {
        let found = Command::new(program)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Err(format!("`{program}` is not installed or does not run"));
        }
    }
    Ok(())
}

/// The server's and the host's address in the first `/30` for (`pid`, `index`) that no route of
/// the machine covers but its default one.
fn free_block(pid: u32, index: u32) -> anyhow::Result<(Ipv4Addr, Ipv4Addr)> {
    for attempt in 0..BLOCK_ATTEMPTS {
        // 14 bits of blocks in 10.200.0.0/16; the pid spreads tests running at once apart.
        let block = (pid.wrapping_mul(8) + index + attempt * 7) % (1 << 14);
        let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + block * 4;
        let server = Ipv4Addr::from(base + 1);
        let host = Ipv4Addr::from(base + 2);
        if !routed(server)? && !routed(host)? {
            return Ok((server, host));
        }
    }
    bail!("no free /30 in 10.200.0.0/16 after {BLOCK_ATTEMPTS} attempts")
}

/// Whether a route other than the default one covers `address`.
fn routed(address: Ipv4Addr) -> anyhow::Result<bool> {
    let output = Command::new("ip")
        .args([
            "-4",
            "route",
            "show",
            "table",
            "all",
            "match",
            &address.to_string(),
        ])
        .output()
        .context("running `ip route`")?;
    ensure!(
        output.status.success(),
        "`ip route show match {address}` failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| !line.starts_with("default") && !line.trim().is_empty()))
}

/// Runs `ip ARGS`, failing with its message.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running `ip`")?;
    ensure!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

fn quiet_ip(args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}
