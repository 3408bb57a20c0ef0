//! A throw-away PostgreSQL server: its own data directory in a temporary directory, a free port
//! on 127.0.0.1, a superuser with a password, and settings that trade durability for speed.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::account::{self, Account};
use crate::binaries::server_binaries;
use crate::certificates::Authority;
use crate::database::TestDatabase;
use crate::error::{Error, Result};
use crate::leftovers;
use crate::random::random_hex;

/// The superuser role every cluster is made with.
pub const SUPERUSER: &str = "baton";

/// How long `pg_ctl` waits for the server to start or stop, in seconds. Generous: the tests
/// run on two cores beside compilers and hundreds of other tests.
const WAIT_SECONDS: u32 = 120;

/// How many ports are tried before giving up: between choosing a free port and the server
/// binding it, another process may take it.
const PORT_ATTEMPTS: u32 = 8;

/// How much a cluster's commits are worth: the kit's servers never fsync (the machine does
/// not crash under a test), but whether a commit reaches the kernel before it is acknowledged
/// decides whether [`Cluster::stop_immediately`] can lose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// `synchronous_commit = off`, the fastest: an immediate stop may lose the last fraction
    /// of a second of acknowledged commits. For servers that are only ever stopped at the end.
    Fast,
    /// `synchronous_commit = on`: every acknowledged commit survives an immediate stop. For
    /// tests that crash or restart the server and count what survived.
    SurviveServerCrash,
}

/// A server that takes TLS ([`Cluster::start_with_tls`]): a certificate authority of its own
/// signs its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The names the server's certificate is made out to: host names or IP addresses.
    pub names: Vec<String>,
    /// Whether logins over TCP must use TLS (`hostssl` lines in `pg_hba.conf`, no `host`).
    pub only: bool,
    /// Whether logins over TCP must also show a client certificate the authority signed
    /// (`clientcert=verify-ca`; implies [`TlsOptions::only`]); [`Cluster::issue_client`]
    /// makes one.
    pub client_certificates: bool,
}

impl Default for TlsOptions {
    /// A certificate for `localhost` and `127.0.0.1`; logins with or without TLS.
    fn default() -> TlsOptions {
        TlsOptions {
            names: vec![String::from("localhost"), String::from("127.0.0.1")],
            only: false,
            client_certificates: false,
        }
    }
}

/// A cluster's TLS, once its files are written.
#[derive(Debug)]
struct ClusterTls {
    authority: Authority,
    only: bool,
    client_certificates: bool,
    /// The authority's certificate, readable by the test: a client's `sslrootcert`.
    root_certificate: PathBuf,
}

/// The settings file the kit writes into the data directory, included from `postgresql.conf`.
const SETTINGS_FILE: &str = "baton-test.conf";

/// A PostgreSQL server of its own, started by [`Cluster::start`] and gone with its files when
/// the value is dropped, also when a test panics.
///
/// The server listens on 127.0.0.1 at [`Cluster::port`] and on a unix socket in its own
/// directory ([`Cluster::socket_directory`]); both ask for the superuser's password
/// (scram-sha-256), so that tests can give it through a URL, `PGPASSWORD` or `~/.pgpass`.
#[derive(Debug)]
pub struct Cluster {
    /// The temporary directory everything lives in, removed after the server stops.
    root: tempfile::TempDir,
    /// `root/cluster`, owned by the server's account: the data directory, the log, the socket.
    home: PathBuf,
    binaries: PathBuf,
    account: Account,
    port: u16,
    password: String,
    commits: Commits,
    /// Addresses the server listens on besides 127.0.0.1, each with the clients (a CIDR) it
    /// takes logins from there.
    listeners: Vec<(IpAddr, String)>,
    tls: Option<ClusterTls>,
    running: bool,
}

impl Cluster {
    /// Makes a new cluster with [`Commits::Fast`] and starts its server.
    ///
    /// # Errors
    ///
    /// As [`Cluster::start_with`].
    pub fn start() -> Result<Cluster> {
        Cluster::start_with(Commits::Fast)
    }

    /// Makes a new cluster whose commits are worth `commits` and starts its server.
    ///
    /// As root, the server runs as the system user [`crate::SYSTEM_USER`], made when absent.
    ///
    /// # Errors
    ///
    /// [`Error::BinariesMissing`] when PostgreSQL's server programs are not installed; any
    /// other error when the cluster could not be made or its server did not start.
    pub fn start_with(commits: Commits) -> Result<Cluster> {
        Cluster::start_configured(commits, None)
    }

