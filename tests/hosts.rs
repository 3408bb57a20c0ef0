//! Several hosts on one machine, for the tests of runners that share a PostgreSQL ledger: each
//! host is a network namespace joined to the machine by a veth pair, with its own hostname (a
//! UTS namespace), `HOME` and working tree, and runs the real `baton` against a throw-away
//! server (pg-testkit's private cluster) that listens on the veth addresses the test made (and
//! on loopback, for the test's own checks), and nowhere else.
//!
//! [`Hosts::create`] builds such a world; everything it made — processes, database, server,
//! namespaces, veth pairs, files — goes when it is dropped, also when a test fails. Every wait
//! is bounded.
//!
//! Namespaces need root and `ip`. Where they cannot be made, a test prints the skip line
//! `cargo xtask test` collects (`skipping <test>: <reason>`) and passes, unless the run
//! requires them: `BATON_REQUIRE_NETNS=1` (which `cargo xtask test` sets unless given
//! `--no-netns`) or `CI` set makes that a failure.

pub mod claude;
mod host;
pub mod net;
mod relay;
pub mod scenarios;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use pg_testkit::{Cluster, SUPERUSER, TestDatabase};
use session_store::{NewTask, Store, StoreOptions};
use tempfile::TempDir;

use crate::chaos::Binaries;
use crate::chaos::lab::Ran;
pub use crate::hosts::host::{Host, HostRun};

/// When this variable is `1`, a machine where namespaces cannot be made fails the test.
pub const REQUIRE_NETNS_ENV: &str = "BATON_REQUIRE_NETNS";

/// Whether the run requires namespaces: `BATON_REQUIRE_NETNS=1`, or in CI (`CI` set to
/// anything but `false`).
pub fn netns_required() -> bool {
    std::env::var(REQUIRE_NETNS_ENV).as_deref() == Ok("1")
        || std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false")
}

/// How long one short `baton` command (init, a query) may take.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// A world of hosts sharing one PostgreSQL ledger. Fields drop in order: the hosts (their
/// processes killed), the database, the server, then the network and the files.
pub struct Hosts {
    pub hosts: Vec<Host>,
    database: TestDatabase,
    cluster: Cluster,
    links: Vec<net::Link>,
    dir: TempDir,
    bins: Binaries,
}

impl Hosts {
    /// A world of `count` hosts whose runners take `lease_ttl` (such as `"2s"`) as their
    /// lease TTL, for the test `test_name`. `Ok(None)`: the machine cannot make namespaces (or
    /// has no PostgreSQL) and the run does not require them; the skip line is printed.
    ///
    /// # Errors
    ///
    /// When the world cannot be made and the run requires it, or fails past the namespaces.
    pub fn create(
        bins: &Binaries,
        test_name: &str,
        count: u32,
        lease_ttl: &str,
    ) -> anyhow::Result<Option<Hosts>> {
        let links = match make_links(count) {
            Ok(links) => links,
            Err(reason) => return skip_or_fail(test_name, &reason),
        };
        let Some(mut cluster) = pg_testkit::private_cluster(test_name) else {
            return Ok(None);
        };
        for link in &links {
            cluster
                .also_listen_on(
                    IpAddr::V4(link.server_address),
                    &format!("{}/32", link.host_address),
                )
                .context("making the server listen on a veth address")?;
        }
        let database = cluster.create_database(test_name)?;
        let dir = tempfile::Builder::new()
            .prefix("baton-hosts.")
            .tempdir()
            .context("creating the world's temp dir")?;
        let mut world = Hosts {
            hosts: Vec::new(),
            database,
            cluster,
            links,
            dir,
            bins: bins.clone(),
        };
        world.make_tree()?;
        for index in 0..count {
            let host = world.make_host(index, lease_ttl)?;
            world.hosts.push(host);
        }
        Ok(Some(world))
    }

    /// The world's working tree: made by `baton init` (agent `claude`, no worktrees), with a
    /// file in it. Each host gets a copy; the original is where the hosts see theirs.
    fn make_tree(&self) -> anyhow::Result<()> {
        let tree = self.tree();
        std::fs::create_dir_all(&tree)?;
        std::fs::create_dir_all(self.dir.path().join("control-home"))?;
        std::fs::write(tree.join("README.md"), "A small project.\n")?;
        self.baton(&["init", "--agent", "claude"])?.expect_code(0)?;
        let config = tree.join(".baton/config.toml");
        let text = std::fs::read_to_string(&config)?;
        ensure!(
            text.contains("# isolation = \"worktree\""),
            "the config no longer offers run.isolation"
        );
        std::fs::write(
            &config,
            text.replacen("# isolation = \"worktree\"", "isolation = \"none\"", 1),
        )?;
        Ok(())
    }

