//! `lienthong doctor`: what an operator runs when something is wrong. One
//! line per check (OK, WARN, FAIL, or SKIP for what it could not check),
//! each problem with its fix. Reads files only: it never opens the store
//! (opening it writes to it) and changes nothing; to see that the store
//! directory is writable it creates and removes one probe file.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::{ApiSecurity, Config};

/// A certificate expiring within this many days is a warning.
const WARN_DAYS: i64 = 30;
/// 2025-01-01T00:00:00Z: a clock before this is certainly wrong.
const CLOCK_FLOOR_UNIX: i64 = 1_735_689_600;

/// What `doctor` and `tls renew` need to know about a certificate.
pub struct CertInfo {
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the SubjectPublicKeyInfo (the manifest's pin form).
    pub spki_sha256: [u8; 32],
    /// The SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// Subject and issuer, DER (equal for a self-signed certificate).
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// Subject alternative names: DNS names and IP addresses, as text.
    pub dns_names: Vec<String>,
    pub ip_addrs: Vec<std::net::IpAddr>,
    /// Extended key usages present.
    pub server_auth: bool,
    pub client_auth: bool,
}

/// Parses the first certificate of a PEM text.
pub fn cert_info(pem: &str) -> Result<CertInfo> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let mut info = CertInfo {
        not_before: tbs.validity.not_before.timestamp(),
        not_after: tbs.validity.not_after.timestamp(),
        spki_sha256: Sha256::digest(tbs.subject_pki.raw).into(),
        spki_der: tbs.subject_pki.raw.to_vec(),
        subject_der: tbs.subject.as_raw().to_vec(),
        issuer_der: tbs.issuer.as_raw().to_vec(),
        common_name: tbs
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        dns_names: Vec::new(),
        ip_addrs: Vec::new(),
        server_auth: false,
        client_auth: false,
    };
    for ext in tbs.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => info.dns_names.push((*d).to_owned()),
                        GeneralName::IPAddress(b) => {
                            if let Ok(a) = <[u8; 4]>::try_from(*b) {
                                info.ip_addrs.push(a.into());
                            } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                                info.ip_addrs.push(a.into());
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                info.server_auth |= eku.server_auth;
                info.client_auth |= eku.client_auth;
            }
            _ => {}
        }
    }
    Ok(info)
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC`.
pub fn fmt_time(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()),
        Err(_) => format!("@{unix}"),
    }
}

/// Now, Unix seconds.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Whether a `lienthong run` holds the store.
pub enum NodeState {
    /// A process holds the store's lock.
    Running { pid: u32 },
    /// Nobody holds it.
    Stopped,
    /// Could not tell, and why.
    Unknown(String),
}

/// Whether a process holds the lock sled takes on `STORE/db` while the
/// node runs, read from `/proc/locks` (Linux) without touching the store.
pub fn node_state(store_dir: &Path) -> NodeState {
    let db = store_dir.join("db");
    let meta = match std::fs::metadata(&db) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return NodeState::Stopped,
        Err(e) => return NodeState::Unknown(format!("cannot read {}: {e}", db.display())),
    };
    let locks = match std::fs::read_to_string("/proc/locks") {
        Ok(t) => t,
        Err(e) => return NodeState::Unknown(format!("cannot read /proc/locks: {e}")),
    };
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let ino = meta.ino();
    // "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"; blocked waiters
    // have "->" before the type.
    let mut inode_only = None;
    for line in locks.lines() {
        let f: Vec<&str> = line.split_whitespace().filter(|w| *w != "->").collect();
        let (Some(pid), Some(id)) = (f.get(4), f.get(5)) else {
            continue;
        };
        let mut parts = id.split(':');
        let (Some(ma), Some(mi), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(ma), Ok(mi), Ok(i), Ok(pid)) = (
            u64::from_str_radix(ma, 16),
            u64::from_str_radix(mi, 16),
            i.parse::<u64>(),
            pid.parse::<u32>(),
        ) else {
            continue;
        };
        if i != ino {
            continue;
        }
        if ma == major && mi == minor {
            return NodeState::Running { pid };
        }
        // Overlay file systems (containers) may report another device
        // number: accept the inode if the holder is a lienthong process.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "lienthong" {
            inode_only = Some(pid);
        }
    }
    match inode_only {
        Some(pid) => NodeState::Running { pid },
        None => NodeState::Stopped,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Default)]
struct Report {
    counts: [usize; 4],
}

impl Report {
    fn line(&mut self, status: Status, what: &str, detail: impl AsRef<str>, fix: Option<String>) {
        let tag = match status {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        self.counts[status as usize] += 1;
        match fix {
            Some(fix) => println!("{tag}  {what}: {} — fix: {fix}", detail.as_ref()),
            None => println!("{tag}  {what}: {}", detail.as_ref()),
        }
    }
    fn ok(&mut self, what: &str, detail: impl AsRef<str>) {
        self.line(Status::Ok, what, detail, None);
    }
    fn warn(&mut self, what: &str, detail: impl AsRef<str>, fix: impl Into<String>) {
        self.line(Status::Warn, what, detail, Some(fix.into()));
    }
    fn fail(&mut self, what: &str, detail: impl AsRef<str>, fix: impl Into<String>) {
        self.line(Status::Fail, what, detail, Some(fix.into()));
    }
    fn skip(&mut self, what: &str, detail: impl AsRef<str>) {
        self.line(Status::Skip, what, detail, None);
    }
    fn fails(&self) -> usize {
        self.counts[Status::Fail as usize]
    }
}

/// Runs every check; `Err` (exit status 1) if any failed.
pub fn doctor(config_path: &Path) -> Result<()> {
    let mut r = Report::default();
    check_clock(&mut r);
    let cfg = match crate::config::load(config_path, false) {
        Ok(cfg) => {
            r.ok(
                "config",
                format!("{} parses and is valid", config_path.display()),
            );
            cfg
        }
        Err(e) => {
            for p in &e.problems {
                r.fail(
                    "config",
                    format!("{}: {p}", config_path.display()),
                    "edit the file as the problem says, then run doctor again",
                );
            }
            r.skip(
                "everything else",
                "not checked: the configuration must be valid first",
            );
            return finish(&r);
        }
    };
    let cfg_arg = cfg.path.display().to_string();
    let base = cfg.path.parent().map(Path::to_path_buf).unwrap_or_default();

    // Keys.
    let signing = check_signing_key(&mut r, &cfg);
    let peer_paths = peer_files(&cfg);
    match &cfg.security {
        ApiSecurity::Tls {
            cert,
            key,
            client_ca,
            client_crl,
        } => {
            let api = check_cert(&mut r, "api.tls_cert", cert, Some(("api", &cfg_arg)));
            check_tls_key(&mut r, "api.tls_key", key, api.as_ref(), "api.tls_cert");
            let ca = check_cert(&mut r, "api.client_ca", client_ca, None);
            let ca_key = client_ca.with_file_name("ca-key.pem");
            if ca_key.exists() {
                check_tls_key(&mut r, "CA key", &ca_key, ca.as_ref(), "api.client_ca");
            } else {
                r.warn(
                    "CA key",
                    format!("{} is not there", ca_key.display()),
                    "`client add`, `client revoke` and `tls renew` need it next to api.client_ca: restore it from the backup (or keep it offline and bring it back for those commands)",
                );
            }
            if let (Some(api), Some(ca)) = (&api, &ca)
                && api.issuer_der != ca.subject_der
            {
                r.fail(
                    "api.tls_cert",
                    format!(
                        "{} was not issued by the CA in {}: the CLI and local systems will not trust it",
                        cert.display(),
                        client_ca.display()
                    ),
                    "point api.tls_cert at the certificate `lienthong init` issued (or restore it from the backup)",
                );
            }
            match client_crl {
                Some(crl) => check_crl(&mut r, crl),
                None => r.warn(
                    "api.client_crl",
                    "not set: `lienthong client revoke` cannot revoke certificates",
                    "add `client_crl = \"tls/clients-crl.pem\"` under [api]",
                ),
            }
            check_clients(&mut r, &cfg, &base, ca.as_ref(), &cfg_arg);
        }
        ApiSecurity::PlaintextDev => r.warn(
            "api",
            "plaintext_dev = true: no TLS and no client authentication on the local API",
            "for production, create the node with `lienthong init` without --plaintext-dev",
        ),
    }

    // Peer TLS identity and the manifest.
    let peer = match &peer_paths {
        Some((cert, key)) => {
            let c = check_cert(
                &mut r,
                "peer TLS certificate",
                cert,
                Some(("peer", &cfg_arg)),
            );
            check_tls_key(
                &mut r,
                "peer TLS key",
                key,
                c.as_ref(),
                "the peer TLS certificate",
            );
            c
        }
        None => {
            r.skip(
                "peer TLS certificate",
                "no [federation] section and no tls/peer-cert.pem next to the config",
            );
            None
        }
    };
    check_federation(&mut r, &cfg, signing.as_ref(), peer.as_ref());

    // Store and process.
    check_store(&mut r, &cfg);

    // Safety net: whatever `run` itself checks about files must show up.
    if r.fails() == 0
        && let Err(e) = crate::config::load(&cfg.path, true)
    {
        for p in &e.problems {
            r.fail("files", p, "as the problem says");
        }
    }
    finish(&r)
}

