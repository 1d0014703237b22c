//! `lienthong tls renew`: new certificates for the same keys, before the
//! old ones expire. Keys are never read for writing nor replaced, so the
//! peer TLS pin in the signed manifest stays valid and local systems keep
//! trusting the same CA.
//!
//! A renewed certificate keeps the subject, names and key usages of the one
//! it replaces. Its serial number is derived from the key, as for every
//! certificate `init` and `client add` issue: a revocation (by serial)
//! therefore covers every certificate issued for that key, old or renewed.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};

use crate::config::{ApiSecurity, Config};
use crate::doctor::{CertInfo, NodeState, cert_info, fmt_time};

/// `lienthong tls …`.
#[derive(Subcommand)]
pub enum TlsCommand {
    /// Re-issue this node's certificates for the same keys (before they
    /// expire): the API server certificate (signed by the node's CA), the
    /// peer TLS certificate (self-signed; its key stays pinned in the
    /// manifest) and the client certificates in clients/ (not revoked).
    /// With `--what ca`, the node's CA certificate instead (same key and
    /// name). Prints old and new expiry dates; a running node serves the
    /// new certificates within seconds, without a restart.
    #[command(after_help = "Examples:
  lienthong tls renew --config lienthong.toml
  lienthong tls renew --config lienthong.toml --what peer --days 365
  lienthong tls renew --config lienthong.toml --what ca --days 3650")]
    Renew {
        #[command(flatten)]
        config: crate::ConfigArg,
        /// Validity of the new certificates, in days from now.
        #[arg(long, default_value_t = 730, value_parser = clap::value_parser!(i64).range(1..=3650))]
        days: i64,
        /// Which certificates.
        #[arg(long, value_enum, default_value_t = What::All)]
        what: What,
    },
}

/// Which certificates `tls renew` re-issues.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// The API server certificate (api.tls_cert).
    Api,
    /// The peer TLS certificate (federation.tls_cert, or tls/peer-cert.pem).
    Peer,
    /// The client certificates in clients/ that are not revoked.
    Clients,
    /// All of the above.
    All,
    /// The node's local CA certificate (api.client_ca), for the same CA
    /// key and name, so every certificate it issued stays valid. Not part
    /// of `all`: systems that check the API with a copy of the CA
    /// certificate need the new copy before the old one expires.
    Ca,
}

/// Runs `lienthong tls …`.
pub fn run(cmd: TlsCommand) -> Result<()> {
    match cmd {
        TlsCommand::Renew { config, days, what } => renew(&config.config, days, what),
    }
}

/// One certificate to replace.
struct Planned {
    label: String,
    path: PathBuf,
    old: CertInfo,
    new_pem: String,
    new: CertInfo,
    /// Printed after the dates.
    note: Option<String>,
}

