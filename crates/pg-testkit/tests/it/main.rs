//! The kit against a real PostgreSQL server: clusters start, ask for their password, keep
//! their data across restarts and leave nothing behind; test databases come and go.
//!
//! Without PostgreSQL's server programs these tests skip and say so, unless
//! `BATON_REQUIRE_POSTGRES=1` makes that a failure.

use std::path::Path;
use std::time::{Duration, Instant};

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use openssl::ssl::{SslConnector, SslMethod};
use pg_testkit::{Cluster, TestDatabase, TlsOptions, private_cluster, private_tls_cluster};
use postgres_openssl::MakeTlsConnector;

/// How long a stopped server's processes may take to be gone.
const GONE_WITHIN: Duration = Duration::from_secs(20);

#[test]
fn the_password_is_needed_over_tcp_and_the_socket() {
    let Some(cluster) = private_cluster("the_password_is_needed_over_tcp_and_the_socket") else {
        return;
    };
    let mut client = postgres::Client::connect(&cluster.url_with_password(), postgres::NoTls)
        .expect("the superuser connects with its password");
    let row = client
        .query_one("SELECT current_user::text, 1 + 1", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), cluster.user());
    assert_eq!(row.get::<_, i32>(1), 2);

    // rust-postgres reads neither PGPASSWORD nor ~/.pgpass: without the password in the URL,
    // the server's demand for one cannot be met.
    let without = postgres::Client::connect(&cluster.url(), postgres::NoTls);
    assert!(without.is_err(), "connected without a password");
    assert!(!cluster.url().contains(cluster.password()));
    let wrong = cluster
        .url_with_password()
        .replace(cluster.password(), "not-the-password");
    let Err(error) = postgres::Client::connect(&wrong, postgres::NoTls) else {
        panic!("connected with a wrong password");
    };
    assert!(
        format!("{error:?}").contains("password authentication failed"),
        "{error:?}"
    );

    let socket = format!(
        "host={} port={} user={} password={} dbname=postgres",
        cluster.socket_directory().display(),
        cluster.port(),
        cluster.user(),
        cluster.password()
    );
    let mut over_socket = postgres::Client::connect(&socket, postgres::NoTls)
        .expect("the superuser connects over the unix socket");
    over_socket.batch_execute("SELECT 1").unwrap();
}

#[test]
fn a_test_database_is_made_empty_and_dropped() {
    let Some(cluster) = private_cluster("a_test_database_is_made_empty_and_dropped") else {
        return;
    };
    let database = cluster
        .create_database("a_test_database_is_made_empty_and_dropped")
        .unwrap();
    assert!(database.url().ends_with(&format!("/{}", database.name())));
    assert_eq!(database.password().as_deref(), Some(cluster.password()));
    assert!(!database.url_without_password().contains(cluster.password()));
    let mut client = database.connect().unwrap();
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
    client.batch_execute("CREATE TABLE t (x int)").unwrap();
    let name = database.name().to_owned();
    // Dropped with a connection still open: WITH (FORCE) ends it.
    drop(database);
    assert!(!database_exists(&cluster, &name));
    drop(client);
}

#[test]
fn a_test_database_comes_from_the_environment_when_a_server_is_named() {
    let Some(database) =
        TestDatabase::create("a_test_database_comes_from_the_environment_when_a_server_is_named")
    else {
        return;
    };
    let mut client = database.connect().unwrap();
    let name: String = client
        .query_one("SELECT current_database()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(name, database.name());
}

#[test]
fn a_restart_keeps_the_port_and_the_data() {
    let Some(mut cluster) = private_cluster("a_restart_keeps_the_port_and_the_data") else {
        return;
    };
    let port = cluster.port();
    let first_pid = cluster.postmaster_pid().unwrap();
    let mut client = cluster.connect().unwrap();
    client
        .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
        .unwrap();
    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_ne!(cluster.postmaster_pid(), Some(first_pid));
    // The old connection was ended by the restart.
    assert!(client.batch_execute("SELECT 1").is_err());

    let mut client = cluster.connect().unwrap();
    client.batch_execute("INSERT INTO kept VALUES (2)").unwrap();
    cluster.stop_immediately().unwrap();
    assert!(!cluster.is_running());
    assert!(cluster.connect().is_err());
    cluster.start_again().unwrap();
    assert_eq!(cluster.port(), port);
    let count: i64 = cluster
        .connect()
        .unwrap()
        .query_one("SELECT count(*) FROM kept", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        count, 2,
        "an acknowledged commit was lost to the immediate stop"
    );
}

#[test]
fn drop_stops_the_server_and_removes_its_files() {
    let Some(cluster) = private_cluster("drop_stops_the_server_and_removes_its_files") else {
        return;
    };
    let pid = cluster.postmaster_pid().unwrap();
    let directory = cluster.directory().to_path_buf();
    assert!(process_exists(pid));
    drop(cluster);
    assert_gone(pid, &directory);
}

#[test]
fn drop_stops_the_server_when_the_test_panics() {
    let Some(cluster) = private_cluster("drop_stops_the_server_when_the_test_panics") else {
        return;
    };
    let pid = cluster.postmaster_pid().unwrap();
    let directory = cluster.directory().to_path_buf();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _cluster = cluster;
        panic!("a test fails while its server runs");
    }));
    assert!(outcome.is_err());
    assert_gone(pid, &directory);
}

