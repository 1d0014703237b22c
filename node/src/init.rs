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
        "tls_cert = \"tls/api-cert.pem\"    # server certificate, signed by tls/ca-cert.pem\n\
         tls_key = \"tls/api-key.pem\"      # its private key (0600)\n\
         client_ca = \"tls/ca-cert.pem\"    # local systems must present a certificate signed by this CA\n\
         #                                  (issue one with `lienthong client add NAME`)\n"
            .to_owned()
    };
    let cli = if o.plaintext_dev {
        String::new()
    } else {
        "\n# How `lienthong alert …` reaches this node's API.\n[cli]\nclient_cert = \"clients/admin-cert.pem\"\nclient_key = \"clients/admin-key.pem\"\nserver_ca = \"tls/ca-cert.pem\"\nserver_name = \"localhost\"\n".to_owned()
    };
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
