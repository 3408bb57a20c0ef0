//! TLS to a PostgreSQL ledger as libpq does it: the URL's `sslmode`, `sslrootcert`, `sslcert`
//! and `sslkey` (rust-postgres reads only three of libpq's six modes, and none of the files),
//! their environment defaults, and a connection made through OpenSSL that falls back, verifies
//! and fails as libpq's table "SSL Mode Descriptions" says.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use postgres::config::{Host, SslMode as RustSslMode};
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, Config, NoTls, Socket};
use postgres_openssl::{MakeTlsConnector, TlsStream};

use crate::options::PostgresEnvironment;

/// Why a connection with TLS (or one refused for the lack of it) failed, in words a person can
/// act on. Each names the server as `host:port`.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The server answered the request for TLS with "no".
    #[error(
        "the server at {server} does not accept TLS connections, but sslmode={mode} asks for it: turn `ssl = on` in the server's postgresql.conf, or connect with sslmode=prefer (or disable) where the network is trusted"
    )]
    NotOffered { server: String, mode: &'static str },
    /// The server's certificate chain does not lead to the root certificate given.
    #[error(
        "the server's certificate at {server} is not signed by {} ({reason}): give sslrootcert the file of the certificate authority that signed it",
        root_cert.display()
    )]
    Untrusted {
        server: String,
        root_cert: PathBuf,
        reason: String,
    },
    /// The certificate is trusted but made out to other names than the one connected to.
    #[error(
        "the server's certificate at {server} is not made out to the host name or address connected to (sslmode=verify-full checks it): connect by a name the certificate lists, or use sslmode=verify-ca"
    )]
    HostMismatch { server: String },
    /// The root certificate that verification needs is not there.
    #[error(
        "the root certificate file {} does not exist, and sslmode={mode} needs it to check the server's certificate: give sslrootcert the certificate authority's file, or use sslmode=require to encrypt without checking",
        path.display()
    )]
    RootCertMissing { path: PathBuf, mode: &'static str },
    /// A certificate or key file named (or found in `~/.postgresql`) could not be used.
    #[error("could not use the {what} {}: {reason}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The server's `pg_hba.conf` takes only TLS connections, and sslmode turned TLS off.
    #[error(
        "the server at {server} accepts only TLS connections here, and sslmode=disable turns TLS off: use sslmode=require, or verify-full with sslrootcert"
    )]
    TlsRequired {
        server: String,
        #[source]
        source: postgres::Error,
    },
    /// The server asks for a client certificate, and none was there to show.
    #[error(
        "the server at {server} asks for a client certificate, and there is none: name one with sslcert and sslkey, or put it in ~/.postgresql/postgresql.crt and postgresql.key"
    )]
    NoClientCertificate {
        server: String,
        #[source]
        source: postgres::Error,
    },
    /// The TLS handshake failed for another reason.
    #[error(
        "the TLS handshake with the server at {server} failed: check the server's TLS settings and the URL's sslmode"
    )]
    Handshake {
        server: String,
        #[source]
        source: postgres::Error,
    },
    /// Anything else: the server could not be reached, refused the login, and so on.
    #[error(transparent)]
    Connection(postgres::Error),
}

impl TlsError {
    /// Whether trying again later may succeed: a handshake cut short may have been the
    /// network's doing; a certificate that does not fit will not fit later either.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, TlsError::Handshake { .. })
    }
}

/// libpq's `sslmode`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(word: &str) -> Result<SslMode, String> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == word)
            .ok_or_else(|| {
                format!(
                    "sslmode `{word}` is not one of libpq's: disable, allow, prefer, require, verify-ca, verify-full"
                )
            })
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The TLS parameters a URL's query gives, taken out of what rust-postgres reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsParameters {
    mode: Option<SslMode>,
    root_cert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Splits libpq's TLS parameters off `url`: the URL without them, for rust-postgres, and the
/// parameters. The error is the reason, for the caller's message.
pub(crate) fn split_url(url: &str) -> Result<(String, TlsParameters), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), TlsParameters::default()));
    };
    let mut parameters = TlsParameters::default();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let path = || Some(PathBuf::from(percent_decoded(value)));
        match key {
            "sslmode" => parameters.mode = Some(SslMode::parse(&percent_decoded(value))?),
            "sslrootcert" => parameters.root_cert = path(),
            "sslcert" => parameters.cert = path(),
            "sslkey" => parameters.key = path(),
            "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "{key} is not supported by baton: revocation lists are not checked; leave it out, and take a revoked certificate out of the server instead"
                ));
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, parameters))
}