    /// Makes a new cluster with [`Commits::Fast`] whose server takes TLS (`ssl = on`) with a
    /// certificate made out to `tls.names`, signed by an authority of its own whose
    /// certificate [`Cluster::root_certificate`] names; with `tls.only`, logins over TCP must
    /// use TLS.
    ///
    /// # Errors
    ///
    /// As [`Cluster::start_with`], and when the certificates could not be made.
    pub fn start_with_tls(tls: &TlsOptions) -> Result<Cluster> {
        Cluster::start_configured(Commits::Fast, Some(tls))
    }

    fn start_configured(commits: Commits, tls: Option<&TlsOptions>) -> Result<Cluster> {
        let binaries = server_binaries()?;
        let account = Account::for_this_process()?;
        let base = base_directory(&account);
        leftovers::clean_up(&base, &account, &binaries);
        let root = make_root(&base, &account)?;
        let home = root.path().join("cluster");
        std::fs::create_dir(&home).map_err(|source| Error::Io {
            path: home.clone(),
            source,
        })?;
        account::set_mode(&home, 0o700)?;
        account.take_ownership(&home)?;
        let mut cluster = Cluster {
            root,
            home,
            binaries,
            account,
            port: 0,
            password: random_hex(16)?,
            commits,
            listeners: Vec::new(),
            tls: None,
            running: false,
        };
        cluster.initdb()?;
        if let Some(tls) = tls {
            cluster.write_tls(tls)?;
        }
        cluster.start_on_a_free_port()?;
        Ok(cluster)
    }

    /// `postgres://baton@127.0.0.1:<port>/postgres`: the superuser's URL without the password.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The superuser's password (hexadecimal: it needs no escaping in a URL).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// [`Cluster::url`] with the password in it.
    pub fn url_with_password(&self) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// Makes the server listen on `address` too, taking password logins there from `clients`
    /// (a CIDR such as `10.201.0.0/24`): for tests whose runners sit in network namespaces
    /// joined to this host by veth pairs. The address must exist on the host already; a running
    /// server restarts (fast) to bind it.
    pub fn also_listen_on(&mut self, address: IpAddr, clients: &str) -> Result<()> {
        self.listeners.push((address, clients.to_owned()));
        self.write_settings(self.port)?;
        self.write_access()?;
        if self.running { self.restart() } else { Ok(()) }
    }

    /// [`Cluster::url_with_password`] through `address` (see [`Cluster::also_listen_on`]).
    pub fn url_with_password_on(&self, address: IpAddr) -> String {
        let host = match address {
            IpAddr::V4(address) => address.to_string(),
            IpAddr::V6(address) => format!("[{address}]"),
        };
        format!(
            "postgres://{SUPERUSER}:{}@{host}:{}/postgres",
            self.password, self.port
        )
    }