fn finish(r: &Report) -> Result<()> {
    let [ok, warn, fail, skip] = r.counts;
    println!("{ok} OK, {warn} WARN, {fail} FAIL, {skip} not checked");
    if fail > 0 {
        anyhow::bail!("{fail} check(s) failed: fix them as the FAIL lines say");
    }
    Ok(())
}

fn check_clock(r: &mut Report) {
    let now = now_unix();
    if now < CLOCK_FLOOR_UNIX {
        r.fail(
            "clock",
            format!("system time is {}, before 2025-01-01", fmt_time(now)),
            "set the clock and keep it synchronised (timedatectl set-ntp true): checkpoints, certificates and deadlines depend on it",
        );
    } else {
        r.ok(
            "clock",
            format!(
                "system time {} is after 2025-01-01 (compared with each peer's clock below; keep NTP on)",
                fmt_time(now)
            ),
        );
    }
}

/// Offsets beyond this FAIL: certificates, cosignature timestamps and
/// deadlines would disagree between members.
const CLOCK_SKEW_FAIL_MS: i64 = 60_000;

fn check_peer_clock(r: &mut Report, code: &str, name: &str, offset: Option<i64>) {
    let what = format!("clock vs {code}");
    let fix = format!(
        "keep NTP on here and at {name} (timedatectl set-ntp true; timedatectl timesync-status shows the server and offset)"
    );
    let differs = |o: i64| {
        format!(
            "{name}'s clock differs from this one by {:+.1} s",
            o as f64 / 1000.0
        )
    };
    match offset {
        None => r.skip(
            &what,
            format!("{name}'s node does not report its time (an older version)"),
        ),
        Some(o) if o.abs() > CLOCK_SKEW_FAIL_MS => r.fail(&what, differs(o), fix),
        Some(o) if o.abs() > crate::peer::CLOCK_SKEW_WARN_MS => r.warn(&what, differs(o), fix),
        Some(o) => r.ok(
            &what,
            format!(
                "{name}'s clock differs from this one by {o:+} ms (tolerated: {} s)",
                crate::peer::CLOCK_SKEW_WARN_MS / 1000
            ),
        ),
    }
}

