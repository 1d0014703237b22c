//! Mutual TLS between members, pinned by SPKI hash.
//!
//! Each member has a TLS key and a self-signed certificate; the manifest
//! lists, for every member, `tls_spki_sha256` = SHA-256 of the certificate's
//! SubjectPublicKeyInfo (DER). Pinning the key rather than the certificate
//! lets a member renew its certificate (e.g. before expiry) without a
//! manifest change, as long as the key stays.
//!
//! The verifiers still check the certificate's validity period and the
//! handshake signature (proof of possession of the pinned key). They do not
//! check names or chains: the pin is the identity.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// SHA-256 of a SubjectPublicKeyInfo: what the manifest pins.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpkiPin(pub [u8; 32]);

impl SpkiPin {
    /// Lower-case hex, the form written in the manifest.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Self(b))
    }
}

impl std::fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpkiPin({})", self.to_hex())
    }
}

/// Why a certificate or TLS setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate could not be parsed.
    #[error("not an X.509 certificate: {0}")]
    BadCertificate(String),
    /// PEM input without the expected block.
    #[error("no {0} found in the PEM input")]
    MissingPem(&'static str),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("generating the certificate: {0}")]
    Generate(String),
    /// A certificate or key file could not be read.
    #[error("reading {}: {detail}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        detail: String,
    },
}

/// The pin of a certificate (DER).
pub fn spki_pin(cert: &CertificateDer<'_>) -> Result<SpkiPin, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    Ok(SpkiPin(
        Sha256::digest(parsed.tbs_certificate.subject_pki.raw).into(),
    ))
}

/// A member's TLS identity: certificate and key, as PEM.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// Self-signed certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM (store with 0600).
    pub key_pem: String,
}

impl TlsIdentity {
    /// A new ECDSA P-256 key and a self-signed certificate for `member`,
    /// valid for `days` from `now` (a parameter: this crate reads no clock
    /// outside the TLS handshake).
    pub fn generate(member: &str, now: time::OffsetDateTime, days: i64) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        Self::certify(member, key, now, days)
    }

    /// A new certificate for the same key (renewal before expiry): the pin
    /// does not change, so no manifest change is needed.
    pub fn renew(
        &self,
        member: &str,
        now: time::OffsetDateTime,
        days: i64,
    ) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::from_pem(&self.key_pem)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Self::certify(member, key, now, days)
    }

    fn certify(
        member: &str,
        key: rcgen::KeyPair,
        now: time::OffsetDateTime,
        days: i64,
    ) -> Result<Self, TlsError> {
        let mut params =
            rcgen::CertificateParams::new(vec![format!("member-{member}.lienthong.invalid")])
                .map_err(|e| TlsError::Generate(e.to_string()))?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("lienthong member {member}"),
        );
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The certificate chain and key for rustls.
    pub fn parse(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .filter_map(Result::ok)
                .collect();
        if certs.is_empty() {
            return Err(TlsError::MissingPem("CERTIFICATE"));
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|_| TlsError::MissingPem("PRIVATE KEY"))?;
        Ok((certs, key))
    }

    /// The certificate chain with its signing key, checked to match.
    pub fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
        let (certs, key) = self.parse()?;
        let signing = provider().key_provider.load_private_key(key)?;
        let certified = rustls::sign::CertifiedKey::new(certs, signing);
        certified.keys_match()?;
        Ok(Arc::new(certified))
    }

    /// The pin of this identity's certificate (needs only `cert_pem`).
    pub fn pin(&self) -> Result<SpkiPin, TlsError> {
        use rustls_pki_types::pem::PemObject;
        let cert = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .find_map(Result::ok)
            .ok_or(TlsError::MissingPem("CERTIFICATE"))?;
        spki_pin(&cert)
    }
}

/// Pins of the current members: pin → member code. Clones share one set,
/// so when a new manifest version takes effect [`PinSet::replace`] changes
/// what every TLS verifier built from it accepts, without a restart.
#[derive(Debug, Clone, Default)]
pub struct PinSet(Arc<RwLock<HashMap<SpkiPin, String>>>);

impl PinSet {
    /// From (member code, pin) pairs.
    pub fn new(pins: impl IntoIterator<Item = (String, SpkiPin)>) -> Self {
        Self(Arc::new(RwLock::new(
            pins.into_iter().map(|(m, p)| (p, m)).collect(),
        )))
    }
    /// Replaces the pins, for this set and every clone of it.
    pub fn replace(&self, pins: impl IntoIterator<Item = (String, SpkiPin)>) {
        let new: HashMap<SpkiPin, String> = pins.into_iter().map(|(m, p)| (p, m)).collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = new;
    }
    /// The member a certificate belongs to, if its key is pinned.
    pub fn member_of(&self, cert: &CertificateDer<'_>) -> Option<String> {
        let pin = spki_pin(cert).ok()?;
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pin)
            .cloned()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks the validity period of a certificate at `now`.
fn check_validity(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let v = &parsed.tbs_certificate.validity;
    if now < v.not_before.timestamp() {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidYet,
        ));
    }
    if now > v.not_after.timestamp() {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired,
        ));
    }
    Ok(())
}

/// Server side: accepts a client certificate only if its key is pinned.
#[derive(Debug)]
pub struct PinnedClientVerifier {
    pins: PinSet,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.pins.member_of(end_entity).is_none() {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        check_validity(end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Client side: accepts the server only if its key is the one pinned for
/// the member being called.
#[derive(Debug)]
pub struct PinnedServerVerifier {
    expected: SpkiPin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pin = spki_pin(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if pin != self.expected {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        check_validity(end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// rustls server config for the Federation port: our identity, clients
/// must present a pinned member certificate. ALPN h2 for gRPC.
pub fn server_config(
    identity: &TlsIdentity,
    pins: PinSet,
) -> Result<rustls::ServerConfig, TlsError> {
    let fixed = rustls::sign::SingleCertAndKey::from(identity.certified_key()?);
    server_config_with(Arc::new(fixed), pins)
}

/// As [`server_config`], with the identity chosen at each handshake (a
/// [`crate::reload::ReloadingIdentity`], for one).
pub fn server_config_with(
    identity: Arc<dyn rustls::server::ResolvesServerCert>,
    pins: PinSet,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClientVerifier {
        pins,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// rustls client config to call the member whose pin is `expected`,
/// presenting our identity.
pub fn client_config(
    identity: &TlsIdentity,
    expected: SpkiPin,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let (certs, key) = identity.parse()?;
    let verifier = Arc::new(PinnedServerVerifier {
        expected,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}
