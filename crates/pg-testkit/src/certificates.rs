//! Throw-away certificates for servers with TLS: a certificate authority of the test's own and
//! the server certificates it signs, with P-256 keys (quick to make), valid for a day.

use std::net::IpAddr;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509Builder, X509Name};

use crate::error::{Error, Result};
use crate::random::random_hex;

/// A certificate authority made for a test: its certificate is what a client's `sslrootcert`
/// names; it signs the certificates of the servers the test starts.
pub struct Authority {
    certificate: X509,
    key: PKey<Private>,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new authority whose certificate names `common_name`.
    pub fn new(common_name: &str) -> Result<Authority> {
        let key = new_key()?;
        let name = name(common_name)?;
        let mut builder = builder(&key, &name)?;
        certificate_error(builder.set_issuer_name(&name))?;
        let usage = KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build();
        let constraints = BasicConstraints::new().critical().ca().build();
        for extension in [constraints, usage] {
            certificate_error(builder.append_extension(certificate_error(extension)?))?;
        }
        certificate_error(builder.sign(&key, MessageDigest::sha256()))?;
        Ok(Authority {
            certificate: builder.build(),
            key,
        })
    }

    /// The authority's certificate, PEM: the file a client trusts.
    pub fn certificate_pem(&self) -> Result<Vec<u8>> {
        certificate_error(self.certificate.to_pem())
    }

    /// A server certificate made out to `names` (host names, or IP addresses), signed by this
    /// authority.
    pub fn issue_server(&self, names: &[&str]) -> Result<Issued> {
        self.issue(names.first().copied().unwrap_or("localhost"), names)
    }

    /// A client certificate for the role `user` (its common name, which `clientcert=verify-full`
    /// and `cert` authentication match against the role), signed by this authority.
    pub fn issue_client(&self, user: &str) -> Result<Issued> {
        self.issue(user, &[])
    }

    /// A certificate named `common_name`, with `names` as its alternative names, fit for a
    /// server and a client alike.
    fn issue(&self, common_name: &str, names: &[&str]) -> Result<Issued> {
        let key = new_key()?;
        let mut builder = builder(&key, &name(common_name)?)?;
        certificate_error(builder.set_issuer_name(self.certificate.subject_name()))?;
        let usage = KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build();
        let extended = ExtendedKeyUsage::new().server_auth().client_auth().build();
        let constraints = BasicConstraints::new().build();
        for extension in [constraints, usage, extended] {
            certificate_error(builder.append_extension(certificate_error(extension)?))?;
        }
        if !names.is_empty() {
            let mut alternatives = SubjectAlternativeName::new();
            for name in names {
                match name.parse::<IpAddr>() {
                    Ok(_) => alternatives.ip(name),
                    Err(_) => alternatives.dns(name),
                };
            }
            let context = builder.x509v3_context(Some(&self.certificate), None);
            let alternatives = certificate_error(alternatives.build(&context))?;
            certificate_error(builder.append_extension(alternatives))?;
        }
        certificate_error(builder.sign(&self.key, MessageDigest::sha256()))?;
        Ok(Issued {
            certificate_pem: certificate_error(builder.build().to_pem())?,
            key_pem: certificate_error(key.private_key_to_pem_pkcs8())?,
        })
    }
}

fn new_key() -> Result<PKey<Private>> {
    let group = certificate_error(EcGroup::from_curve_name(Nid::X9_62_PRIME256V1))?;
    let key = certificate_error(EcKey::generate(&group))?;
    certificate_error(PKey::from_ec_key(key))
}

fn name(common_name: &str) -> Result<X509Name> {
    let mut name = certificate_error(X509Name::builder())?;
    certificate_error(name.append_entry_by_nid(Nid::COMMONNAME, common_name))?;
    Ok(name.build())
}

/// A version-3 certificate for `key` named `subject`, with a random serial number, valid from
/// a day ago (clocks differ a little) to a day from now.
fn builder(key: &PKey<Private>, subject: &X509Name) -> Result<X509Builder> {
    let mut builder = certificate_error(X509Builder::new())?;
    certificate_error(builder.set_version(2))?;
    let serial = certificate_error(BigNum::from_hex_str(&random_hex(16)?))?;
    let serial: Asn1Integer = certificate_error(serial.to_asn1_integer())?;
    certificate_error(builder.set_serial_number(&serial))?;
    certificate_error(builder.set_subject_name(subject))?;
    certificate_error(builder.set_pubkey(key))?;
    let yesterday = certificate_error(Asn1Time::from_unix(now_unix() - 86_400))?;
    let tomorrow = certificate_error(Asn1Time::days_from_now(1))?;
    certificate_error(builder.set_not_before(&yesterday))?;
    certificate_error(builder.set_not_after(&tomorrow))?;
    Ok(builder)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn certificate_error<T>(result: Result<T, ErrorStack>) -> Result<T> {
    result.map_err(|source| Error::Certificate { source })
}
