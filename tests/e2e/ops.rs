//! Issue 9: operations. `lienthong tls renew` gives a node new
//! certificates for the same keys (pins and CA trust unchanged), and
//! `lienthong doctor` names what is wrong with a node and how to fix it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lienthong_federation::tls::{SpkiPin, TlsIdentity, spki_pin};
use lienthong_proto::v1::{self as pb, get_entry_request::Key};
use lienthong_tests::{AGREEMENT_ALL, Node, federation, lienthong, run_ok, sample_alert};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls;

/// The first certificate of a PEM file, DER.
fn cert_der(path: &Path) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_file(path).with_context(|| format!("reading {}", path.display()))
}

/// One DER element: (tag, contents, rest).
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    ensure!(b.len() >= 2, "truncated DER");
    let (len, header) = if b[1] < 0x80 {
        (usize::from(b[1]), 2)
    } else {
        let n = usize::from(b[1] & 0x7f);
        ensure!(n <= 4 && b.len() >= 2 + n, "bad DER length");
        (
            b[2..2 + n]
                .iter()
                .fold(0usize, |a, x| (a << 8) | usize::from(*x)),
            2 + n,
        )
    };
    ensure!(b.len() >= header + len, "truncated DER");
    Ok((b[0], &b[header..header + len], &b[header + len..]))
}

/// notAfter of a certificate as `YYYYMMDDHHMMSSZ` (comparable as text).
fn not_after(path: &Path) -> Result<String> {
    let der = cert_der(path)?;
    let (_, cert, _) = tlv(der.as_ref())?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // version
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, _, after) = tlv(validity)?;
    let (tag, time, _) = tlv(after)?;
    let time = std::str::from_utf8(time)?;
    Ok(match tag {
        0x17 => format!("20{time}"), // UTCTime, years 2000–2049 here
        0x18 => time.to_owned(),
        t => bail!("unexpected time tag {t:#x}"),
    })
}

fn pin_of(path: &Path) -> Result<SpkiPin> {
    Ok(spki_pin(&cert_der(path)?)?)
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

/// Runs `lienthong doctor`: (exit code, stdout).
fn doctor(node: &Node) -> Result<(i32, String)> {
    let out = lienthong(&["doctor", "--config", &node.config_arg()])?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
    ))
}

/// The certificate the server at `addr` presents in a TLS handshake made
/// with `config`.
async fn served_cert(
    addr: &str,
    config: rustls::ClientConfig,
    name: &str,
) -> Result<CertificateDer<'static>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned())?, tcp)
        .await
        .with_context(|| format!("TLS handshake with {addr}"))?;
    let (_, conn) = tls.get_ref();
    Ok(conn
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no server certificate")?
        .clone()
        .into_owned())
}

/// A rustls client of the node's local API, as its `admin` client.
fn api_client_config(node: &Node) -> Result<rustls::ClientConfig> {
    let p = node.path();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der(&p.join("tls/ca-cert.pem"))?)?;
    let cert = cert_der(&p.join("clients/admin-cert.pem"))?;
    let key = PrivateKeyDer::from_pem_file(p.join("clients/admin-key.pem"))?;
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![cert], key)?)
}

async fn wait_for(node: &Node, id: &[u8]) -> Result<()> {
    let mut c = node.alerts().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if c.get(pb::GetEntryRequest {
            key: Some(Key::EntryId(id.to_vec())),
        })
        .await
        .is_ok()
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "entry {} did not reach {} within 30 s:\n{}",
            hex::encode(id),
            node.member,
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn submit(node: &Node, reference: &str) -> Result<Vec<u8>> {
    Ok(node
        .alerts()
        .await?
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert(reference)),
        })
        .await?
        .into_inner()
        .entry_id)
}