/// How a ledger connects, settled from the URL, the environment and libpq's defaults.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    mode: SslMode,
    /// The certificate authority to check the server against, when it is to be checked.
    root_cert: Option<PathBuf>,
    /// Whether the root certificate was named (`sslrootcert`, `PGSSLROOTCERT`) rather than
    /// looked for in `~/.postgresql`: a named file must exist.
    root_cert_named: bool,
    /// A client certificate and its key.
    client: Option<ClientCertificate>,
    /// `host:port` of each server, for messages.
    servers: String,
    /// Whether every host is a unix socket, over which libpq never uses TLS whatever the
    /// mode (the server offers none there).
    sockets_only: bool,
}

#[derive(Debug, Clone)]
struct ClientCertificate {
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    /// The URL's parameters over the environment's over libpq's defaults (`prefer`; the files
    /// in `~/.postgresql`). The error is the reason, for the caller's message.
    pub(crate) fn resolve(
        url: &TlsParameters,
        environment: &PostgresEnvironment,
        config: &Config,
    ) -> Result<Tls, String> {
        let mode = match (url.mode, &environment.sslmode) {
            (Some(mode), _) => mode,
            (None, Some(word)) => {
                SslMode::parse(word).map_err(|reason| format!("PGSSLMODE: {reason}"))?
            }
            (None, None) => SslMode::Prefer,
        };
        let in_home = |file: &str| {
            environment
                .home
                .as_ref()
                .map(|home| home.join(".postgresql").join(file))
        };
        let named_root = url.root_cert.clone().or(environment.sslrootcert.clone());
        let root_cert_named = named_root.is_some();
        let root_cert = named_root.or_else(|| in_home("root.crt"));
        let client = match url.cert.clone().or(environment.sslcert.clone()) {
            Some(cert) => Some(cert),
            // libpq offers the default certificate only when it is there.
            None => in_home("postgresql.crt").filter(|cert| cert.exists()),
        }
        .map(|cert| ClientCertificate {
            key: url
                .key
                .clone()
                .or(environment.sslkey.clone())
                .or_else(|| in_home("postgresql.key"))
                .unwrap_or_else(|| cert.with_extension("key")),
            cert,
        });
        Ok(Tls {
            mode,
            root_cert,
            root_cert_named,
            client,
            servers: servers(config),
            sockets_only: config
                .get_hosts()
                .iter()
                .all(|host| matches!(host, Host::Unix(_))),
        })
    }

    /// Connects as libpq would with this mode: over unix sockets and with `disable` in plain;
    /// `allow` in plain, then
    /// with TLS when the server refused; `prefer` with TLS, then in plain when the server has
    /// none or the handshake failed; the others with TLS or not at all.
    pub(crate) fn connect(&self, config: &Config) -> Result<Client, TlsError> {
        match self.mode {
            _ if self.sockets_only => self.plain(config),
            SslMode::Disable => self.plain(config),
            SslMode::Allow => match self.plain(config) {
                Err(TlsError::TlsRequired { .. }) => self.encrypted(config, RustSslMode::Require),
                // Refused for another reason (a wrong password, a missing role): with TLS the
                // server may think again; without TLS to offer, its first answer stands.
                Err(TlsError::Connection(refused)) if refused.as_db_error().is_some() => {
                    match self.encrypted(config, RustSslMode::Require) {
                        Err(TlsError::NotOffered { .. }) => Err(TlsError::Connection(refused)),
                        other => other,
                    }
                }
                other => other,
            },
            SslMode::Prefer => match self.encrypted(config, RustSslMode::Prefer) {
                Err(
                    TlsError::Untrusted { .. }
                    | TlsError::HostMismatch { .. }
                    | TlsError::Handshake { .. },
                ) => self.plain(config),
                other => other,
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                self.encrypted(config, RustSslMode::Require)
            }
        }
    }

    fn plain(&self, config: &Config) -> Result<Client, TlsError> {
        let mut config = config.clone();
        config.ssl_mode(RustSslMode::Disable);
        config.connect(NoTls).map_err(|error| {
            if refused_for(&error, "no encryption") {
                TlsError::TlsRequired {
                    server: self.servers.clone(),
                    source: error,
                }
            } else {
                TlsError::Connection(error)
            }
        })
    }

