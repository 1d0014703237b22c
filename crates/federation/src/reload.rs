//! A TLS certificate and key read from files and re-read when they change,
//! so a renewed certificate (`lienthong tls renew`) is served and presented
//! without restarting the node.
//!
//! Both ports use it: the local API's certificate and the member's peer
//! certificate. The files are checked at most every [`RECHECK`], when a
//! handshake needs the identity; a file caught half-written (or a key that
//! does not match its certificate) keeps the previous identity in use,
//! with a warning, and is tried again at the next check. Connections
//! already open keep the certificate they started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::sign::CertifiedKey;

use crate::tls::{TlsError, TlsIdentity};

/// How often the files are looked at, at most.
pub const RECHECK: Duration = Duration::from_secs(2);

type Stamps = Option<(SystemTime, SystemTime)>;

/// The current identity of one port, from its certificate and key files.
#[derive(Debug)]
pub struct ReloadingIdentity {
    /// Names the files in logs: `api.tls_cert`, `federation.tls_cert`.
    what: &'static str,
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(TlsIdentity, Arc<CertifiedKey>)>,
    /// (last check, modification times of the files then)
    seen: Mutex<(Instant, Stamps)>,
}

fn stamps(cert: &Path, key: &Path) -> Stamps {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

fn load(cert: &Path, key: &Path) -> Result<(TlsIdentity, Arc<CertifiedKey>), TlsError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| TlsError::File {
            path: p.to_owned(),
            detail: e.to_string(),
        })
    };
    let identity = TlsIdentity {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    };
    let certified = identity.certified_key()?;
    Ok((identity, certified))
}

impl ReloadingIdentity {
    /// Reads `cert` and `key` now; `what` names them in logs.
    pub fn open(what: &'static str, cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let stamp = stamps(&cert, &key);
        let current = load(&cert, &key)?;
        Ok(Self {
            what,
            cert,
            key,
            current: RwLock::new(current),
            seen: Mutex::new((Instant::now(), stamp)),
        })
    }

    /// The identity to present now (PEM), re-read first if due.
    pub fn identity(&self) -> TlsIdentity {
        self.refresh();
        self.read().0.clone()
    }

    /// The certificate and signing key to present now, re-read first if due.
    pub fn certified(&self) -> Arc<CertifiedKey> {
        self.refresh();
        self.read().1.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (TlsIdentity, Arc<CertifiedKey>)> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh(&self) {
        // One caller checks; the others use what is current meanwhile.
        let Ok(mut seen) = self.seen.try_lock() else {
            return;
        };
        if seen.0.elapsed() < RECHECK {
            return;
        }
        seen.0 = Instant::now();
        let now = stamps(&self.cert, &self.key);
        if now == seen.1 {
            return;
        }
        match load(&self.cert, &self.key) {
            Ok(fresh) => {
                let key_changed = {
                    let old = self.read();
                    old.0.pin().ok() != fresh.0.pin().ok()
                };
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                seen.1 = now;
                if key_changed {
                    tracing::warn!(what = self.what, cert = %self.cert.display(), "re-read the TLS certificate: its KEY changed, so its pin changed too; members accept it only under a manifest version that pins the new key");
                } else {
                    tracing::info!(what = self.what, cert = %self.cert.display(), "re-read the TLS certificate (same key)");
                }
            }
            Err(e) => {
                tracing::warn!(what = self.what, cert = %self.cert.display(), error = %e, "kept the previous TLS certificate: the files do not load (yet)");
            }
        }
    }
}

impl rustls::server::ResolvesServerCert for ReloadingIdentity {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, id: &TlsIdentity) {
        std::fs::write(dir.join("cert.pem"), &id.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &id.key_pem).unwrap();
    }

    #[test]
    fn a_renewed_certificate_is_picked_up_and_a_broken_one_is_not() {
        let dir = std::env::temp_dir().join(format!("lt-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let first = TlsIdentity::generate("20", now, 30).unwrap();
        write(&dir, &first);
        let r = ReloadingIdentity::open("test", dir.join("cert.pem"), dir.join("key.pem")).unwrap();
        assert_eq!(r.identity().cert_pem, first.cert_pem);

        // Renewed (same key, later expiry): served after the next check.
        let renewed = first.renew("20", now, 90).unwrap();
        assert_ne!(renewed.cert_pem, first.cert_pem);
        write(&dir, &renewed);
        r.seen.lock().unwrap().0 = Instant::now() - RECHECK;
        // Modification times may not move on coarse clocks: force a look.
        r.seen.lock().unwrap().1 = None;
        assert_eq!(r.identity().cert_pem, renewed.cert_pem);

        // A half-written certificate keeps the renewed one in use.
        std::fs::write(dir.join("cert.pem"), "-----BEGIN CERTIFICATE-----\nAAAA").unwrap();
        r.seen.lock().unwrap().0 = Instant::now() - RECHECK;
        r.seen.lock().unwrap().1 = None;
        assert_eq!(r.identity().cert_pem, renewed.cert_pem);

        // A certificate whose key is not the key file's is refused too.
        let other = TlsIdentity::generate("20", now, 30).unwrap();
        std::fs::write(dir.join("cert.pem"), &other.cert_pem).unwrap();
        r.seen.lock().unwrap().0 = Instant::now() - RECHECK;
        r.seen.lock().unwrap().1 = None;
        assert_eq!(r.identity().cert_pem, renewed.cert_pem);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