const KEYS: [&str; 6] = [
    "keys/signing-key.pem",
    "tls/api-key.pem",
    "tls/peer-key.pem",
    "tls/ca-key.pem",
    "tls/ca-cert.pem",
    "clients/admin-key.pem",
];
const CERTS: [&str; 3] = [
    "tls/api-cert.pem",
    "tls/peer-cert.pem",
    "clients/admin-cert.pem",
];

/// `tls renew --what ca`: the CA certificate is re-issued for the same key
/// and name; the certificates it issued before (the API's, the admin
/// client's) stay valid under it, while the node runs and after a restart,
/// and a client issued after it works too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_the_ca_keeps_every_certificate_it_issued_valid() -> Result<()> {
    let mut node = Node::init("20", "Lạng Sơn")?;
    let dir = node.path();
    let ca = dir.join("tls/ca-cert.pem");
    let (before_pem, before_after, before_pin) =
        (std::fs::read(&ca)?, not_after(&ca)?, pin_of(&ca)?);
    let key_before = std::fs::read(dir.join("tls/ca-key.pem"))?;
    node.start()?;
    let config = node.config_arg();
    let out = run_ok(&[
        "tls", "renew", "--config", &config, "--what", "ca", "--days", "1000",
    ])?;
    ensure!(
        out.contains("renewed local API CA certificate") && out.contains("give the new CA"),
        "{out}"
    );
    ensure!(
        !out.contains("renewed API server") && !out.contains("renewed client"),
        "only the CA: {out}"
    );
    ensure!(
        std::fs::read(&ca)? != before_pem,
        "the CA certificate was not rewritten"
    );
    ensure!(pin_of(&ca)? == before_pin, "the CA key changed");
    ensure!(std::fs::read(dir.join("tls/ca-key.pem"))? == key_before);
    // init made it for ten years; 1000 days from now is earlier, and said.
    ensure!(
        not_after(&ca)? < before_after && out.contains("EARLIER than before"),
        "{} vs {before_after}: {out}",
        not_after(&ca)?
    );
    ensure!(mode(&ca)? == 0o644, "mode {:o}", mode(&ca)?);

    // The running node and the admin client, both certified under the
    // old CA certificate, meet under the new one (the CLI reads it).
    let status = run_ok(&["audit", "status", "--config", &config])?;
    ensure!(status.contains("feed:"), "{status}");
    let id = submit(&node, "ops-ca-renewed").await?;
    ensure!(!id.is_empty());
    // A client issued now, by the renewed CA, is accepted too.
    run_ok(&["client", "add", "hotline-1800", "--config", &config])?;
    node.stop()?;
    node.start()?;
    ensure!(run_ok(&["audit", "status", "--config", &config])?.contains("feed:"));
    let (code, out) = doctor(&node)?;
    ensure!(code == 0, "doctor exited {code}:\n{out}");
    ensure!(out.contains("OK    api.client_ca:"), "{out}");
    ensure!(
        out.lines()
            .any(|l| l.starts_with("OK    client hotline-1800")),
        "{out}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_keeps_keys_and_pins_and_the_node_keeps_serving_clients_and_peers() -> Result<()> {
    let mut f = federation(&[("01", "Hà Nội"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    let dir = f.nodes[0].path();
    let files_before: Vec<Vec<u8>> = KEYS
        .iter()
        .map(|k| std::fs::read(dir.join(k)))
        .collect::<Result<_, _>>()?;
    let mut certs_before = Vec::new();
    for c in CERTS {
        let p = dir.join(c);
        certs_before.push((pin_of(&p)?, not_after(&p)?, std::fs::read(&p)?));
    }
    let config = f.nodes[0].config_arg();
    let pin_shown = run_ok(&["key", "show", "--pin", "--config", &config])?;
    f.start_all()?;
    let before = submit(&f.nodes[0], "ops-renew-before").await?;
    wait_for(&f.nodes[1], &before).await?;

    // Renewed while the node runs: no restart needed.
    let out = run_ok(&["tls", "renew", "--config", &config, "--days", "1000"])?;
    for label in [
        "API server certificate",
        "peer TLS certificate",
        "client admin",
    ] {
        ensure!(out.contains(&format!("renewed {label}")), "{label}:\n{out}");
    }
    ensure!(
        out.contains("serves the new certificates within seconds")
            && out.contains("no restart needed"),
        "{out}"
    );
    ensure!(
        out.contains("no manifest change needed"),
        "the manifest's pin is confirmed:\n{out}"
    );

    // Keys (and the CA) are byte for byte the same; the certificates are
    // new, later, with the same pins, and the modes are kept.
    for (k, before) in KEYS.iter().zip(&files_before) {
        ensure!(&std::fs::read(dir.join(k))? == before, "{k} changed");
    }
    for (c, (pin, after, pem)) in CERTS.iter().zip(&certs_before) {
        let p = dir.join(c);
        ensure!(&std::fs::read(&p)? != pem, "{c} was not rewritten");
        ensure!(pin_of(&p)? == *pin, "{c}: the pin changed");
        let new_after = not_after(&p)?;
        ensure!(
            new_after > *after,
            "{c}: not after {new_after}, before {after}"
        );
        ensure!(mode(&p)? == 0o644, "{c}: mode {:o}", mode(&p)?);
    }
    for k in [
        "keys/signing-key.pem",
        "tls/api-key.pem",
        "tls/peer-key.pem",
    ] {
        ensure!(mode(&dir.join(k))? == 0o600, "{k}: mode changed");
    }
    ensure!(
        run_ok(&["key", "show", "--pin", "--config", &config])? == pin_shown,
        "key show --pin changed"
    );
    ensure!(f.endpoint("01")?.1 == pin_of(&dir.join("tls/peer-cert.pem"))?);
    ensure!(
        std::fs::read_dir(dir.join("tls"))?
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("renew-tmp")),
        "no temporary file is left"
    );

    // Without a restart, the API already serves the renewed certificate
    // (it re-reads it at most every 2 s) to the existing admin client.
    let renewed_api = cert_der(&dir.join("tls/api-cert.pem"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let api = served_cert(
            &f.nodes[0].addr().to_string(),
            api_client_config(&f.nodes[0])?,
            "localhost",
        )
        .await?;
        if api == renewed_api {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the running node still serves the old API certificate"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The peer port too: a new handshake with 01 meets the renewed
    // peer certificate, and 24's new connections present its own.
    let renewed_peer = cert_der(&dir.join("tls/peer-cert.pem"))?;
    let (endpoint, pin) = f.endpoint("01")?;
    let peer_cfg = lienthong_federation::tls::client_config(
        &lienthong_tests::peer::peer_identity(&f.nodes[1].path())?,
        pin,
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cert(&endpoint, peer_cfg.clone(), "member-01.lienthong.invalid").await?
        != renewed_peer
    {
        ensure!(
            Instant::now() < deadline,
            "the running node still serves the old peer certificate"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let live = submit(&f.nodes[0], "ops-renew-live").await?;
    wait_for(&f.nodes[1], &live).await?;
    let live_back = submit(&f.nodes[1], "ops-renew-live-back").await?;
    wait_for(&f.nodes[0], &live_back).await?;

    // Restarted, the node serves the renewed certificates: the existing
    // admin client still gets in, and the peers still connect both ways.
    f.nodes[0].stop()?;
    f.nodes[0].start()?;
    let api = served_cert(
        &f.nodes[0].addr().to_string(),
        api_client_config(&f.nodes[0])?,
        "localhost",
    )
    .await?;
    ensure!(api == cert_der(&dir.join("tls/api-cert.pem"))?);
    let after = submit(&f.nodes[0], "ops-renew-after").await?;
    wait_for(&f.nodes[1], &after).await?;
    let from_peer = submit(&f.nodes[1], "ops-renew-peer").await?;
    wait_for(&f.nodes[0], &from_peer).await?;
    let served = served_cert(&endpoint, peer_cfg, "member-01.lienthong.invalid").await?;
    ensure!(served == renewed_peer);

    // doctor agrees, including the manifest checks.
    let (code, out) = doctor(&f.nodes[0])?;
    ensure!(code == 0, "doctor exited {code}:\n{out}");
    for line in [
        "OK    signing key in manifest:",
        "OK    peer TLS pin:",
        "OK    federation.manifest:",
        "OK    node: running",
    ] {
        ensure!(out.contains(line), "no {line:?} in:\n{out}");
    }

    // doctor dials every peer of the manifest in force with the node's
    // pinned identity: both nodes see the other OK at its endpoint.
    let (e01, _) = f.endpoint("01")?;
    let (e24, _) = f.endpoint("24")?;
    ensure!(
        out.lines()
            .any(|l| l.starts_with("OK    peer 24:") && l.contains(&e24) && l.contains("pinned")),
        "peer 24 OK at {e24}:\n{out}"
    );
    // …and measures its clock against each (the same machine: agree).
    ensure!(
        out.lines()
            .any(|l| l.starts_with("OK    clock vs 24:") && l.contains(" ms ")),
        "clock vs 24 measured:\n{out}"
    );
    let (code, out) = doctor(&f.nodes[1])?;
    ensure!(code == 0, "doctor on 24 exited {code}:\n{out}");
    ensure!(
        out.lines()
            .any(|l| l.starts_with("OK    peer 01:") && l.contains(&e01) && l.contains("pinned")),
        "peer 01 OK at {e01}:\n{out}"
    );

    // One peer stopped: doctor names it, its endpoint and why, and fails.
    f.nodes[1].stop()?;
    let started = Instant::now();
    let (code, out) = doctor(&f.nodes[0])?;
    ensure!(code == 1, "doctor exited {code} with peer 24 down:\n{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    ensure!(
        fails.len() == 1
            && fails[0].starts_with("FAIL  peer 24:")
            && fails[0].contains(&e24)
            && fails[0].contains("refused"),
        "one FAIL, peer 24 refused at {e24}:\n{out}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(20),
        "doctor took {:?}",
        started.elapsed()
    );

    // Something else answers at 24's endpoint with another TLS key: doctor
    // names the pin mismatch.
    let other = TlsIdentity::generate("24", time::OffsetDateTime::now_utc(), 30)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
        lienthong_federation::tls::server_config(&other, Default::default())?,
    ));
    let listener = tokio::net::TcpListener::bind(&e24).await?;
    let impostor = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let (code, out) = tokio::task::block_in_place(|| doctor(&f.nodes[0]))?;
    impostor.abort();
    ensure!(
        code == 1,
        "doctor exited {code} with an impostor at {e24}:\n{out}"
    );
    ensure!(
        out.lines().any(|l| l.starts_with("FAIL  peer 24:")
            && l.contains(&e24)
            && l.contains("pin mismatch")),
        "pin mismatch at {e24}:\n{out}"
    );
    Ok(())
}

#[test]
fn doctor_on_a_fresh_node_passes() -> Result<()> {
    let node = Node::init("20", "Lạng Sơn")?;
    let (code, out) = doctor(&node)?;
    ensure!(code == 0, "doctor exited {code}:\n{out}");
    for line in [
        "OK    clock:",
        "OK    config:",
        "OK    keys.signing_key:",
        "OK    api.tls_cert:",
        "OK    api.tls_key:",
        "OK    api.client_ca:",
        "OK    CA key:",
        "OK    api.client_crl:",
        "OK    client admin (cli.client_cert):",
        "OK    peer TLS certificate:",
        "OK    peer TLS key:",
        "OK    store.dir:",
        "SKIP  federation:",
        "WARN  node: not running",
        "SKIP  store integrity:",
    ] {
        ensure!(out.contains(line), "no {line:?} in:\n{out}");
    }
    ensure!(
        out.lines().any(|l| (l.starts_with("OK    disk space:")
            || l.starts_with("WARN  disk space:"))
            && l.contains(" free of ")),
        "free disk space measured:\n{out}"
    );
    ensure!(
        !out.lines().any(|l| l.starts_with("FAIL")) && out.contains(" 0 FAIL"),
        "{out}"
    );
    // Issued for 730 days from a whole second: a check in a later second
    // than the issue has 729 whole days left.
    ensure!(
        out.contains("expires on")
            && (out.contains("730 days left") || out.contains("729 days left")),
        "expiry dates are named:\n{out}"
    );
    Ok(())
}

#[test]
fn doctor_names_an_open_key_and_an_expired_certificate() -> Result<()> {
    let node = Node::init("24", "Bắc Ninh")?;
    let dir = node.path();
    let signing = dir.join("keys/signing-key.pem");
    std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o644))?;
    // A peer certificate for the same key that expired two years ago.
    let peer = lienthong_tests::peer::peer_identity(&dir)?;
    let expired = peer.renew(
        "24",
        time::OffsetDateTime::now_utc() - time::Duration::days(3 * 365),
        365,
    )?;
    let peer_cert = dir.join("tls/peer-cert.pem");
    std::fs::write(&peer_cert, &expired.cert_pem)?;

    let (code, out) = doctor(&node)?;
    ensure!(code == 1, "doctor exited {code}:\n{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    ensure!(
        fails.len() == 2,
        "two problems, not {}:\n{out}",
        fails.len()
    );
    ensure!(
        fails.iter().any(|l| l.contains("keys.signing_key")
            && l.contains("0644")
            && l.contains(&format!("chmod 600 {}", signing.display()))),
        "the open signing key:\n{out}"
    );
    ensure!(
        fails
            .iter()
            .any(|l| l.contains(&peer_cert.display().to_string())
                && l.contains("EXPIRED")
                && l.contains("tls renew")),
        "the expired certificate:\n{out}"
    );

    // Both fixes as doctor gives them.
    std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o600))?;
    let out = run_ok(&[
        "tls",
        "renew",
        "--config",
        &node.config_arg(),
        "--what",
        "peer",
    ])?;
    ensure!(out.contains("renewed peer TLS certificate"), "{out}");
    ensure!(
        pin_of(&peer_cert)? == TlsIdentity::pin(&peer)?,
        "same pin after renewal"
    );
    let (code, out) = doctor(&node)?;
    ensure!(code == 0, "doctor exited {code} after the fixes:\n{out}");
    Ok(())
}

/// The node's allocator options (`.cargo/config.toml`) are compiled into
/// the binary, and jemalloc accepts every one of them: without them it
/// runs with eight arenas and no background thread, and an idle node
/// keeps pages it freed. (jemalloc only warns of an option it does not
/// know; `abort_conf` makes that fatal.)
#[test]
fn the_binary_carries_its_allocator_options() {
    let config = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cargo/config.toml"),
    )
    .expect("the workspace's .cargo/config.toml");
    let options = config
        .lines()
        .find_map(|l| l.strip_prefix("JEMALLOC_SYS_WITH_MALLOC_CONF = "))
        .expect("the allocator options in .cargo/config.toml")
        .trim_matches('"');
    assert!(options.contains("narenas:1"), "{options}");
    let binary = std::fs::read(lienthong_tests::binary()).expect("the lienthong binary");
    assert!(
        binary
            .windows(options.len())
            .any(|w| w == options.as_bytes()),
        "{options:?} is not in the lienthong binary: was it built in this workspace?"
    );
    let out = std::process::Command::new(lienthong_tests::binary())
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "abort_conf:true")
        .output()
        .expect("run lienthong --version");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("<jemalloc>"),
        "{}: {stderr}",
        out.status
    );
}
