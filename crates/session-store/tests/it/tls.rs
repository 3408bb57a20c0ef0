//! TLS to a PostgreSQL ledger against real servers with and without it: each `sslmode`
//! connects, encrypts, verifies and refuses as libpq's table says, and a refusal says what
//! failed in words a person can act on, without the password.

use std::path::Path;

use pg_testkit::{Authority, Cluster, TlsOptions, private_cluster, private_tls_cluster};
use session_store::{PostgresEnvironment, Store, StoreError, StoreOptions};

use crate::common::options;

/// A ledger URL for `cluster` through `host`, with the superuser's password and `query`; the
/// connection names itself `application` so that the server's views can tell it apart.
fn url(cluster: &Cluster, host: &str, application: &str, query: &str) -> String {
    format!(
        "postgres://{}:{}@{host}:{}/postgres?application_name={application}&{query}",
        cluster.user(),
        cluster.password(),
        cluster.port()
    )
}

/// Whether the connection named `application` is encrypted, as the server sees it (asked over
/// the unix socket, which every cluster takes without TLS).
fn encrypted(cluster: &Cluster, application: &str) -> bool {
    let socket = format!(
        "host={} port={} user={} password={} dbname=postgres",
        cluster.socket_directory().display(),
        cluster.port(),
        cluster.user(),
        cluster.password()
    );
    let mut client = postgres::Client::connect(&socket, postgres::NoTls).unwrap();
    let rows = client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&application],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "one connection named {application}");
    rows[0].get(0)
}

fn open(url: &str) -> Result<Store, StoreError> {
    Store::open_with(url, &options())
}

/// The refusal's whole chain, checked for the password and the exit-code class.
fn refusal(cluster: &Cluster, error: &StoreError) -> String {
    let text = pg_testkit::chain(error);
    assert!(!text.contains(cluster.password()), "{text}");
    text
}

#[test]
fn each_sslmode_connects_to_a_server_with_tls_as_libpq_does() {
    let Some(cluster) = private_tls_cluster("tls::with_tls", &TlsOptions::default()) else {
        return;
    };
    let root = cluster.root_certificate().unwrap().display().to_string();
    let cases = [
        ("require", "127.0.0.1", String::new(), true),
        ("prefer", "127.0.0.1", String::new(), true),
        ("allow", "127.0.0.1", String::new(), false),
        ("disable", "127.0.0.1", String::new(), false),
        (
            "verify-ca",
            "127.0.0.1",
            format!("sslrootcert={root}"),
            true,
        ),
        (
            "verify-full",
            "localhost",
            format!("sslrootcert={root}"),
            true,
        ),
        // The certificate names the address too.
        (
            "verify-full",
            "127.0.0.1",
            format!("sslrootcert={root}"),
            true,
        ),
    ];
    for (index, (mode, host, files, expect_encrypted)) in cases.into_iter().enumerate() {
        let application = format!("tls_case_{index}");
        let url = url(
            &cluster,
            host,
            &application,
            &format!("sslmode={mode}&{files}"),
        );
        let store = open(&url).unwrap_or_else(|error| panic!("{mode} {host}: {error:?}"));
        assert_eq!(
            encrypted(&cluster, &application),
            expect_encrypted,
            "{mode} {host}"
        );
        drop(store);
    }
}

#[test]
fn a_certificate_that_does_not_check_out_is_refused_clearly() {
    let names = TlsOptions {
        names: vec![String::from("localhost")],
        ..TlsOptions::default()
    };
    let Some(cluster) = private_tls_cluster("tls::refused", &names) else {
        return;
    };
    let directory = tempfile::tempdir().unwrap();
    let other = directory.path().join("other-root.crt");
    let authority = Authority::new("another authority").unwrap();
    std::fs::write(&other, authority.certificate_pem().unwrap()).unwrap();
    let root = cluster.root_certificate().unwrap().display().to_string();

    let query = format!("sslmode=verify-full&sslrootcert={}", other.display());
    let error = open(&url(&cluster, "localhost", "wrong_ca", &query)).unwrap_err();
    let text = refusal(&cluster, &error);
    assert!(error.is_tls_failure(), "{text}");
    assert!(!error.is_connection_lost(), "{text}");
    assert!(
        text.contains(&format!("is not signed by {}", other.display())),
        "{text}"
    );
    // `prefer` checks it too, and, as libpq, falls back to a connection without TLS.
    let query = format!("sslmode=prefer&sslrootcert={}", other.display());
    let store = open(&url(&cluster, "localhost", "preferred", &query)).unwrap();
    assert!(!encrypted(&cluster, "preferred"));
    drop(store);
    // `require` checks the chain too once a root certificate is given, as libpq does.
    let query = format!("sslmode=require&sslrootcert={}", other.display());
    let error = open(&url(&cluster, "localhost", "wrong_ca", &query)).unwrap_err();
    assert!(refusal(&cluster, &error).contains("is not signed by"));

    // The certificate names localhost only: the address is not good enough for verify-full,
    // and is for verify-ca, which checks the chain alone.
    let query = format!("sslmode=verify-full&sslrootcert={root}");
    let error = open(&url(&cluster, "127.0.0.1", "by_address", &query)).unwrap_err();
    let text = refusal(&cluster, &error);
    assert!(text.contains("is not made out to the host name"), "{text}");
    let query = format!("sslmode=verify-ca&sslrootcert={root}");
    drop(open(&url(&cluster, "127.0.0.1", "by_address_ca", &query)).unwrap());

    // No root certificate named and none at home: verify-ca cannot check anything.
    let home = tempfile::tempdir().unwrap();
    let without_root = StoreOptions {
        postgres_environment: PostgresEnvironment {
            home: Some(home.path().to_owned()),
            ..PostgresEnvironment::default()
        },
        ..options()
    };
    let url_without_root = url(&cluster, "localhost", "no_root", "sslmode=verify-ca");
    let error = Store::open_with(&url_without_root, &without_root).unwrap_err();
    let text = refusal(&cluster, &error);
    assert!(text.contains("root certificate file"), "{text}");
    assert!(text.contains(".postgresql/root.crt"), "{text}");

    // ~/.postgresql/root.crt is where libpq looks when the URL names none.
    let dot_postgresql = home.path().join(".postgresql");
    std::fs::create_dir(&dot_postgresql).unwrap();
    std::fs::copy(Path::new(&root), dot_postgresql.join("root.crt")).unwrap();
    drop(Store::open_with(&url_without_root, &without_root).unwrap());
}