    fn encrypted(&self, config: &Config, mode: RustSslMode) -> Result<Client, TlsError> {
        // Checked now, so that a missing or unfit file is reported as such rather than as a
        // failed handshake.
        self.check_files()?;
        let verification = Arc::new(Mutex::new(None));
        let connector = Deferred {
            tls: self.clone(),
            verification: Arc::clone(&verification),
        };
        let mut config = config.clone();
        config.ssl_mode(mode);
        config.connect(connector).map_err(|error| {
            let failed = verification
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            self.explain(error, failed)
        })
    }

    /// What failed, from rust-postgres's error and what certificate check (if any) failed.
    fn explain(&self, error: postgres::Error, failed: Option<VerifyFailure>) -> TlsError {
        let server = self.servers.clone();
        if self.client.is_none() && refused_for(&error, "requires a valid client certificate") {
            return TlsError::NoClientCertificate {
                server,
                source: error,
            };
        }
        // rust-postgres has no accessor for its error kinds; its words for them are fixed.
        if error.to_string() != "error performing TLS handshake" {
            return TlsError::Connection(error);
        }
        let not_offered = std::error::Error::source(&error)
            .is_some_and(|cause| cause.to_string() == "server does not support TLS");
        match failed {
            _ if not_offered => TlsError::NotOffered {
                server,
                mode: self.mode.as_str(),
            },
            Some(failure) if failure.is_host_mismatch() => TlsError::HostMismatch { server },
            Some(failure) => TlsError::Untrusted {
                server,
                root_cert: self.root_cert.clone().unwrap_or_default(),
                reason: failure.reason,
            },
            None => TlsError::Handshake {
                server,
                source: error,
            },
        }
    }