/// The peer TLS files: `[federation]`'s, or `tls/peer-*.pem` made by init.
pub fn peer_files(cfg: &Config) -> Option<(PathBuf, PathBuf)> {
    if let Some(f) = &cfg.peering {
        return Some((f.tls_cert.clone(), f.tls_key.clone()));
    }
    let dir = cfg.path.parent().unwrap_or(Path::new("."));
    let cert = dir.join("tls/peer-cert.pem");
    cert.exists().then(|| (cert, dir.join("tls/peer-key.pem")))
}

/// Mode and readability of a private key file; its text if readable.
fn check_key_file(r: &mut Report, what: &str, path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            r.fail(
                what,
                format!("cannot read {}: {e}", path.display()),
                "restore it from the backup (a new key changes what the manifest or the clients trust)",
            );
            return None;
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            r.fail(
                what,
                format!("cannot read {}: {e}", path.display()),
                format!(
                    "run doctor as the node's user (e.g. `sudo -u lienthong`), or fix the owner: chown lienthong {}",
                    path.display()
                ),
            );
            return None;
        }
    };
    if mode & 0o077 != 0 {
        r.fail(
            what,
            format!(
                "{} has permissions {mode:04o}; a private key must be 0600",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        );
        return None;
    }
    Some(text)
}

