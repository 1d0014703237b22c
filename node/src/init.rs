//! `lienthong init` and `lienthong client add`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;

use crate::pki::{self, Leaf, write_private, write_public};

/// Options of `lienthong init`.
pub struct InitOptions {
    pub member: String,
    pub name: String,
    pub dir: PathBuf,
    pub federation: String,
    pub listen: String,
    pub hosts: Vec<String>,
    pub plaintext_dev: bool,
}

/// Creates keys, certificates and a commented config in `dir`.
pub fn init(o: &InitOptions) -> Result<PathBuf> {
    if !lienthong_core::provinces::is_province(&o.member) {
        bail!(
            "--member {:?} is not a province code: use the two-digit code after the 2025 merger, e.g. 01 for Hà Nội",
            o.member
        );
    }
    let config = o.dir.join("lienthong.toml");
    if config.exists() {
        bail!(
            "{} already exists: init never overwrites a node; choose another --dir",
            config.display()
        );
    }
    for sub in ["keys", "tls", "clients", "store"] {
        create_private_dir(&o.dir.join(sub))?;
    }
    let key = SigningKey::generate(&mut rand_core::OsRng);
    write_private(
        &o.dir.join("keys/signing-key.pem"),
        &lienthong_core::keys::signing_key_to_pem(&key)?,
    )?;
    // The TLS identity other members pin (SPKI hash in the manifest).
    let peer = lienthong_federation::tls::TlsIdentity::generate(
        &o.member,
        time::OffsetDateTime::now_utc(),
        2 * 365,
    )?;
    write_public(&o.dir.join("tls/peer-cert.pem"), &peer.cert_pem)?;
    write_private(&o.dir.join("tls/peer-key.pem"), &peer.key_pem)?;

    let tls = if o.plaintext_dev {
        "plaintext_dev = true   # development only; allowed only on a loopback address\n".to_owned()
    } else {
        let (ca_cert, ca_key) = pki::new_ca(&o.member, &o.name)?;
        write_public(&o.dir.join("tls/ca-cert.pem"), &ca_cert)?;
        write_private(&o.dir.join("tls/ca-key.pem"), &ca_key)?;
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        names.extend(o.hosts.iter().cloned());
        let (cert, k) = pki::issue(&ca_cert, &ca_key, Leaf::Server(&names))?;
        write_public(&o.dir.join("tls/api-cert.pem"), &cert)?;
        write_private(&o.dir.join("tls/api-key.pem"), &k)?;
        add_client_files(&o.dir, "admin", &ca_cert, &ca_key)?;
        write_public(
            &o.dir.join("tls/clients-crl.pem"),
            &pki::crl(&ca_cert, &ca_key, &[], 1)?,
        )?;
        "tls_cert = \"tls/api-cert.pem\"    # server certificate, signed by tls/ca-cert.pem\n\
         tls_key = \"tls/api-key.pem\"      # its private key (0600)\n\
         client_ca = \"tls/ca-cert.pem\"    # local systems must present a certificate signed by this CA\n\
         #                                  (issue one with `lienthong client add NAME`)\n\
         client_crl = \"tls/clients-crl.pem\" # certificates revoked with `lienthong client revoke NAME`;\n\
         #                                  re-read by the running node within seconds\n"
            .to_owned()
    };
    let cli = if o.plaintext_dev {
        String::new()
    } else {
        "\n# How `lienthong alert …` reaches this node's API.\n[cli]\nclient_cert = \"clients/admin-cert.pem\"\nclient_key = \"clients/admin-key.pem\"\nserver_ca = \"tls/ca-cert.pem\"\nserver_name = \"localhost\"\n".to_owned()
    };
    let cache_mb = lienthong_store::DEFAULT_CACHE_BYTES >> 20;
    let text = format!(
        "# Liên Thông node configuration, written by `lienthong init`.\n\
         # Relative paths are relative to this file. Check it with `lienthong run --check`.\n\
         \n\
         [node]\n\
         member = \"{member}\"              # province code (2025 codes), also the author of this node's entries\n\
         name = \"{name}\"\n\
         federation = \"{federation}\"   # checkpoint origin is \"<federation>/<member>\"; never change it for an existing store\n\
         \n\
         [store]\n\
         dir = \"store\"                # sled database; back it up, never edit it\n\
         cache_mb = {cache_mb:<20}# page cache; more helps large searches, costs memory\n\
         \n\
         [keys]\n\
         signing_key = \"keys/signing-key.pem\"   # Ed25519, PKCS#8 PEM, 0600: signs entries and checkpoints\n\
         \n\
         # The API for local systems (inspection apps, hotlines, gateways).\n\
         [api]\n\
         listen = \"{listen}\"    # use 0.0.0.0:PORT to serve other machines; TLS with client certificates protects it\n\
         {tls}\
         # max_in_flight = 4096          # concurrent submissions before callers wait\n\
         \n\
         [checkpoint]\n\
         interval_ms = 500              # a growing feed gets a signed checkpoint at least this often (10–1000)\n\
         cosign_interval_ms = 1000      # the other members are asked to cosign the newest one at most this often (0–60000)\n\
         \n\
         [log]\n\
         format = \"text\"                # or \"json\" for log collectors\n\
         level = \"info\"\n\
         {cli}\
         \n\
         # Peering with the other members (see `lienthong federation --help`).\n\
         # Uncomment once the signed manifest is in place:\n\
         # [federation]\n\
         # listen = \"0.0.0.0:7501\"          # the Federation API, for pinned peers only\n\
         # tls_cert = \"tls/peer-cert.pem\"   # its key is pinned in the manifest (`lienthong key show --pin`)\n\
         # tls_key = \"tls/peer-key.pem\"\n\
         # manifest = \"manifest.json\"       # signed versions, applied with the quorum rule\n\
         # manifest_poll_ms = 10000         # how often to look for newer versions (peers, and this file)\n\
         \n\
         # Prometheus metrics on plain HTTP at /metrics (counts and sizes, no alert content).\n\
         # [metrics]\n\
         # listen = \"127.0.0.1:9464\"\n",
        member = o.member,
        name = o.name.replace('"', "'"),
        federation = o.federation,
        listen = o.listen,
    );
    write_public(&config, &text)?;
    Ok(config)
}