    fn make_host(&self, index: u32, lease_ttl: &str) -> anyhow::Result<Host> {
        let link = &self.links[index as usize];
        let name = format!("host{}", index + 1);
        let dir = self.dir.path().join(&name);
        for sub in ["home", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        host::copy_tree(&self.tree(), &dir.join("tree"))?;
        let url = format!(
            "postgres://{SUPERUSER}@{}:{}/{}",
            link.server_address,
            self.cluster.port(),
            self.database.name()
        );
        Ok(Host {
            name,
            namespace: link.namespace.clone(),
            dir,
            shared_tree: self.tree(),
            baton: self.bins.baton.clone(),
            vars: vec![
                ("BATON_DB".to_owned(), url),
                ("PGPASSWORD".to_owned(), self.cluster.password().to_owned()),
                ("BATON_LEASE_TTL".to_owned(), lease_ttl.to_owned()),
                (
                    "BATON_CLAUDE_BIN".to_owned(),
                    self.bins.mock_claude.display().to_string(),
                ),
            ],
        })
    }

    /// The world's tree path; each host sees its own copy there.
    pub fn tree(&self) -> PathBuf {
        self.dir.path().join("tree")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Host `index` (from 0).
    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }

    /// Restarts the server as an operator does (`pg_ctl stop -m fast`, then start): every
    /// connection is ended; data and port are kept.
    pub fn restart_server(&mut self) -> anyhow::Result<()> {
        Ok(self.cluster.restart()?)
    }

    /// Host `index`'s link, to take it down or up.
    pub fn link(&self, index: usize) -> &net::Link {
        &self.links[index]
    }

    /// `baton ARGS` on the machine itself (over loopback), in the world's tree: for setting up
    /// and for looking, never for running tasks.
    pub fn baton(&self, args: &[&str]) -> anyhow::Result<Ran> {
        let mut command = std::process::Command::new(&self.bins.baton);
        command
            .args(args)
            .current_dir(self.tree())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("control-home"))
            .env("BATON_DB", self.database.url_without_password())
            .env("PGPASSWORD", self.cluster.password());
        let output = command.output().context("running baton")?;
        use std::os::unix::process::ExitStatusExt;
        Ok(Ran {
            code: output.status.code(),
            signal: output.status.signal(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            max_rss_kib: 0,
        })
    }

    /// Adds `count` tasks in the world's tree, each `verify`ing with the given commands.
    pub fn add_tasks(&self, count: usize, verify: &[&str]) -> anyhow::Result<()> {
        let mut store = self.store()?;
        let redactor = redact::Redactor::new();
        for index in 1..=count {
            let mut task = NewTask::new(
                redactor.redact_owned(format!("Task {index}")),
                redactor.redact_owned(format!("job-{index}: answer at once")),
                self.tree(),
            );
            task.verify_commands = verify
                .iter()
                .map(|command| redactor.redact_owned((*command).to_owned()))
                .collect();
            store.add_task(&task)?;
        }
        Ok(())
    }

    /// The ledger through the store's own API (over loopback).
    pub fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open_with(
            self.database.url(),
            &StoreOptions::new(redact::Redactor::new()),
        )?)
    }

    /// A plain SQL connection to the ledger (over loopback), for checks baton's commands do
    /// not offer.
    pub fn sql(&self) -> anyhow::Result<postgres::Client> {
        Ok(self.database.connect()?)
    }

    /// One integer from the ledger.
    pub fn count(&self, query: &str) -> anyhow::Result<i64> {
        Ok(self.sql()?.query_one(query, &[])?.get(0))
    }

    /// The rows of the tables that record work — tasks, sessions, calls, checks — as text:
    /// equal snapshots mean no one changed what was done.
    pub fn work_snapshot(&self) -> anyhow::Result<String> {
        let mut sql = self.sql()?;
        let mut text = String::new();
        for table in ["tasks", "sessions", "agent_calls", "verifications"] {
            text.push_str(&format!("[{table}]\n"));
            let query = format!("SELECT t::text FROM {table} t ORDER BY 1");
            for row in sql.query(&query, &[])? {
                text.push_str(row.get::<_, &str>(0));
                text.push('\n');
            }
        }
        Ok(text)
    }

    /// Waits up to `limit` for `condition`, polling.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut(&Hosts) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + limit;
        while !condition(self)? {
            ensure!(
                std::time::Instant::now() < deadline,
                "waited {limit:?} for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Host links `0..count`, or why they cannot be made.
fn make_links(count: u32) -> Result<Vec<net::Link>, String> {
    net::preconditions()?;
    net::clean_up_leftovers();
    (1..=count)
        .map(|index| net::Link::create(index).map_err(|error| format!("{error:#}")))
        .collect()
}

/// Prints the skip line and returns `Ok(None)`, or fails when the run requires namespaces.
fn skip_or_fail<T>(test_name: &str, reason: &str) -> anyhow::Result<Option<T>> {
    ensure!(
        !netns_required(),
        "{test_name}: cannot make network namespaces: {reason}; {REQUIRE_NETNS_ENV}=1 or CI \
         makes this a failure"
    );
    eprintln!("skipping {test_name}: cannot make network namespaces: {reason}");
    Ok(None)
}