fn check_signing_key(r: &mut Report, cfg: &Config) -> Option<ed25519_dalek::SigningKey> {
    let what = "keys.signing_key";
    let text = check_key_file(r, what, &cfg.signing_key)?;
    match lienthong_core::keys::signing_key_from_pem(&text) {
        Ok(k) => {
            r.ok(
                what,
                format!(
                    "{}: 0600, an Ed25519 key ({})",
                    cfg.signing_key.display(),
                    lienthong_log::vkey_string(&cfg.origin(), &k.verifying_key())
                ),
            );
            Some(k)
        }
        Err(e) => {
            r.fail(
                what,
                format!(
                    "{} is not an Ed25519 PKCS#8 key: {e}",
                    cfg.signing_key.display()
                ),
                "restore the province's signing key from the backup",
            );
            None
        }
    }
}

/// A TLS private key: 0600, parses, and matches `cert` if it parsed.
fn check_tls_key(
    r: &mut Report,
    what: &str,
    path: &Path,
    cert: Option<&CertInfo>,
    cert_name: &str,
) {
    use rcgen::PublicKeyData as _;
    let Some(text) = check_key_file(r, what, path) else {
        return;
    };
    let key = match rcgen::KeyPair::from_pem(&text) {
        Ok(k) => k,
        Err(e) => {
            r.fail(
                what,
                format!("{} is not a PKCS#8 private key: {e}", path.display()),
                "restore it from the backup",
            );
            return;
        }
    };
    match cert {
        Some(c) if key.subject_public_key_info() != c.spki_der => r.fail(
            what,
            format!("{} is not the key of {cert_name}", path.display()),
            "restore the matching key and certificate from the backup",
        ),
        Some(_) => r.ok(
            what,
            format!("{}: 0600, parses, matches {cert_name}", path.display()),
        ),
        None => r.ok(
            what,
            format!(
                "{}: 0600, parses (not compared: {cert_name} did not parse)",
                path.display()
            ),
        ),
    }
}

/// A certificate: readable, parses, valid now and for 30 more days.
/// `renew` = (what `tls renew --what` takes, config) for the fix.
fn check_cert(
    r: &mut Report,
    what: &str,
    path: &Path,
    renew: Option<(&str, &str)>,
) -> Option<CertInfo> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            r.fail(
                what,
                format!("cannot read {}: {e}", path.display()),
                "restore it from the backup",
            );
            return None;
        }
    };
    let info = match cert_info(&text) {
        Ok(i) => i,
        Err(e) => {
            r.fail(
                what,
                format!("{}: {e:#}", path.display()),
                "restore it from the backup",
            );
            return None;
        }
    };
    let fix = match renew {
        Some((w, cfg)) => format!("lienthong tls renew --config {cfg} --what {w} (keeps the key), then restart the node"),
        None => "the CA cannot be renewed by lienthong yet: plan a new CA (and new client certificates) with the maintainers".to_owned(),
    };
    let now = now_unix();
    let left = (info.not_after - now).div_euclid(86_400);
    if now < info.not_before {
        r.fail(
            what,
            format!(
                "{} is not valid before {}: the clock is behind or the certificate is wrong",
                path.display(),
                fmt_time(info.not_before)
            ),
            "check the clock (see the clock line), else restore the certificate from the backup",
        );
    } else if now > info.not_after {
        r.fail(
            what,
            format!("{} EXPIRED on {}", path.display(), fmt_time(info.not_after)),
            fix,
        );
    } else if left < WARN_DAYS {
        r.warn(
            what,
            format!(
                "{} expires on {} ({left} days left)",
                path.display(),
                fmt_time(info.not_after)
            ),
            fix,
        );
    } else {
        r.ok(
            what,
            format!(
                "{} expires on {} ({left} days left)",
                path.display(),
                fmt_time(info.not_after)
            ),
        );
    }
    Some(info)
}

fn check_crl(r: &mut Report, path: &Path) {
    let what = "api.client_crl";
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            r.fail(
                what,
                format!("cannot read {}: {e}", path.display()),
                "restore it from the backup; the node refuses to start without it",
            );
            return;
        }
    };
    let parsed = x509_parser::pem::parse_x509_pem(&text)
        .map_err(|e| e.to_string())
        .and_then(|(_, pem)| {
            x509_parser::parse_x509_crl(&pem.contents)
                .map(|(_, crl)| crl.iter_revoked_certificates().count())
                .map_err(|e| e.to_string())
        });
    match parsed {
        Ok(n) => r.ok(
            what,
            format!("{}: a CRL listing {n} revoked certificate(s)", path.display()),
        ),
        Err(e) => r.fail(
            what,
            format!("{} is not a PEM CRL: {e}", path.display()),
            "restore it from the backup, or revoke again with `lienthong client revoke` to rewrite it",
        ),
    }
}