    /// The certificate of the authority that signed the server's, for a client's
    /// `sslrootcert`; `None` for a server without TLS.
    pub fn root_certificate(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.root_certificate.as_path())
    }

    /// A client certificate for the role `user`, signed by the authority of a cluster with TLS.
    pub fn issue_client(&self, user: &str) -> Result<crate::certificates::Issued> {
        match &self.tls {
            Some(tls) => tls.authority.issue_client(user),
            None => Err(Error::State {
                state: "without TLS",
                what: "a client certificate",
                wanted: "started with TLS",
            }),
        }
    }

    /// The temporary directory that holds everything of the cluster (data, log, socket); it
    /// is removed when the value is dropped.
    pub fn directory(&self) -> &Path {
        self.root.path()
    }

    /// The superuser's name.
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// The TCP port on 127.0.0.1; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_directory(&self) -> &Path {
        &self.home
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.home.join("server.log")
    }

    /// Whether the server was started and not stopped since, as far as this value knows.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The postmaster's process id, from its pid file, while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_directory().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// A connection to the `postgres` database as the superuser.
    pub fn connect(&self) -> Result<postgres::Client> {
        crate::database::connect(&self.url_with_password())
    }

    /// A new, empty database in this cluster for the test `test_name`, dropped with the value
    /// (drop it before the cluster).
    pub fn create_database(&self, test_name: &str) -> Result<TestDatabase> {
        TestDatabase::create_in(&self.url_with_password(), test_name)
    }

    /// Stops the server the way an operator's restart does (`pg_ctl stop -m fast`: sessions
    /// are ended, data is kept) and starts it again on the same port with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop("fast")?;
        self.start_again()
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`): connections
    /// break and nothing is shut down cleanly; [`Cluster::start_again`] recovers it.
    pub fn stop_immediately(&mut self) -> Result<()> {
        self.stop("immediate")
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn start_again(&mut self) -> Result<()> {
        if self.running {
            return Err(Error::State {
                state: "running",
                what: "starting it",
                wanted: "stopped",
            });
        }
        self.pg_ctl_start()
    }

    fn data_directory(&self) -> PathBuf {
        self.home.join("data")
    }

    /// Makes the data directory, with the superuser and its password, the kit's settings and
    /// password authentication for every connection.
    fn initdb(&self) -> Result<()> {
        let password_file = self.home.join("superuser-password");
        write_file(&password_file, &self.password, 0o600)?;
        self.account.take_ownership(&password_file)?;
        let initdb = account::run_checked(
            self.account
                .command(&self.binaries.join("initdb"))
                .current_dir(&self.home)
                .arg("--pgdata")
                .arg(self.data_directory())
                .args(["--username", SUPERUSER])
                .arg(format!("--pwfile={}", password_file.display()))
                .args(["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"])
                // The data is thrown away with the cluster: no point waiting for the disk.
                .arg("--no-sync"),
        );
        let _ = std::fs::remove_file(&password_file);
        initdb?;
        let data = self.data_directory();
        let mut main_settings = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .map_err(|source| Error::Io {
                path: data.join("postgresql.conf"),
                source,
            })?;
        writeln!(main_settings, "\ninclude '{SETTINGS_FILE}'").map_err(|source| Error::Io {
            path: data.join("postgresql.conf"),
            source,
        })?;
        self.write_access()
    }

    /// Writes the authority's certificate where the test reads it, and the server's
    /// certificate and key into the data directory, owned by the server's account (the server
    /// refuses a key others may read); then `pg_hba.conf` again, for [`TlsOptions::only`].
    fn write_tls(&mut self, tls: &TlsOptions) -> Result<()> {
        let authority = Authority::new("pg-testkit throw-away authority")?;
        let names: Vec<&str> = tls.names.iter().map(String::as_str).collect();
        let server = authority.issue_server(&names)?;
        let root_certificate = self.root.path().join("root.crt");
        let authority_pem = authority.certificate_pem()?;
        write_file(&root_certificate, &authority_pem, 0o644)?;
        let data = self.data_directory();
        for (file, contents, mode) in [
            ("server.crt", &server.certificate_pem, 0o644),
            ("server.key", &server.key_pem, 0o600),
            // The authority that signs clients' certificates, for `clientcert`.
            ("root.crt", &authority_pem, 0o644),
        ] {
            let path = data.join(file);
            write_file(&path, contents, mode)?;
            self.account.take_ownership(&path)?;
        }
        self.tls = Some(ClusterTls {
            authority,
            only: tls.only || tls.client_certificates,
            client_certificates: tls.client_certificates,
            root_certificate,
        });
        self.write_access()
    }

    /// Writes `pg_hba.conf`: every way in asks for the password, so that a test can check how
    /// it is given; over TCP only with TLS when [`TlsOptions::only`] says so.
    fn write_access(&self) -> Result<()> {
        let (tcp, options) = match &self.tls {
            Some(tls) if tls.client_certificates => ("hostssl", " clientcert=verify-ca"),
            Some(tls) if tls.only => ("hostssl", ""),
            _ => ("host", ""),
        };
        let mut access = format!(
            "local all all scram-sha-256\n{tcp} all all 127.0.0.1/32 scram-sha-256{options}\n"
        );
        for (_, clients) in &self.listeners {
            access.push_str(&format!("{tcp} all all {clients} scram-sha-256{options}\n"));
        }
        let path = self.data_directory().join("pg_hba.conf");
        write_file(&path, &access, 0o600)?;
        self.account.take_ownership(&path)
    }

    /// Writes the kit's settings for `port` into the data directory.
    fn write_settings(&self, port: u16) -> Result<()> {
        let socket_directory = self.home.display().to_string().replace('\'', "''");
        let synchronous_commit = match self.commits {
            Commits::Fast => "off",
            Commits::SurviveServerCrash => "on",
        };
        let listen_addresses = std::iter::once(String::from("127.0.0.1"))
            .chain(
                self.listeners
                    .iter()
                    .map(|(address, _)| address.to_string()),
            )
            .collect::<Vec<_>>()
            .join(",");
        let settings = format!(
            "# Written by pg-testkit: a throw-away server for tests.\n\
             listen_addresses = '{listen_addresses}'\n\
             port = {port}\n\
             unix_socket_directories = '{socket_directory}'\n\
             max_connections = 300\n\
             shared_buffers = 32MB\n\
             fsync = off\n\
             synchronous_commit = {synchronous_commit}\n\
             full_page_writes = off\n\
             log_min_messages = warning\n\
             log_line_prefix = '%m [%p] '\n"
        );
        let settings = match self.tls {
            // Relative to the data directory, where `write_tls` put them.
            Some(_) => format!(
                "{settings}ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n"
            ),
            None => settings,
        };
        let path = self.data_directory().join(SETTINGS_FILE);
        write_file(&path, &settings, 0o600)?;
        self.account.take_ownership(&path)
    }

    /// Starts the server for the first time, on a port that is free when it binds it.
    fn start_on_a_free_port(&mut self) -> Result<()> {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            self.write_settings(port)?;
            self.port = port;
            let log_before = file_length(&self.log_file());
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let log = read_from(&self.log_file(), log_before);
                    if !log.contains("already in use") {
                        return Err(error);
                    }
                }
            }
        }
        Err(Error::NoFreePort {
            attempts: PORT_ATTEMPTS,
        })
    }

    fn pg_ctl_start(&mut self) -> Result<()> {
        let log_file = self.log_file();
        let log_before = file_length(&log_file);
        let mut command = self.account.command(&self.binaries.join("pg_ctl"));
        command
            .current_dir(&self.home)
            .arg("start")
            .arg("--pgdata")
            .arg(self.data_directory())
            .arg("--log")
            .arg(&log_file)
            .args(["--wait", "--timeout", &WAIT_SECONDS.to_string()]);
        match account::run_checked(&mut command) {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(Error::Command {
                command,
                status,
                output,
            }) => Err(Error::Command {
                command,
                status,
                output: format!(
                    "{output}\nthe server's log {} says:\n{}",
                    log_file.display(),
                    read_from(&log_file, log_before).trim_end()
                ),
            }),
            Err(error) => Err(error),
        }
    }

    /// `pg_ctl stop` in `mode` (`fast` or `immediate`), waiting until the server is gone.
    fn stop(&mut self, mode: &str) -> Result<()> {
        if !self.running {
            return Err(Error::State {
                state: "stopped",
                what: "stopping it",
                wanted: "running",
            });
        }
        self.pg_ctl_stop(mode)
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> Result<()> {
        account::run_checked(
            self.account
                .command(&self.binaries.join("pg_ctl"))
                .current_dir(&self.home)
                .arg("stop")
                .arg("--pgdata")
                .arg(self.data_directory())
                .args(["--mode", mode])
                .args(["--wait", "--timeout", &WAIT_SECONDS.to_string()]),
        )?;
        self.running = false;
        Ok(())
    }

    /// The last resort when `pg_ctl stop` failed: SIGKILL the postmaster (its backends notice
    /// their parent's death and exit).
    fn kill_server(&mut self) {
        if let Some(pid) = self
            .postmaster_pid()
            .and_then(|pid| i32::try_from(pid).ok())
        {
            // SAFETY: kill has no memory-safety preconditions; a stale pid at worst fails.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        self.running = false;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A server whose start timed out may have come up all the same: its pid file says so.
        if (self.running || self.postmaster_pid().is_some())
            && let Err(error) = self.pg_ctl_stop("immediate")
        {
            eprintln!("pg-testkit: {error}; killing the server");
            self.kill_server();
        }
        // `root`, the cluster's files, goes with the fields' own drops, after the server.
    }
}

/// The directory clusters' temporary directories are made in. When the server runs as
/// another user, that user must be able to pass through every directory above its cluster: the
/// system temporary directory is used unless it (or one above it) is closed to others, and then
/// `/tmp`.
fn base_directory(account: &Account) -> PathBuf {
    let base = std::env::temp_dir();
    if account.is_other_user() && !passable_by_others(&base) {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

/// A cluster's temporary directory in `base`, recorded as this process's.
fn make_root(base: &Path, account: &Account) -> Result<tempfile::TempDir> {
    let root = tempfile::Builder::new()
        .prefix(leftovers::ROOT_PREFIX)
        .tempdir_in(base)
        .map_err(|source| Error::Io {
            path: base.to_path_buf(),
            source,
        })?;
    if account.is_other_user() {
        account::set_mode(root.path(), 0o711)?;
    }
    leftovers::record_owner(root.path())?;
    Ok(root)
}

/// Whether every directory from `path` up lets other users through (their execute bit).
fn passable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors().all(|dir| {
        std::fs::metadata(dir).is_ok_and(|metadata| metadata.permissions().mode() & 0o001 != 0)
    })
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|source| Error::Io {
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|source| Error::Io {
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })
}

/// Writes `text` to `path` with the permission bits `mode`.
fn write_file(path: &Path, text: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    account::set_mode(path, mode)
}

fn file_length(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// The text of `path` from byte `offset` on (empty when it cannot be read).
fn read_from(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        use std::io::{Seek, SeekFrom};
        let _ = file.seek(SeekFrom::Start(offset));
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}
