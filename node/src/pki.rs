//! Certificates for the local API: a node-local CA that signs the server
//! certificate and the client certificates of local systems. Keys are
//! ECDSA P-256 (every TLS stack and gRPC library accepts them), written as
//! PKCS#8 PEM with 0600 permissions.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Validity of the CA.
const CA_DAYS: i64 = 10 * 365;
/// Validity of server and client certificates.
const LEAF_DAYS: i64 = 2 * 365;

/// Writes a file readable by its owner only; refuses to overwrite.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    write_new(path, contents, 0o600)
}

/// Writes a public file (certificate); refuses to overwrite.
pub fn write_public(path: &Path, contents: &str) -> Result<()> {
    write_new(path, contents, 0o644)
}

/// Creates `path` with `mode` (never widening an existing file) and syncs it.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// A new CA for the local API of `member`: (cert PEM, key PEM).
pub fn new_ca(member: &str, name: &str) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Liên Thông local API CA {member} {name}"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What a leaf certificate is for.
pub enum Leaf<'a> {
    /// The API server, valid for these DNS names and IP addresses.
    Server(&'a [String]),
    /// A local client system, named in the certificate's common name.
    Client(&'a str),
}

/// A certificate signed by the CA: (cert PEM, key PEM).
pub fn issue(ca_cert_pem: &str, ca_key_pem: &str, leaf: Leaf<'_>) -> Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).context("reading the CA key")?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).context("reading the CA certificate")?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    match leaf {
        Leaf::Server(names) => {
            dn.push(DnType::CommonName, "lienthong local API");
            for n in names {
                params.subject_alt_names.push(match n.parse::<IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        n.clone()
                            .try_into()
                            .with_context(|| format!("{n:?} is not a DNS name"))?,
                    ),
                });
            }
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        Leaf::Client(name) => {
            dn.push(DnType::CommonName, name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_DAYS);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A client name: letters, digits, '-', '_' and '.', 1–64 characters.
pub fn check_client_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        bail!(
            "client name {name:?}: use 1–64 letters, digits, '-', '_' or '.' (e.g. \"hotline-1800\")"
        );
    }
    Ok(())
}

/// One revoked client certificate, as kept in `clients/revoked.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Revoked {
    /// The client name the certificate was issued to.
    pub name: String,
    /// Its serial number, hex.
    pub serial: String,
    /// When it was revoked, Unix seconds.
    pub revoked_unix: i64,
}

/// The serial number of a PEM certificate, as bytes.
pub fn cert_serial(cert_pem: &str) -> Result<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    Ok(cert.tbs_certificate.raw_serial().to_vec())
}

/// A CRL signed by the CA listing `revoked` (PEM). `number` must grow with
/// every new list.
pub fn crl(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    revoked: &[Revoked],
    number: u64,
) -> Result<String> {
    let ca_key = KeyPair::from_pem(ca_key_pem).context("reading the CA key")?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).context("reading the CA certificate")?;
    let now = OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        // Revocation never lapses: the list is replaced, not renewed.
        next_update: now + Duration::days(CA_DAYS),
        crl_number: rcgen::SerialNumber::from(number.to_be_bytes().to_vec()),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| {
                Ok(rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(
                        hex::decode(&r.serial).context("serial in revoked.json")?,
                    ),
                    revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_unix)
                        .unwrap_or(now),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<_>>()?,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&issuer)?.pem()?)
}