/// Names listed in `clients/revoked.json`.
pub fn revoked_names(base: &Path) -> Vec<String> {
    std::fs::read_to_string(base.join("clients/revoked.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<crate::pki::Revoked>>(&t).ok())
        .map(|v| v.into_iter().map(|r| r.name).collect())
        .unwrap_or_default()
}

/// Client certificates in `clients/` (not revoked) as (name, cert, key).
pub fn client_files(base: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let dir = base.join("clients");
    let revoked = revoked_names(base);
    let mut out: Vec<(String, PathBuf, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let name = file.strip_suffix("-cert.pem")?.to_owned();
            (!revoked.contains(&name)).then(|| {
                let key = dir.join(format!("{name}-key.pem"));
                (name, e.path(), key)
            })
        })
        .collect();
    out.sort();
    out
}

fn check_clients(r: &mut Report, cfg: &Config, base: &Path, ca: Option<&CertInfo>, cfg_arg: &str) {
    let mut cli_seen = false;
    for (name, cert, key) in client_files(base) {
        let is_cli = cfg.cli.client_cert.as_deref() == Some(cert.as_path());
        cli_seen |= is_cli;
        let what = if is_cli {
            format!("client {name} (cli.client_cert)")
        } else {
            format!("client {name}")
        };
        let info = check_cert(r, &what, &cert, Some(("clients", cfg_arg)));
        if let (Some(i), Some(ca)) = (&info, ca)
            && i.issuer_der != ca.subject_der
        {
            r.fail(
                &what,
                format!(
                    "{} was not issued by this node's CA: the API refuses it",
                    cert.display()
                ),
                format!("issue a new one: lienthong client add NAME --config {cfg_arg}"),
            );
        }
        if key.exists() {
            check_tls_key(
                r,
                &format!("{what} key"),
                &key,
                info.as_ref(),
                "its certificate",
            );
        } else if is_cli {
            r.fail(
                &what,
                format!("cli.client_key {} is missing", key.display()),
                "restore it from the backup, or issue a new client with `lienthong client add` and point [cli] at it",
            );
        }
    }
    if let Some(cert) = &cfg.cli.client_cert
        && !cli_seen
    {
        let info = check_cert(r, "cli.client_cert", cert, Some(("clients", cfg_arg)));
        if let Some(key) = &cfg.cli.client_key {
            check_tls_key(r, "cli.client_key", key, info.as_ref(), "cli.client_cert");
        }
    }
}

fn check_federation(
    r: &mut Report,
    cfg: &Config,
    signing: Option<&ed25519_dalek::SigningKey>,
    peer: Option<&CertInfo>,
) {
    let Some(f) = &cfg.peering else {
        r.skip(
            "federation",
            "no [federation] section: signing key and TLS pin not checked against a manifest",
        );
        return;
    };
    let chain = match crate::manifest_file::ManifestFile::read(&f.manifest).and_then(|m| m.verify())
    {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "federation.manifest",
                format!("{}: {e:#}", f.manifest.display()),
                "install the signed manifest the members agreed on (`lienthong federation show --file …` must say \"in force\")",
            );
            return;
        }
    };
    let current = chain.current();
    let m = current.manifest();
    if m.federation != cfg.federation {
        r.fail(
            "federation.manifest",
            format!(
                "{} is for federation {:?} but node.federation is {:?}",
                f.manifest.display(),
                m.federation,
                cfg.federation
            ),
            "install this federation's manifest",
        );
        return;
    }
    let Some(me) = m.members.iter().find(|x| x.code == cfg.member) else {
        r.fail(
            "federation.manifest",
            format!(
                "member {} is not in version {} in force",
                cfg.member,
                current.version()
            ),
            "ask the members to add it (`lienthong federation member`, propose, sign, publish)",
        );
        return;
    };
    r.ok(
        "federation.manifest",
        format!(
            "{}: version {} in force, lists {}",
            f.manifest.display(),
            current.version(),
            cfg.member
        ),
    );
    match signing {
        None => r.skip(
            "signing key in manifest",
            "not compared: keys.signing_key did not load (see above)",
        ),
        Some(k) if current.member_key(&cfg.member) == Some(&k.verifying_key()) => r.ok(
            "signing key in manifest",
            format!(
                "keys.signing_key is {}'s key in version {}",
                cfg.member,
                current.version()
            ),
        ),
        Some(k) if chain.keys_of(&cfg.member).contains(&k.verifying_key()) => r.fail(
            "signing key in manifest",
            format!(
                "keys.signing_key is a retired key of {}: version {} lists another",
                cfg.member,
                current.version()
            ),
            "point keys.signing_key at the key the manifest in force lists (the one from `lienthong key new`), then restart",
        ),
        Some(_) => r.fail(
            "signing key in manifest",
            format!(
                "keys.signing_key is not {}'s key in version {}",
                cfg.member,
                current.version()
            ),
            "use the key the manifest lists (restore it from the backup), or rotate through a new manifest version",
        ),
    }
    match peer {
        None => r.skip(
            "peer TLS pin",
            "not compared: the peer TLS certificate did not load (see above)",
        ),
        Some(p) if hex::encode(p.spki_sha256) == me.tls_spki_sha256 => r.ok(
            "peer TLS pin",
            format!(
                "the peer certificate's key is the one pinned for {} ({})",
                cfg.member, me.tls_spki_sha256
            ),
        ),
        Some(p) => r.fail(
            "peer TLS pin",
            format!(
                "the manifest pins {} for {} but the peer certificate's key is {}: peers refuse this node",
                me.tls_spki_sha256,
                cfg.member,
                hex::encode(p.spki_sha256)
            ),
            "restore the peer key and certificate from the backup (`tls renew` keeps the key), or pin the new key in a new manifest version",
        ),
    }
    check_peers(r, cfg, f, &chain);
}

