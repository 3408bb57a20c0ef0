//! The tests' PostgreSQL server: Debian's server programs installed when absent, one throw-away
//! cluster for a whole `cargo xtask test` run, and `cargo xtask pg`, a cluster for a developer.
//!
//! The cluster itself is `pg_testkit::Cluster`: the tests' own kit, so that the server a run
//! hands its tests and the servers tests start for themselves are made the same way.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use pg_testkit::Cluster;

use crate::run_command;

/// The Debian package that brings the server programs (`postgresql` depends on the current
/// major version's `postgresql-<N>`).
const PACKAGE: &str = "postgresql";

/// Whether the server programs are there, or why not.
enum Installation {
    Installed,
    /// They are absent and cannot be installed from here; the text says what to do.
    Missing(String),
}

/// The cluster for a test run, started after installing the server when it is absent and we
/// are root. `None` when it is absent and cannot be installed outside CI: the tests that need
/// it then skip. In CI (`CI` set) that is an error instead.
pub fn start_for_tests() -> anyhow::Result<Option<Cluster>> {
    match install()? {
        Installation::Installed => {}
        Installation::Missing(advice) if in_ci() => {
            bail!("{advice}; CI runs every test, so PostgreSQL must be there")
        }
        Installation::Missing(advice) => {
            eprintln!(
                "xtask: {advice}. The tests that need PostgreSQL will skip \
                 (pass --no-postgres to skip them without this note)"
            );
            return Ok(None);
        }
    }
    // Ctrl-C reaches every process of the terminal's group: nextest stops its tests and exits,
    // and this process must live on to stop the server. (SIGTERM keeps its default: it is
    // meant for this process alone, and nextest would run on unsupervised.)
    catch_signals(&[libc::SIGINT]);
    let cluster = start()?;
    eprintln!(
        "xtask: the tests' PostgreSQL server listens at {} (stopped when the run ends)",
        cluster.url()
    );
    Ok(Some(cluster))
}

/// `cargo xtask pg`: starts a cluster, prints how to reach it, and keeps it until Ctrl-C.
pub fn serve() -> anyhow::Result<()> {
    if let Installation::Missing(advice) = install()? {
        bail!("{advice}");
    }
    catch_signals(&[libc::SIGINT, libc::SIGTERM]);
    let cluster = start()?;
    println!(
        "A throw-away PostgreSQL server runs as {} with password {} at\n  {}\n\
         Its files are in {}; Ctrl-C stops it and removes them.\n\
         For the tests:\n  export {}='{}'",
        cluster.user(),
        cluster.password(),
        cluster.url(),
        cluster.directory().display(),
        pg_testkit::TEST_URL_ENV,
        cluster.url_with_password()
    );
    while !INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("xtask: stopping the server");
    drop(cluster);
    Ok(())
}

fn start() -> anyhow::Result<Cluster> {
    Cluster::start()
        .map_err(|error| anyhow::anyhow!(pg_testkit::chain(&error)))
        .context("failed to start a PostgreSQL server for the tests")
}

/// Makes sure PostgreSQL's server programs are installed: as root, installs Debian's package
/// when they are absent (refreshing the package lists first when the install fails without
/// them, as on a fresh machine).
fn install() -> anyhow::Result<Installation> {
    let missing = match pg_testkit::server_binaries() {
        Ok(_) => return Ok(Installation::Installed),
        Err(error) => error.to_string(),
    };
    if !is_root() {
        return Ok(Installation::Missing(format!(
            "{missing} (installing needs root: sudo apt-get install {PACKAGE})"
        )));
    }
    eprintln!("xtask: PostgreSQL's server is not installed; installing Debian's `{PACKAGE}`");
    if run_command(&mut apt_get_install()).is_err() {
        eprintln!("xtask: the install failed; refreshing the package lists and trying again");
        run_command(apt_get().arg("update")).context("`apt-get update` failed")?;
        run_command(&mut apt_get_install())
            .with_context(|| format!("failed to install `{PACKAGE}` with apt-get"))?;
    }
    pg_testkit::server_binaries()
        .map(|_| Installation::Installed)
        .map_err(|error| anyhow::anyhow!("`{PACKAGE}` was installed, but {error}"))
}

fn apt_get() -> Command {
    let mut command = Command::new("apt-get");
    command.env("DEBIAN_FRONTEND", "noninteractive");
    command
}

fn apt_get_install() -> Command {
    let mut command = apt_get();
    command.args(["install", "--yes", "--no-install-recommends", PACKAGE]);
    command
}

/// Whether xtask runs as root, which installing packages and making network namespaces need.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this runs in CI, which sets `CI` (to `true`).
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false")
}

/// Set by the handler of the signals [`catch_signals`] was given.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_signal: libc::c_int) {
    // Only an atomic store: all a signal handler may safely do here.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Replaces the default action of `signals` (ending the process at once, which would leave the
/// server running) with a note in [`INTERRUPTED`]. A handler, unlike ignoring the signals, is
/// reset in the programs this process starts, so nextest still sees Ctrl-C.
fn catch_signals(signals: &[libc::c_int]) {
    let handler = note_interrupt as extern "C" fn(libc::c_int);
    for &signal in signals {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}