fn read(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

fn renew(config_path: &Path, days: i64, what: What) -> Result<()> {
    let cfg = crate::config::load(config_path, false)?;
    let base = cfg.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let mut plan = Vec::new();
    let mut notes = Vec::new();

    // The node's CA, for the API server and client certificates.
    let ca = match &cfg.security {
        ApiSecurity::Tls { client_ca, .. } if what != What::Peer => {
            let ca_key_path = client_ca.with_file_name("ca-key.pem");
            let ca_cert = read(client_ca)?;
            let ca_key = read(&ca_key_path).context(
                "the CA key is needed to renew the API and client certificates (use --what peer for the peer certificate only)",
            )?;
            let info = cert_info(&ca_cert).with_context(|| client_ca.display().to_string())?;
            let key = KeyPair::from_pem(&ca_key)
                .with_context(|| format!("{} is not a private key", ca_key_path.display()))?;
            let issuer = Issuer::from_ca_cert_pem(&ca_cert, key)
                .with_context(|| format!("reading the CA certificate {}", client_ca.display()))?;
            Some((issuer, info, client_ca.clone()))
        }
        ApiSecurity::PlaintextDev if matches!(what, What::Api | What::Clients | What::Ca) => bail!(
            "this node's API runs with plaintext_dev (no TLS): it has no API, client or CA certificates"
        ),
        _ => None,
    };

    if matches!(what, What::Api | What::All)
        && let (ApiSecurity::Tls { cert, key, .. }, Some((issuer, ca_info, _))) =
            (&cfg.security, &ca)
    {
        let old_pem = read(cert)?;
        let old =
            cert_info(&old_pem).with_context(|| format!("api.tls_cert {}", cert.display()))?;
        let key_pem = read(key)?;
        let key_pair = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("api.tls_key {} is not a private key", key.display()))?;
        ensure_key_matches(&key_pair, &old, key, cert)?;
        ensure_issued_by(&old, ca_info, cert)?;
        let new_pem = issue_like(&old, issuer, now, days)?;
        plan.push(planned("API server certificate", cert, old, new_pem, None)?);
    }

    if what == What::Ca
        && let Some((_, old, path)) = &ca
    {
        let key_path = path.with_file_name("ca-key.pem");
        let key = KeyPair::from_pem(&read(&key_path)?)
            .with_context(|| format!("{} is not a private key", key_path.display()))?;
        ensure_key_matches(&key, old, &key_path, path)?;
        let new_pem = renew_ca(old, &key, now, days)?;
        let note = "give the new CA certificate to every system that checks this node's API certificate with a copy of it; the certificates it issued stay valid (same key and name)";
        plan.push(planned(
            "local API CA certificate",
            path,
            cert_info(&read(path)?)?,
            new_pem,
            Some(note.to_owned()),
        )?);
    }

    if matches!(what, What::Peer | What::All) {
        match crate::doctor::peer_files(&cfg) {
            Some((cert, key)) => {
                let identity = lienthong_federation::tls::TlsIdentity {
                    cert_pem: read(&cert)?,
                    key_pem: read(&key)?,
                };
                let old = cert_info(&identity.cert_pem)
                    .with_context(|| format!("peer certificate {}", cert.display()))?;
                let key_pair = KeyPair::from_pem(&identity.key_pem)
                    .with_context(|| format!("{} is not a private key", key.display()))?;
                ensure_key_matches(&key_pair, &old, &key, &cert)?;
                let renewed = identity
                    .renew(&cfg.member, now, days)
                    .context("renewing the peer certificate")?;
                let note = manifest_note(&cfg, &old);
                plan.push(planned(
                    "peer TLS certificate",
                    &cert,
                    old,
                    renewed.cert_pem,
                    note,
                )?);
            }
            None if what == What::Peer => {
                bail!("no [federation] section and no tls/peer-cert.pem next to the config")
            }
            None => notes.push(
                "no peer TLS certificate (no [federation] section, no tls/peer-cert.pem): skipped"
                    .to_owned(),
            ),
        }
    }

    if matches!(what, What::Clients | What::All)
        && let Some((issuer, ca_info, _)) = &ca
    {
        let revoked = crate::doctor::revoked_names(&base);
        for name in revoked.iter() {
            notes.push(format!("client {name} is revoked: not renewed"));
        }
        let clients = crate::doctor::client_files(&base);
        if clients.is_empty() {
            notes.push("no client certificates in clients/".to_owned());
        }
        for (name, cert, _key) in clients {
            let old_pem = read(&cert)?;
            let old = match cert_info(&old_pem) {
                Ok(o) => o,
                Err(e) => {
                    notes.push(format!("client {name}: {} skipped: {e:#}", cert.display()));
                    continue;
                }
            };
            if old.issuer_der != ca_info.subject_der {
                notes.push(format!(
                    "client {name}: {} was not issued by this node's CA: skipped",
                    cert.display()
                ));
                continue;
            }
            // The client's key is not needed: the CA signs its public key,
            // taken from the certificate being renewed.
            let new_pem = issue_like(&old, issuer, now, days)?;
            let is_cli = cfg.cli.client_cert.as_deref() == Some(cert.as_path());
            let note = (!is_cli).then(|| {
                format!(
                    "give the new {} to the system {name:?}; its key is unchanged",
                    cert.display()
                )
            });
            plan.push(planned(
                &format!("client {name}"),
                &cert,
                old,
                new_pem,
                note,
            )?);
        }
    }

    if plan.is_empty() {
        for n in &notes {
            println!("{n}");
        }
        bail!("nothing to renew");
    }
    // Everything was issued and checked before the first file changes.
    for p in &plan {
        replace_keeping_owner_and_mode(&p.path, &p.new_pem)?;
        println!(
            "renewed {} {}: valid until {} -> now until {}{}; key unchanged, SPKI pin {} unchanged",
            p.label,
            p.path.display(),
            fmt_time(p.old.not_after),
            fmt_time(p.new.not_after),
            if p.new.not_after < p.old.not_after {
                " (EARLIER than before: --days is counted from now)"
            } else {
                ""
            },
            hex::encode(p.new.spki_sha256)
        );
        if let Some(n) = &p.note {
            println!("  {n}");
        }
    }
    for n in &notes {
        println!("{n}");
    }
    if let Some((_, ca_info, ca_path)) = &ca
        && what != What::Ca
    {
        let latest = plan.iter().map(|p| p.new.not_after).max().unwrap_or(0);
        if latest > ca_info.not_after {
            println!(
                "note: the CA {} expires on {}, before the renewed certificates: they are trusted only until then (renew it with `lienthong tls renew --what ca --days 3650`)",
                ca_path.display(),
                fmt_time(ca_info.not_after)
            );
        }
    }
    // Both ports re-read their certificate within seconds
    // (lienthong_federation::reload); client certificates are checked
    // against the CA at each handshake.
    match crate::doctor::node_state(&cfg.store_dir) {
        NodeState::Running { pid } => println!(
            "the running node (process {pid}) serves the new certificates within seconds (connections already open keep theirs); no restart needed"
        ),
        NodeState::Stopped => {
            println!("the node is not running: it uses the new certificates when it starts")
        }
        NodeState::Unknown(_) => {
            println!("a running node serves the new certificates within seconds; no restart needed")
        }
    }
    Ok(())
}