fn check_store(r: &mut Report, cfg: &Config) {
    let dir = &cfg.store_dir;
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.warn(
            "store.dir",
            format!("{} does not exist: the node starts an EMPTY store there", dir.display()),
            "if this node has recorded anything, store.dir is wrong or the store is lost: fix the path or restore the backup",
        ),
        Err(e) => r.fail(
            "store.dir",
            format!("cannot read {}: {e}", dir.display()),
            "run doctor as the node's user, and give that user the directory",
        ),
        Ok(m) if !m.is_dir() => r.fail(
            "store.dir",
            format!("{} is not a directory", dir.display()),
            "point store.dir at the store directory",
        ),
        Ok(m) => {
            // Writable: create and remove a probe file (sled ignores it).
            let probe = dir.join(format!(".doctor-probe-{}", std::process::id()));
            let writable = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .map(|_| {
                    let _ = std::fs::remove_file(&probe);
                });
            let mode = m.permissions().mode() & 0o777;
            match writable {
                Err(e) => r.fail(
                    "store.dir",
                    format!("{} is not writable: {e}", dir.display()),
                    format!(
                        "give the node's user the directory: chown -R lienthong {}",
                        dir.display()
                    ),
                ),
                Ok(()) if mode & 0o077 != 0 => r.warn(
                    "store.dir",
                    format!(
                        "{} is writable but has permissions {mode:04o}: other users can read the store",
                        dir.display()
                    ),
                    format!("chmod 700 {}", dir.display()),
                ),
                Ok(()) => r.ok(
                    "store.dir",
                    format!("{} exists, is writable, mode {mode:04o}", dir.display()),
                ),
            }
        }
    }
    check_disk(r, dir);
    let state = node_state(dir);
    let api = probe_addr(cfg.listen);
    let config = cfg.path.display();
    match state {
        NodeState::Running { pid } => {
            match api {
                Ok(()) => r.ok(
                    "node",
                    format!(
                        "running: process {pid} holds the store, and {} accepts connections",
                        cfg.listen
                    ),
                ),
                Err(e) => r.warn(
                    "node",
                    format!(
                        "process {pid} holds the store but {} does not accept connections ({e})",
                        cfg.listen
                    ),
                    "it may be starting or stuck: read its log (journalctl -u lienthong)",
                ),
            }
            r.skip(
                "store integrity",
                format!(
                    "not checked while the node runs: stop it and run `lienthong run --check --config {config}`"
                ),
            );
        }
        NodeState::Stopped => {
            match api {
                Ok(()) => r.warn(
                    "node",
                    format!(
                        "not running (nobody holds the store), but something else listens on {}: the node could not bind it",
                        cfg.listen
                    ),
                    "find it with `ss -ltnp` and stop it, or change api.listen",
                ),
                Err(_) => r.warn(
                    "node",
                    "not running (nobody holds the store)",
                    "start it (systemctl start lienthong); if it does not start, read its log",
                ),
            }
            r.skip(
                "store integrity",
                format!(
                    "doctor does not open the store (opening writes to it): run `lienthong run --check --config {config}` with the node stopped"
                ),
            );
        }
        NodeState::Unknown(why) => {
            r.skip("node", format!("cannot tell whether it runs: {why}"));
            r.skip(
                "store integrity",
                format!("not checked: run `lienthong run --check --config {config}` with the node stopped"),
            );
        }
    }
}