#[test]
fn drop_of_a_stopped_cluster_removes_its_files() {
    let Some(mut cluster) = private_cluster("drop_of_a_stopped_cluster_removes_its_files") else {
        return;
    };
    cluster.stop_immediately().unwrap();
    assert!(cluster.start_again().is_ok());
    cluster.stop_immediately().unwrap();
    assert!(
        cluster.stop_immediately().is_err(),
        "a stopped server stopped twice"
    );
    let directory = cluster.directory().to_path_buf();
    drop(cluster);
    assert!(!directory.exists());
}

#[test]
fn a_cluster_whose_owner_died_is_removed_by_the_next_one_started() {
    let Some(cluster) =
        private_cluster("a_cluster_whose_owner_died_is_removed_by_the_next_one_started")
    else {
        return;
    };
    let pid = cluster.postmaster_pid().unwrap();
    let directory = cluster.directory().to_path_buf();
    // As if this process had been killed: no drop, and an owner that is gone.
    std::mem::forget(cluster);
    std::fs::write(directory.join("owner"), format!("{} 1", u32::MAX)).unwrap();
    let _next = Cluster::start().unwrap();
    assert_gone(pid, &directory);
}

#[test]
fn a_cluster_listens_on_another_address_when_asked() {
    let Some(mut cluster) = private_cluster("a_cluster_listens_on_another_address_when_asked")
    else {
        return;
    };
    // Any 127/8 address reaches the loopback interface: a stand-in for a veth pair's end.
    let address = std::net::IpAddr::from([127, 0, 0, 2]);
    let url = cluster.url_with_password_on(address);
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_err());
    cluster.also_listen_on(address, "127.0.0.2/32").unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let peer: String = client
        .query_one("SELECT host(inet_server_addr())", &[])
        .unwrap()
        .get(0);
    assert_eq!(peer, "127.0.0.2");
    cluster
        .connect()
        .unwrap()
        .batch_execute("SELECT 1")
        .unwrap();
}

#[test]
fn clusters_run_side_by_side() {
    let Some(first) = private_cluster("clusters_run_side_by_side") else {
        return;
    };
    let second = Cluster::start().unwrap();
    assert_ne!(first.port(), second.port());
    assert_ne!(first.password(), second.password());
    second.connect().unwrap().batch_execute("SELECT 1").unwrap();
    first.connect().unwrap().batch_execute("SELECT 1").unwrap();
}

#[test]
fn a_tls_cluster_takes_only_tls_with_its_authoritys_certificate_when_asked() {
    let only = TlsOptions {
        only: true,
        ..TlsOptions::default()
    };
    let Some(cluster) = private_tls_cluster("a_tls_cluster_takes_only_tls", &only) else {
        return;
    };
    let plain = postgres::Client::connect(&cluster.url_with_password(), postgres::NoTls);
    assert!(plain.is_err(), "a login without TLS over TCP was taken");

    // Checked against the cluster's authority alone, by the address the certificate names.
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector
        .set_ca_file(cluster.root_certificate().unwrap())
        .unwrap();
    let tls = MakeTlsConnector::new(connector.build());
    let url = format!("{}?sslmode=require", cluster.url_with_password());
    let mut client = postgres::Client::connect(&url, tls).expect("a login with TLS");
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted);

    // The server's key is for the server's account alone; the authority's certificate is for
    // anyone to read.
    let data = cluster.directory().join("cluster/data");
    let key = std::fs::metadata(data.join("server.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let server_account = std::fs::metadata(&data).unwrap().uid();
    assert_eq!(key.uid(), server_account);
    let root = std::fs::metadata(cluster.root_certificate().unwrap()).unwrap();
    assert_eq!(root.permissions().mode() & 0o777, 0o644);
}

fn database_exists(cluster: &Cluster, name: &str) -> bool {
    cluster
        .connect()
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

/// Whether `pid` names a live process (a zombie waiting for its reaper counts as gone).
fn process_exists(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn assert_gone(pid: u32, directory: &Path) {
    let deadline = Instant::now() + GONE_WITHIN;
    while process_exists(pid) {
        assert!(
            Instant::now() < deadline,
            "the postmaster {pid} still runs {GONE_WITHIN:?} after its cluster was dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !directory.exists(),
        "{} was left behind",
        directory.display()
    );
}