    /// The connector for one attempt: the root certificate and the client's, and a check of
    /// the server's certificate that writes its first failure into `verification`.
    fn connector(
        &self,
        verification: Arc<Mutex<Option<VerifyFailure>>>,
    ) -> Result<MakeTlsConnector, TlsError> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())
            .map_err(|error| self.file_error("TLS library", Path::new("(openssl)"), error))?;
        let root_cert = self.root_cert_to_check()?;
        match &root_cert {
            Some(path) => builder.set_cert_store(load_root_cert(path)?),
            None => builder.set_verify(SslVerifyMode::NONE),
        }
        if let Some(client) = &self.client {
            load_client_certificate(&mut builder, client)?;
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        let verify = root_cert.is_some();
        let check_host = self.mode == SslMode::VerifyFull;
        connector.set_callback(move |ssl, _domain| {
            ssl.set_verify_hostname(check_host);
            if verify {
                let verification = Arc::clone(&verification);
                ssl.set_verify_callback(SslVerifyMode::PEER, move |passed, context| {
                    if !passed {
                        let mut slot = verification.lock().unwrap_or_else(PoisonError::into_inner);
                        slot.get_or_insert(VerifyFailure {
                            code: context.error().as_raw(),
                            reason: context.error().error_string().to_owned(),
                        });
                    }
                    passed
                });
            }
            Ok(())
        });
        Ok(connector)
    }

    /// Loads every file the connection will use, and checks that the key fits the
    /// certificate, as [`Tls::connector`] will.
    fn check_files(&self) -> Result<(), TlsError> {
        if let Some(path) = self.root_cert_to_check()? {
            load_root_cert(&path)?;
        }
        let Some(client) = &self.client else {
            return Ok(());
        };
        let fail = |what: &'static str, path: &Path, reason: String| TlsError::File {
            what,
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(&client.cert)
            .map_err(|error| fail("client certificate", &client.cert, error.to_string()))?;
        let certificate = X509::stack_from_pem(&pem)
            .ok()
            .and_then(|chain| chain.into_iter().next())
            .ok_or_else(|| {
                let reason = String::from("it holds no PEM certificate");
                fail("client certificate", &client.cert, reason)
            })?;
        check_key_permissions(&client.key)
            .map_err(|reason| fail("client key", &client.key, reason))?;
        let key = std::fs::read(&client.key)
            .map_err(|error| error.to_string())
            .and_then(|pem| PKey::private_key_from_pem(&pem).map_err(|error| error.to_string()))
            .map_err(|reason| fail("client key", &client.key, reason))?;
        let fits = certificate
            .public_key()
            .is_ok_and(|public| public.public_eq(&key));
        match fits {
            true => Ok(()),
            false => Err(fail(
                "client key",
                &client.key,
                format!("it does not belong to {}", client.cert.display()),
            )),
        }
    }

    /// The root certificate to check the server against: always for `verify-ca` and
    /// `verify-full`; for the weaker modes when one is there, as libpq does.
    fn root_cert_to_check(&self) -> Result<Option<PathBuf>, TlsError> {
        let Some(path) = &self.root_cert else {
            return match self.mode.verifies() {
                true => Err(TlsError::RootCertMissing {
                    path: PathBuf::from("~/.postgresql/root.crt"),
                    mode: self.mode.as_str(),
                }),
                false => Ok(None),
            };
        };
        match path.exists() {
            true => Ok(Some(path.clone())),
            // A file named but missing is a mistake to point out, not a reason to skip checks.
            false if self.mode.verifies() || self.root_cert_named => {
                Err(TlsError::RootCertMissing {
                    path: path.clone(),
                    mode: self.mode.as_str(),
                })
            }
            false => Ok(None),
        }
    }

    fn file_error(&self, what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
        TlsError::File {
            what,
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The connector rust-postgres is given: it makes the OpenSSL connector only once the server
/// has agreed to TLS, because making one loads the system's certificate bundle (OpenSSL's
/// default paths, some 50 ms) — a cost a server without TLS, under `prefer`, should not add to
/// every connection.
struct Deferred {
    tls: Tls,
    verification: Arc<Mutex<Option<VerifyFailure>>>,
}

/// [`Deferred`] for one host.
struct DeferredConnect {
    tls: Tls,
    verification: Arc<Mutex<Option<VerifyFailure>>>,
    domain: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Handshake = Pin<Box<dyn Future<Output = Result<TlsStream<Socket>, BoxError>> + Send>>;

impl MakeTlsConnect<Socket> for Deferred {
    type Stream = TlsStream<Socket>;
    type TlsConnect = DeferredConnect;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, domain: &str) -> Result<DeferredConnect, Self::Error> {
        Ok(DeferredConnect {
            tls: self.tls.clone(),
            verification: Arc::clone(&self.verification),
            domain: domain.to_owned(),
        })
    }
}

impl TlsConnect<Socket> for DeferredConnect {
    type Stream = TlsStream<Socket>;
    type Error = BoxError;
    type Future = Handshake;

    fn connect(self, stream: Socket) -> Handshake {
        let connector = self
            .tls
            .connector(self.verification)
            .map_err(BoxError::from)
            .and_then(|mut connector| {
                MakeTlsConnect::<Socket>::make_tls_connect(&mut connector, &self.domain)
                    .map_err(BoxError::from)
            });
        match connector {
            Ok(connector) => connector.connect(stream),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }
}

/// The first certificate check that failed during a handshake.
#[derive(Debug)]
struct VerifyFailure {
    /// OpenSSL's `X509_V_ERR_*` code.
    code: i32,
    reason: String,
}

impl VerifyFailure {
    /// OpenSSL's `X509_V_ERR_HOSTNAME_MISMATCH` and `X509_V_ERR_IP_ADDRESS_MISMATCH`
    /// (x509_vfy.h), which the `openssl` crate does not name.
    const HOST_MISMATCH: [i32; 2] = [62, 64];

    fn is_host_mismatch(&self) -> bool {
        VerifyFailure::HOST_MISMATCH.contains(&self.code)
    }
}

/// A certificate store holding only the certificates in `path`: libpq trusts the root
/// certificate file alone, not the system's authorities.
fn load_root_cert(path: &Path) -> Result<openssl::x509::store::X509Store, TlsError> {
    let fail = |reason: String| TlsError::File {
        what: "root certificate",
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|error| fail(error.to_string()))?;
    let certificates = X509::stack_from_pem(&pem).map_err(|error| fail(error.to_string()))?;
    if certificates.is_empty() {
        return Err(fail(String::from("it holds no PEM certificate")));
    }
    let mut store = X509StoreBuilder::new().map_err(|error| fail(error.to_string()))?;
    for certificate in certificates {
        store
            .add_cert(certificate)
            .map_err(|error| fail(error.to_string()))?;
    }
    Ok(store.build())
}

fn load_client_certificate(
    builder: &mut openssl::ssl::SslConnectorBuilder,
    client: &ClientCertificate,
) -> Result<(), TlsError> {
    let fail = |what: &'static str, path: &Path, reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    builder
        .set_certificate_chain_file(&client.cert)
        .map_err(|error| fail("client certificate", &client.cert, error.to_string()))?;
    check_key_permissions(&client.key).map_err(|reason| fail("client key", &client.key, reason))?;
    builder
        .set_private_key_file(&client.key, SslFiletype::PEM)
        .map_err(|error| fail("client key", &client.key, error.to_string()))?;
    builder.check_private_key().map_err(|error| {
        fail(
            "client key",
            &client.key,
            format!("it does not belong to {}: {error}", client.cert.display()),
        )
    })
}

/// libpq's rule for a private key: no access for others (`0600` or less), or `0640` or less
/// when root owns it.
fn check_key_permissions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).map_err(|error| error.to_string())?;
    let mode = metadata.mode() & 0o777;
    let allowed = if metadata.uid() == 0 { 0o640 } else { 0o600 };
    if mode & !allowed != 0 {
        return Err(format!(
            "others may read it (mode {mode:o}): `chmod {allowed:o}` it, as libpq also demands"
        ));
    }
    Ok(())
}

/// Whether the server refused the login by its `pg_hba.conf` for the reason its message
/// ends with: "no pg_hba.conf entry for host …, no encryption" (only `hostssl` lines), or
/// "connection requires a valid client certificate" (`clientcert`). The server's words are
/// English under `lc_messages = C`; in another language the server's own message stands.
fn refused_for(error: &postgres::Error, reason: &str) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && db.message().contains(reason)
    })
}

