//! TLS of the local API: client certificates must chain to the node's
//! local CA and must not be on its revocation list, which is re-read while
//! the node runs (`lienthong client revoke` replaces it); the API's own
//! certificate is re-read too when `lienthong tls renew` replaces it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the CRL file (absent: nothing revoked).
fn read_crls(path: Option<&Path>) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    CertificateRevocationListDer::pem_file_iter(path)
        .with_context(|| format!("reading api.client_crl {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("api.client_crl {} is not a PEM CRL", path.display()))
}

fn build(roots: &Arc<RootCertStore>, crl: Option<&Path>) -> Result<Arc<dyn ClientCertVerifier>> {
    let v: Arc<dyn ClientCertVerifier> =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .with_crls(read_crls(crl)?)
            .build()
            .context("client certificate verifier")?;
    Ok(v)
}

/// A WebPKI client verifier rebuilt when the CRL file changes (checked at
/// most every two seconds, on handshakes). A CRL that fails to load keeps
/// the previous one and is logged.
#[derive(Debug)]
pub struct ReloadingVerifier {
    roots: Arc<RootCertStore>,
    crl: Option<PathBuf>,
    hints: Vec<DistinguishedName>,
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
    seen: Mutex<(Instant, Option<SystemTime>)>,
}

impl ReloadingVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        if let Some(path) = &self.crl {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.0.elapsed().as_secs() >= 2 {
                let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                seen.0 = Instant::now();
                if stamp != seen.1 {
                    match build(&self.roots, Some(path)) {
                        Ok(v) => {
                            *self.inner.write().unwrap_or_else(|e| e.into_inner()) = v;
                            seen.1 = stamp;
                            tracing::info!(crl = %path.display(), "reloaded the client revocation list");
                        }
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "kept the previous client revocation list")
                        }
                    }
                }
            }
        }
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientCertVerifier for ReloadingVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// The API's rustls configuration: server identity from `cert`/`key`,
/// clients verified against `client_ca` and `client_crl`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    client_crl: Option<&Path>,
) -> Result<rustls::ServerConfig> {
    let resolver = Arc::new(
        lienthong_federation::reload::ReloadingIdentity::open(
            "api.tls_cert",
            cert.to_path_buf(),
            key.to_path_buf(),
        )
        .with_context(|| {
            format!(
                "api.tls_cert {} with api.tls_key {}",
                cert.display(),
                key.display()
            )
        })?,
    );
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(client_ca)
        .with_context(|| format!("reading api.client_ca {}", client_ca.display()))?
    {
        roots
            .add(ca.with_context(|| format!("api.client_ca {}", client_ca.display()))?)
            .context("api.client_ca")?;
    }
    let roots = Arc::new(roots);
    let inner = build(&roots, client_crl)?;
    let hints = inner.root_hint_subjects().to_vec();
    let stamp = client_crl.and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let verifier = Arc::new(ReloadingVerifier {
        roots,
        crl: client_crl.map(Path::to_path_buf),
        hints,
        inner: RwLock::new(inner),
        seen: Mutex::new((Instant::now(), stamp)),
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}