fn create_private_dir(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("creating {}", p.display()))
}

fn add_client_files(
    dir: &Path,
    name: &str,
    ca_cert: &str,
    ca_key: &str,
) -> Result<(PathBuf, PathBuf)> {
    pki::check_client_name(name)?;
    let (cert, key) = pki::issue(ca_cert, ca_key, Leaf::Client(name))?;
    let cert_path = dir.join(format!("clients/{name}-cert.pem"));
    let key_path = dir.join(format!("clients/{name}-key.pem"));
    write_public(&cert_path, &cert)?;
    write_private(&key_path, &key)?;
    Ok((cert_path, key_path))
}

/// Revokes the client certificate issued to `name`: adds it to
/// `clients/revoked.json` and writes a new CRL signed by the CA to
/// `api.client_crl`, which the running node re-reads.
pub fn client_revoke(config_path: &Path, name: &str) -> Result<PathBuf> {
    pki::check_client_name(name)?;
    let cfg = crate::config::load(config_path, false)?;
    let crate::config::ApiSecurity::Tls {
        client_ca,
        client_crl,
        ..
    } = &cfg.security
    else {
        bail!("this node's API runs with plaintext_dev (no TLS): client certificates are not used");
    };
    let Some(crl_path) = client_crl else {
        bail!(
            "api.client_crl is not set: add `client_crl = \"tls/clients-crl.pem\"` under [api] (nodes made by newer `lienthong init` have it), then revoke again"
        );
    };
    let dir = cfg.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let cert_path = dir.join(format!("clients/{name}-cert.pem"));
    let cert = std::fs::read_to_string(&cert_path).with_context(|| {
        format!(
            "reading {} (revoke names a client issued with `lienthong client add`)",
            cert_path.display()
        )
    })?;
    let serial = hex::encode(pki::cert_serial(&cert)?);
    let list_path = dir.join("clients/revoked.json");
    let mut list: Vec<pki::Revoked> = match std::fs::read_to_string(&list_path) {
        Ok(t) => serde_json::from_str(&t)
            .with_context(|| format!("{} is not a revocation list", list_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", list_path.display())),
    };
    if list.iter().any(|r| r.serial == serial) {
        bail!("the certificate of {name} (serial {serial}) is already revoked");
    }
    list.push(pki::Revoked {
        name: name.to_owned(),
        serial,
        revoked_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
    });
    let ca_key_path = client_ca.with_file_name("ca-key.pem");
    let ca_cert = std::fs::read_to_string(client_ca)
        .with_context(|| format!("reading {}", client_ca.display()))?;
    let ca_key = std::fs::read_to_string(&ca_key_path)
        .with_context(|| format!("reading the CA key {}", ca_key_path.display()))?;
    // The list first (the record), then the CRL (what the node enforces).
    replace_file(&list_path, &serde_json::to_string_pretty(&list)?)?;
    replace_file(
        crl_path,
        &pki::crl(&ca_cert, &ca_key, &list, list.len() as u64 + 1)?,
    )?;
    Ok(crl_path.clone())
}

/// Writes `path` atomically (temporary file, fsync, rename).
fn replace_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Issues a client certificate for a local system.
pub fn client_add(config_path: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let cfg = crate::config::load(config_path, false)?;
    let crate::config::ApiSecurity::Tls { client_ca, .. } = &cfg.security else {
        bail!("this node's API runs with plaintext_dev (no TLS): client certificates are not used");
    };
    let ca_key_path = client_ca.with_file_name("ca-key.pem");
    let ca_cert = std::fs::read_to_string(client_ca)
        .with_context(|| format!("reading {}", client_ca.display()))?;
    let ca_key = std::fs::read_to_string(&ca_key_path)
        .with_context(|| format!("reading the CA key {}", ca_key_path.display()))?;
    let dir = cfg.path.parent().map(Path::to_path_buf).unwrap_or_default();
    add_client_files(&dir, name, &ca_cert, &ca_key)
}