/// `host:port` of each server the configuration names, joined.
fn servers(config: &Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let host = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `%XX` escapes decoded, as libpq reads a URL's parameters.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (rest, parameters) = split_url(
            "postgres://u:p@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fca%20dir%2Froot.crt&sslcert=/c.crt&sslkey=/c.key",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=x");
        assert_eq!(parameters.mode, Some(SslMode::VerifyFull));
        assert_eq!(
            parameters.root_cert,
            Some(PathBuf::from("/ca dir/root.crt"))
        );
        assert_eq!(parameters.cert, Some(PathBuf::from("/c.crt")));
        assert_eq!(parameters.key, Some(PathBuf::from("/c.key")));
        let (rest, parameters) = split_url("postgres://h/db?sslmode=allow").unwrap();
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(parameters.mode, Some(SslMode::Allow));
        assert!(split_url("postgres://h/db?sslmode=maybe").is_err());
        assert!(split_url("postgres://h/db?sslcrl=/x.crl").is_err());
    }

    #[test]
    fn the_url_wins_over_the_environment_and_home_gives_the_defaults() {
        let home = tempfile::tempdir().unwrap();
        let config: Config = "postgres://h1,h2:6543/db".parse().unwrap();
        let environment = PostgresEnvironment {
            home: Some(home.path().to_owned()),
            sslmode: Some(String::from("verify-ca")),
            ..PostgresEnvironment::default()
        };
        let tls = Tls::resolve(&TlsParameters::default(), &environment, &config).unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(
            tls.root_cert,
            Some(home.path().join(".postgresql/root.crt"))
        );
        assert!(!tls.root_cert_named);
        assert!(tls.client.is_none(), "no default client certificate there");
        assert_eq!(tls.servers, "h1:5432, h2:6543");
        let missing = tls.root_cert_to_check().unwrap_err();
        assert!(missing.to_string().contains("root.crt"), "{missing}");

        let (_, url) = split_url("postgres://h/db?sslmode=require").unwrap();
        let tls = Tls::resolve(&url, &environment, &config).unwrap();
        assert_eq!(tls.mode, SslMode::Require);
        // No root certificate at home: require encrypts without checking.
        assert_eq!(tls.root_cert_to_check().unwrap(), None);

        let bad = PostgresEnvironment {
            sslmode: Some(String::from("sure")),
            ..PostgresEnvironment::default()
        };
        let error = Tls::resolve(&TlsParameters::default(), &bad, &config).unwrap_err();
        assert!(error.starts_with("PGSSLMODE"), "{error}");
    }
}