/// Whether something accepts TCP connections on `addr` (an unspecified
/// address is probed on loopback).
fn probe_addr(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).map(drop)
}

/// Free space below this is a failure: the node cannot write much longer.
const DISK_FAIL_BYTES: u64 = 100 * 1024 * 1024;
/// Free space below this (or below [`DISK_WARN_PERCENT`]) is a warning.
const DISK_WARN_BYTES: u64 = 1024 * 1024 * 1024;
const DISK_WARN_PERCENT: u64 = 5;

/// `n` bytes in MiB or GiB, for people.
fn fmt_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let n = n as f64;
    if n >= 1024.0 * MIB {
        format!("{:.1} GiB", n / (1024.0 * MIB))
    } else {
        format!("{:.0} MiB", n / MIB)
    }
}

/// Free space of the file system holding the store (or, if the store
/// directory does not exist yet, its nearest existing parent), as the
/// node's user sees it (`f_bavail`: blocks reserved for root excluded).
fn check_disk(r: &mut Report, dir: &Path) {
    let what = "disk space";
    let mut at = dir;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    let st = match rustix::fs::statvfs(at) {
        Ok(st) => st,
        Err(e) => {
            r.skip(
                what,
                format!(
                    "cannot measure free space of {} ({e}): run `df -h {}` and keep more than 1 GiB free",
                    at.display(),
                    at.display()
                ),
            );
            return;
        }
    };
    let unit = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    let free = st.f_bavail.saturating_mul(unit);
    let total = st.f_blocks.saturating_mul(unit);
    let percent = free.saturating_mul(100).checked_div(total).unwrap_or(100);
    let detail = format!(
        "{} free of {} ({percent}%) on the file system of {}",
        fmt_bytes(free),
        fmt_bytes(total),
        at.display()
    );
    let fix = format!(
        "free space on that file system (old logs, backups copied next to the store) or move store.dir to a larger disk with the node stopped; `du -sh {}` shows the store's own size",
        dir.display()
    );
    if free < DISK_FAIL_BYTES {
        r.fail(
            what,
            format!("{detail}: below 100 MiB, the node will soon fail to write"),
            fix,
        );
    } else if free < DISK_WARN_BYTES || percent < DISK_WARN_PERCENT {
        r.warn(what, format!("{detail}: below 1 GiB or 5%"), fix);
    } else {
        r.ok(what, detail);
    }
}

/// How long doctor waits for each peer (TCP, TLS and one read-only call).
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a peer could not be reached, from an error's source chain.
fn peer_failure(e: &(dyn std::error::Error + 'static), pin: &str) -> String {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return "connection refused (nothing listens there: the peer's node is down or its [federation] listen differs)".to_owned();
                }
                std::io::ErrorKind::TimedOut => {
                    return "connection timed out".to_owned();
                }
                _ => {}
            }
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return tls_failure(tls, pin);
            }
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return tls_failure(tls, pin);
        }
        cur = err.source();
    }
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cur = err.source();
    }
    text
}