#[test]
fn a_server_without_tls_is_refused_by_require_and_taken_in_plain_by_prefer() {
    let Some(cluster) = private_cluster("tls::without_tls") else {
        return;
    };
    let error = open(&url(&cluster, "127.0.0.1", "require", "sslmode=require")).unwrap_err();
    let text = refusal(&cluster, &error);
    assert!(error.is_tls_failure(), "{text}");
    let server = format!("127.0.0.1:{}", cluster.port());
    assert!(
        text.contains(&format!(
            "the server at {server} does not accept TLS connections, but sslmode=require asks for it"
        )),
        "{text}"
    );
    // Over the unix socket libpq never uses TLS, whatever the mode.
    let socket = format!(
        "postgres://{}:{}@{}:{}/postgres?sslmode=verify-full",
        cluster.user(),
        cluster.password(),
        cluster
            .socket_directory()
            .display()
            .to_string()
            .replace('/', "%2F"),
        cluster.port()
    );
    drop(open(&socket).unwrap());
    // `allow` tries TLS after a refusal, and with none to be had the server's answer stands.
    let wrong = url(&cluster, "127.0.0.1", "wrong", "sslmode=allow")
        .replace(cluster.password(), "not-the-password");
    let error = open(&wrong).unwrap_err();
    let text = refusal(&cluster, &error);
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!error.is_tls_failure(), "{text}");
    for mode in ["prefer", "allow"] {
        let application = format!("plain_{mode}");
        let store = open(&url(
            &cluster,
            "127.0.0.1",
            &application,
            &format!("sslmode={mode}"),
        ))
        .unwrap();
        assert!(!encrypted(&cluster, &application), "{mode}");
        drop(store);
    }
}

#[test]
fn a_server_that_takes_only_tls_refuses_disable_clearly() {
    let only = TlsOptions {
        only: true,
        ..TlsOptions::default()
    };
    let Some(cluster) = private_tls_cluster("tls::only", &only) else {
        return;
    };
    let error = open(&url(&cluster, "127.0.0.1", "disabled", "sslmode=disable")).unwrap_err();
    let text = refusal(&cluster, &error);
    assert!(error.is_tls_failure(), "{text}");
    assert!(
        text.contains("accepts only TLS connections here, and sslmode=disable turns TLS off"),
        "{text}"
    );
    // `allow` tries without TLS first and then with it.
    let store = open(&url(&cluster, "127.0.0.1", "allowed", "sslmode=allow")).unwrap();
    assert!(encrypted(&cluster, "allowed"));
    drop(store);
}

#[test]
fn a_client_certificate_is_shown_when_the_server_asks_for_one() {
    let with_client_certificates = TlsOptions {
        client_certificates: true,
        ..TlsOptions::default()
    };
    let Some(cluster) = private_tls_cluster("tls::client", &with_client_certificates) else {
        return;
    };
    let root = cluster.root_certificate().unwrap().display().to_string();
    let home = tempfile::tempdir().unwrap();
    let in_home = StoreOptions {
        postgres_environment: PostgresEnvironment {
            home: Some(home.path().to_owned()),
            ..PostgresEnvironment::default()
        },
        ..options()
    };
    let verified = format!("sslmode=verify-full&sslrootcert={root}");
    let without = url(&cluster, "localhost", "no_certificate", &verified);
    let error = Store::open_with(&without, &in_home).unwrap_err();
    let text = refusal(&cluster, &error);
    assert!(
        text.contains("requires a valid client certificate"),
        "{text}"
    );

    let issued = cluster.issue_client(cluster.user()).unwrap();
    let directory = home.path().join(".postgresql");
    std::fs::create_dir(&directory).unwrap();
    let (cert, key) = (
        directory.join("postgresql.crt"),
        directory.join("postgresql.key"),
    );
    std::fs::write(&cert, &issued.certificate_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    set_mode(&key, 0o600);
    // Named in the URL, and found in ~/.postgresql when the URL names none.
    let named = format!(
        "{verified}&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    );
    drop(open(&url(&cluster, "localhost", "named_certificate", &named)).unwrap());
    drop(Store::open_with(&without, &in_home).unwrap());

    // libpq refuses a key others may read, and so does Baton, before connecting.
    set_mode(&key, 0o644);
    let error = open(&url(&cluster, "localhost", "open_key", &named)).unwrap_err();
    let text = refusal(&cluster, &error);
    assert!(error.is_tls_failure(), "{text}");
    assert!(text.contains("others may read it"), "{text}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