fn planned(
    label: &str,
    path: &Path,
    old: CertInfo,
    new_pem: String,
    note: Option<String>,
) -> Result<Planned> {
    let new = cert_info(&new_pem).context("reading back the renewed certificate")?;
    if new.spki_sha256 != old.spki_sha256 {
        bail!("internal error: the renewed {label} has another key; nothing was written");
    }
    Ok(Planned {
        label: label.to_owned(),
        path: path.to_path_buf(),
        old,
        new_pem,
        new,
        note,
    })
}

/// Whether the manifest in force still pins this key (if federated).
fn manifest_note(cfg: &Config, old: &CertInfo) -> Option<String> {
    let f = cfg.peering.as_ref()?;
    let chain = crate::manifest_file::ManifestFile::read(&f.manifest)
        .and_then(|m| m.verify())
        .ok()?;
    let current = chain.current();
    let me = current
        .manifest()
        .members
        .iter()
        .find(|m| m.code == cfg.member)?;
    Some(if me.tls_spki_sha256 == hex::encode(old.spki_sha256) {
        format!(
            "manifest version {} pins this key for {}: still valid, no manifest change needed",
            current.version(),
            cfg.member
        )
    } else {
        format!(
            "WARNING: manifest version {} pins another key ({}) for {}: peers refuse this node (run `lienthong doctor`)",
            current.version(),
            me.tls_spki_sha256,
            cfg.member
        )
    })
}

fn ensure_key_matches(
    key: &KeyPair,
    cert: &CertInfo,
    key_path: &Path,
    cert_path: &Path,
) -> Result<()> {
    use rcgen::PublicKeyData as _;
    if key.subject_public_key_info() != cert.spki_der {
        bail!(
            "{} is not the key of {}: renewing would not keep the key; restore the matching pair from the backup",
            key_path.display(),
            cert_path.display()
        );
    }
    Ok(())
}

fn ensure_issued_by(cert: &CertInfo, ca: &CertInfo, cert_path: &Path) -> Result<()> {
    if cert.issuer_der != ca.subject_der {
        bail!(
            "{} was not issued by this node's CA (api.client_ca): not renewing it",
            cert_path.display()
        );
    }
    Ok(())
}

/// The CA certificate again, for the same key, with the same subject name
/// (byte for byte: the certificates it issued name it as their issuer)
/// and key identifier, a new serial number, valid `days` from `now`.
/// Mirrors `pki::new_ca`.
fn renew_ca(old: &CertInfo, key: &KeyPair, now: OffsetDateTime, days: i64) -> Result<String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = &old.common_name {
        dn.push(DnType::CommonName, cn.as_str());
    }
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    let pem = params.self_signed(key)?.pem();
    let new = cert_info(&pem).context("reading back the renewed CA certificate")?;
    if new.subject_der != old.subject_der {
        bail!(
            "the CA's name cannot be reproduced exactly (it was not made by `lienthong init`): not renewing it; nothing was written"
        );
    }
    Ok(pem)
}

/// A certificate like `old` (subject name, alternative names, extended
/// key usages, same public key) signed by the CA, valid `days` from `now`.
/// Mirrors `pki::issue`.
fn issue_like(
    old: &CertInfo,
    issuer: &Issuer<'_, KeyPair>,
    now: OffsetDateTime,
    days: i64,
) -> Result<String> {
    let public = SubjectPublicKeyInfo::from_der(&old.spki_der)
        .context("the certificate's public key is not one lienthong can certify")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = &old.common_name {
        dn.push(DnType::CommonName, cn.as_str());
    }
    params.distinguished_name = dn;
    for d in &old.dns_names {
        params.subject_alt_names.push(SanType::DnsName(
            d.clone()
                .try_into()
                .with_context(|| format!("{d:?} is not a DNS name"))?,
        ));
    }
    for ip in &old.ip_addrs {
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::clone(ip)));
    }
    if old.server_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if old.client_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    Ok(params.signed_by(&public, issuer)?.pem())
}

/// Replaces `path` atomically (temporary file in the same directory,
/// fsync, rename, fsync of the directory), keeping its mode and owner.
fn replace_keeping_owner_and_mode(path: &Path, contents: &str) -> Result<()> {
    let old = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = old.permissions().mode() & 0o7777;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.renew-tmp"));
    // A leftover from an interrupted run.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(contents.as_bytes())?;
        let mine = f.metadata()?;
        if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid())).with_context(|| {
                format!(
                    "giving {} the owner of {} (run as that user, e.g. `sudo -u lienthong`)",
                    tmp.display(),
                    path.display()
                )
            })?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}