fn tls_failure(e: &rustls::Error, pin: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ) => format!(
            "pin mismatch: the server there presents a TLS key other than the one the manifest pins ({pin})"
        ),
        rustls::Error::AlertReceived(a) => format!(
            "the peer refused this node's TLS certificate (alert {a:?}): its manifest does not pin this node's key"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Dials `endpoint` with the node's peer identity, accepting only `pin`,
/// and makes one read-only call (GetManifest) so that the peer, too, has
/// accepted this node's certificate. Returns the peer's clock offset, if
/// it reports its time.
async fn probe_peer(
    endpoint: &str,
    identity: &lienthong_federation::tls::TlsIdentity,
    pin: lienthong_federation::tls::SpkiPin,
    version: u64,
) -> std::result::Result<Option<i64>, String> {
    let pin_hex = pin.to_hex();
    let channel = lienthong_federation::channel::connect_pinned(endpoint, identity, pin)
        .await
        .map_err(|e| peer_failure(&e, &pin_hex))?;
    let mut client = lienthong_core::proto::federation_client::FederationClient::new(channel);
    let before = crate::witness::now_unix_ms();
    match client
        .get_manifest(lienthong_core::proto::GetManifestRequest {
            after_version: version,
        })
        .await
    {
        Ok(resp) => Ok(crate::peer::clock_offset_ms(
            before,
            crate::witness::now_unix_ms(),
            resp.get_ref().unix_ms,
        )),
        Err(s)
            if s.code() == tonic::Code::PermissionDenied
                || s.code() == tonic::Code::Unauthenticated =>
        {
            Err(format!(
                "the peer refused this node: {} (its manifest in force does not list this node's key)",
                s.message()
            ))
        }
        Err(s) => Err(match std::error::Error::source(&s) {
            Some(src) => format!("the call failed: {}", peer_failure(src, &pin_hex)),
            None => format!("the call failed: {s}"),
        }),
    }
}

/// Every other member of the manifest in force: its endpoint answers and
/// presents the key the manifest pins.
fn check_peers(
    r: &mut Report,
    cfg: &Config,
    f: &crate::config::FederationConfig,
    chain: &lienthong_core::manifest::ManifestChain,
) {
    let current = chain.current();
    let others: Vec<_> = current
        .manifest()
        .members
        .iter()
        .filter(|m| m.code != cfg.member)
        .collect();
    if others.is_empty() {
        r.skip("peers", "the manifest in force lists no other member");
        return;
    }
    let identity = match (
        std::fs::read_to_string(&f.tls_cert),
        std::fs::read_to_string(&f.tls_key),
    ) {
        (Ok(cert_pem), Ok(key_pem)) => lienthong_federation::tls::TlsIdentity { cert_pem, key_pem },
        _ => {
            r.skip(
                "peers",
                "not dialled: the peer TLS certificate or key did not load (see above)",
            );
            return;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            r.skip("peers", format!("not dialled: no async runtime ({e})"));
            return;
        }
    };
    for m in others {
        let what = format!("peer {}", m.code);
        let Some(pin) = lienthong_federation::tls::SpkiPin::from_hex(&m.tls_spki_sha256) else {
            r.fail(
                &what,
                format!(
                    "the manifest's pin {:?} is not a SHA-256",
                    m.tls_spki_sha256
                ),
                "the manifest is damaged: install the signed manifest the members agreed on",
            );
            continue;
        };
        let result = rt.block_on(async {
            tokio::time::timeout(
                PEER_TIMEOUT,
                probe_peer(&m.endpoint, &identity, pin, current.version()),
            )
            .await
        });
        match result {
            Ok(Ok(offset)) => {
                r.ok(
                    &what,
                    format!(
                        "{} ({}) answers and presents the pinned TLS key {}",
                        m.endpoint, m.name, m.tls_spki_sha256
                    ),
                );
                check_peer_clock(r, &m.code, &m.name, offset);
            }
            Ok(Err(why)) => r.fail(
                &what,
                format!("{} ({}): {why}", m.endpoint, m.name),
                format!(
                    "ask {} whether its node runs and serves its Federation API on {}; check the firewall between the nodes; if it changed its TLS key or address, install the manifest version that says so",
                    m.name, m.endpoint
                ),
            ),
            Err(_) => r.fail(
                &what,
                format!(
                    "{} ({}): timeout: no answer within {} s",
                    m.endpoint,
                    m.name,
                    PEER_TIMEOUT.as_secs()
                ),
                format!(
                    "check the route and firewall to {} (the Federation API port must be open to this node), and ask {} whether its node runs",
                    m.endpoint, m.name
                ),
            ),
        }
    }
}
