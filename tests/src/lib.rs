//! Harness for end-to-end tests: creates nodes with the real `lienthong init`,
//! runs them as real processes on loopback ports, and talks to them over
//! real mTLS gRPC.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lienthong_proto::v1::{
    alerts_client::AlertsClient, audit_client::AuditClient, cases_client::CasesClient,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub mod proxy;

pub mod peer;

/// `GET path` over plain HTTP/1.1 on 127.0.0.1:`port`; the whole answer.
pub fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The sum of metric `name`'s values in a Prometheus text `scrape`, over
/// its series whose labels include `label` (such as `le="0.01"`; every
/// series with `None`); `None` if it has no such series.
pub fn metric_sum(scrape: &str, name: &str, label: Option<&str>) -> Option<f64> {
    let mut found = None;
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(labelled) => match labelled.split_once("} ") {
                Some(split) => split,
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue,
            },
        };
        if label.is_none_or(|want| labels.split(',').any(|l| l == want))
            && let Ok(v) = value.parse::<f64>()
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The `lienthong` binary built with this workspace (or `$LIENTHONG_BIN`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LIENTHONG_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, tools from target/<profile>/.
    let dir = exe.parent().expect("executable directory");
    let candidates = [
        Some(dir.join("lienthong")),
        dir.parent().map(|p| p.join("lienthong")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("lienthong not found next to {}: build it with `cargo build -p lienthong` (cargo test --workspace does)", exe.display())
    })
}

/// Runs `lienthong ARGS` to completion.
pub fn lienthong(args: &[&str]) -> Result<std::process::Output> {
    Command::new(binary())
        .args(args)
        .env_remove("LIENTHONG_CONFIG")
        .output()
        .context("running lienthong")
}

/// A port free on 127.0.0.1 now, for a node to bind a moment later (tests
/// only use loopback), and kept from every other test process until this
/// one ends.
///
/// Chosen below the kernel's ephemeral range: a port the kernel picks for
/// `bind(0)` comes from that range, which is also where every outgoing
/// connection takes its local port, and with a federation of nodes dialling
/// each other one of those sometimes took the port before the node bound
/// it ("Address already in use"). Ports are handed out in turn from a
/// start that depends on the process id, so test processes running at the
/// same time mostly walk different stretches; where two stretches meet, a
/// lock file per port ([`reserve`]) keeps one process from taking a port
/// another was handed but has not bound yet (nextest runs each test in a
/// process of its own).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = LOWEST_FREE_PORT as u32;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(ephemeral_port_start()).saturating_sub(LOWEST);
    if span >= 1_000 {
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let k = TAKEN.fetch_add(1, Ordering::Relaxed);
            let Ok(port) = u16::try_from(LOWEST + (start + k) % span) else {
                continue;
            };
            // Bound by something else: skipped without taking its lock.
            if !FIXED_PORTS.contains(&port)
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
                && reserve(port)
            {
                return port;
            }
        }
    }
    // No room below the ephemeral range, or no lock files: the kernel's
    // choice, which another connection may take before the node binds it.
    eprintln!("free_port: no port reserved below the ephemeral range; using one the kernel picks");
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Ports signed into the old federation fixture (`tests/fixtures`, used by
/// `e2e/upgrade.rs`), which [`free_port`] never hands out.
const FIXED_PORTS: std::ops::RangeInclusive<u16> = 31_100..=31_199;

/// Takes the lock file of `port` in a directory shared by all test
/// processes, and holds it until this process ends; false if another
/// process holds it (or it cannot be made).
fn reserve(port: u16) -> bool {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    // One directory per user (the owner of this process's /proc entry):
    // another user's lock files are not writable.
    let Ok(me) = std::fs::metadata("/proc/self") else {
        return false;
    };
    let dir = std::env::temp_dir().join(format!(
        "lienthong-test-ports-{}",
        std::os::unix::fs::MetadataExt::uid(&me)
    ));
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return false;
    };
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return false;
    }
    HELD.lock().unwrap_or_else(|p| p.into_inner()).push(file);
    true
}

/// The lowest port [`free_port`] hands out: clear of well-known services.
const LOWEST_FREE_PORT: u16 = 10_000;

/// The first port of the kernel's ephemeral range (Linux's default if it
/// cannot be read).
fn ephemeral_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// One node: its directory and, while running, its process.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub member: String,
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    /// `lienthong init` in a fresh directory, API on a free loopback port.
    pub fn init(member: &str, name: &str) -> Result<Self> {
        Self::init_with(member, name, &[])
    }

    /// Like [`Node::init`] with extra `init` arguments.
    pub fn init_with(member: &str, name: &str, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let d = dir.path().join("node");
        let mut args = vec![
            "init",
            "--member",
            member,
            "--name",
            name,
            "--dir",
            d.to_str().unwrap_or_default(),
            "--listen",
            &listen,
        ];
        args.extend_from_slice(extra);
        let out = lienthong(&args)?;
        if !out.status.success() {
            bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        // Checkpoint often so tests need not wait long.
        let cfg = d.join("lienthong.toml");
        let text = std::fs::read_to_string(&cfg)?.replace("interval_ms = 500", "interval_ms = 50");
        std::fs::write(&cfg, text)?;
        Ok(Self {
            dir,
            member: member.to_owned(),
            port,
            child: None,
        })
    }

    /// The node's directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    /// Its config file.
    pub fn config(&self) -> PathBuf {
        self.path().join("lienthong.toml")
    }

    /// Its config file as a string argument.
    pub fn config_arg(&self) -> String {
        self.config().display().to_string()
    }

    /// The API address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts `lienthong run` and waits until it serves.
    pub fn start(&mut self) -> Result<()> {
        let ready = self.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("node.log"))?;
        let child = Command::new(binary())
            .args([
                "run",
                "--config",
                &self.config_arg(),
                "--ready-file",
                ready.to_str().unwrap_or_default(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("node exited with {status} before serving:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("node did not start within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("node.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(s) = c.try_wait()? {
                    if !s.success() {
                        bail!("node exited with {s} on SIGTERM:\n{}", self.log());
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    bail!("node did not stop within 20 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// TLS settings of the `admin` client issued by init.
    pub fn client_tls(&self) -> Result<ClientTlsConfig> {
        let p = self.path();
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(
                p.join("tls/ca-cert.pem"),
            )?))
            .identity(Identity::from_pem(
                std::fs::read(p.join("clients/admin-cert.pem"))?,
                std::fs::read(p.join("clients/admin-key.pem"))?,
            ))
            .domain_name("localhost"))
    }

    /// An mTLS channel as the `admin` client.
    pub async fn channel(&self) -> Result<Channel> {
        Ok(Endpoint::from_shared(format!("https://{}", self.addr()))?
            .tls_config(self.client_tls()?)?
            .connect()
            .await?)
    }

    /// Alerts client.
    pub async fn alerts(&self) -> Result<AlertsClient<Channel>> {
        Ok(AlertsClient::new(self.channel().await?))
    }

    /// Cases client.
    pub async fn cases(&self) -> Result<CasesClient<Channel>> {
        Ok(CasesClient::new(self.channel().await?))
    }

    /// Audit client.
    pub async fn audit(&self) -> Result<AuditClient<Channel>> {
        Ok(AuditClient::new(self.channel().await?))
    }

    /// `Audit.GetStatus` of the running node.
    pub async fn status(&self) -> Result<lienthong_proto::v1::GetStatusResponse> {
        Ok(self
            .audit()
            .await?
            .get_status(lienthong_proto::v1::GetStatusRequest {})
            .await?
            .into_inner())
    }

    /// `Audit.ListEvidence` of the running node: every record it keeps.
    pub async fn evidence(&self) -> Result<Vec<lienthong_proto::v1::EvidenceRecord>> {
        Ok(self
            .audit()
            .await?
            .list_evidence(lienthong_proto::v1::ListEvidenceRequest::default())
            .await?
            .into_inner()
            .evidence)
    }

    /// Runs `lienthong feed verify` with the member's vkey (and a saved
    /// checkpoint to prove consistency with); fails unless it verifies.
    pub fn feed_verify(&self, previous: Option<&Path>) -> Result<String> {
        let vkey = self.vkey()?;
        let config = self.config_arg();
        let mut args = vec!["feed", "verify", "--config", &config, "--vkey", &vkey];
        let prev = previous.map(|p| p.display().to_string());
        if let Some(p) = &prev {
            args.extend(["--previous", p]);
        }
        let out = lienthong(&args)?;
        if !out.status.success() {
            bail!(
                "feed verify failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Copies `manifest` into the node and enables its `[federation]`
    /// section, serving peers on 127.0.0.1:`port`.
    pub fn join_federation(&self, port: u16, manifest: &Path) -> Result<()> {
        std::fs::copy(manifest, self.path().join("manifest.json"))?;
        let cfg = std::fs::read_to_string(self.config())?
            .replace("# [federation]", "[federation]")
            .replace(
                "# listen = \"0.0.0.0:7501\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            )
            .replace(
                "# tls_cert = \"tls/peer-cert.pem\"",
                "tls_cert = \"tls/peer-cert.pem\"",
            )
            .replace(
                "# tls_key = \"tls/peer-key.pem\"",
                "tls_key = \"tls/peer-key.pem\"",
            )
            .replace(
                "# manifest = \"manifest.json\"",
                "manifest = \"manifest.json\"",
            )
            .replace("# manifest_poll_ms = 10000", "manifest_poll_ms = 300");
        std::fs::write(self.config(), cfg)?;
        Ok(())
    }

    /// Adds a `[metrics]` section on a free loopback port (takes effect at
    /// the next start); returns the port.
    pub fn enable_metrics(&self) -> Result<u16> {
        let port = free_port();
        let mut cfg = std::fs::read_to_string(self.config())?;
        cfg.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
        std::fs::write(self.config(), cfg)?;
        Ok(port)
    }

    /// The member's vkey, from `lienthong key show`.
    pub fn vkey(&self) -> Result<String> {
        let out = lienthong(&["key", "show", "--config", &self.config_arg()])?;
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

/// Nodes that signed one manifest, and the directory holding it.
pub struct Federation {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
}

/// Whether receipt `r` acknowledges the entry `id` (as its first entry or
/// in `more`: entries stored in one group share a receipt).
pub fn acknowledges(r: &lienthong_proto::v1::Receipt, id: &[u8]) -> bool {
    r.entry_id == id || r.more.iter().any(|m| m.entry_id == id)
}

impl Federation {
    /// Waits (`timeout` at most) until the federation is at rest after
    /// `sent` — (author, entry id) of everything submitted, each addressed
    /// to every member: each entry is at every member (so each receiver
    /// has written its receipt, in the same atomic write), then every feed
    /// is wholly checkpointed and cosigned by all the others. How many
    /// receipts a receiver wrote depends on how its group commits fell, so
    /// feed sizes are not a measure of rest; this is.
    pub async fn settle(&self, sent: &[(String, Vec<u8>)], timeout: Duration) -> Result<()> {
        use lienthong_proto::v1::{GetEntryRequest, GetStatusRequest, get_entry_request::Key};
        let deadline = Instant::now() + timeout;
        let others = self.nodes.len().saturating_sub(1) as u32;
        let mut missing: Vec<(usize, &(String, Vec<u8>))> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, _)| sent.iter().map(move |s| (i, s)))
            .collect();
        // One connection per member for all the lookups.
        let mut clients = Vec::new();
        for n in &self.nodes {
            clients.push(n.alerts().await?);
        }
        loop {
            let mut still = Vec::new();
            for (i, s) in missing {
                let found = clients[i]
                    .get(GetEntryRequest {
                        key: Some(Key::EntryId(s.1.clone())),
                    })
                    .await
                    .is_ok();
                if !found {
                    still.push((i, s));
                }
            }
            missing = still;
            let mut at_rest = missing.is_empty();
            if at_rest {
                for n in &self.nodes {
                    let st = n
                        .audit()
                        .await?
                        .get_status(GetStatusRequest {})
                        .await?
                        .into_inner();
                    at_rest &= st.feed_size == st.checkpoint_size
                        && st.cosignatures == others
                        && st.writes_refused.is_empty();
                }
            }
            if at_rest {
                return Ok(());
            }
            if Instant::now() > deadline {
                let first = missing
                    .first()
                    .map(|(i, s)| {
                        format!(
                            "; e.g. {} of {} is not at {}",
                            hex::encode(&s.1),
                            s.0,
                            self.nodes[*i].member
                        )
                    })
                    .unwrap_or_default();
                bail!(
                    "the federation did not come to rest within {} s: {} (entry, member) pairs missing{first}",
                    timeout.as_secs(),
                    missing.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The members of the manifest's first version: (code, endpoint, pin).
    pub fn members(&self) -> Result<Vec<(String, String, lienthong_federation::tls::SpkiPin)>> {
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            self.dir.path().join("manifest.json"),
        )?)?;
        m["versions"][0]["manifest"]["members"]
            .as_array()
            .context("manifest without members")?
            .iter()
            .map(|x| {
                let s = |k: &str| x[k].as_str().map(str::to_owned).context("member field");
                let pin = lienthong_federation::tls::SpkiPin::from_hex(&s("tls_spki_sha256")?)
                    .context("bad pin")?;
                Ok((s("code")?, s("endpoint")?, pin))
            })
            .collect()
    }

    /// Endpoint and pin of member `code`.
    pub fn endpoint(&self, code: &str) -> Result<(String, lienthong_federation::tls::SpkiPin)> {
        self.members()?
            .into_iter()
            .find(|(c, _, _)| c == code)
            .map(|(_, e, p)| (e, p))
            .with_context(|| format!("{code} is not in the manifest"))
    }

    /// `lienthong audit export` from every running node into the
    /// federation's directory; the bundle paths, in node order.
    pub fn export_bundles(&self) -> Result<Vec<String>> {
        self.nodes
            .iter()
            .map(|n| {
                let out = self.dir.path().join(format!("{}.ltb", n.member));
                let out = out.display().to_string();
                run_ok(&[
                    "audit",
                    "export",
                    "--config",
                    &n.config_arg(),
                    "--out",
                    &out,
                ])?;
                Ok(out)
            })
            .collect()
    }

    /// `lienthong audit verify BUNDLES --vkey VKEY --json …`: its output
    /// and the JSON report; fails unless it verifies.
    pub fn verify_bundles(
        &self,
        bundles: &[String],
        vkey: &str,
    ) -> Result<(String, serde_json::Value)> {
        let report = self.dir.path().join("report.json").display().to_string();
        let mut args = vec!["audit", "verify"];
        args.extend(bundles.iter().map(String::as_str));
        args.extend(["--vkey", vkey, "--json", &report]);
        let out = run_ok(&args)?;
        let r = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
        Ok((out, r))
    }

    /// Starts every node and waits until each serves.
    pub fn start_all(&mut self) -> Result<()> {
        self.nodes.iter_mut().try_for_each(Node::start)
    }
}

/// An agreement under which every member receives every entry.
pub const AGREEMENT_ALL: &str =
    "[agreement]\n[[agreement.rules]]\nname = \"all\"\naudience = \"all\"\nhandling = \"H0\"\n";

/// Copies directory `from` into `to` (created), recursively.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

/// Runs `lienthong ARGS`; fails with its stderr unless it succeeds.
pub fn run_ok(args: &[&str]) -> Result<String> {
    let out = lienthong(args)?;
    anyhow::ensure!(
        out.status.success(),
        "lienthong {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Creates `members` as nodes, has the first `signers` sign manifest
/// version 1 with `agreement` (TOML under `[agreement]`), and gives every
/// node the file and an enabled `[federation]` section.
pub fn federation(members: &[(&str, &str)], signers: usize, agreement: &str) -> Result<Federation> {
    Ok(federation_with(members, signers, agreement, false)?.0)
}

/// As [`federation`]; with `via_proxy`, each member's manifest endpoint is
/// a port of its own where the test puts a [`proxy::Proxy`] in front of
/// the node's real federation port. Returns (endpoint port, listen port)
/// per node.
pub fn federation_with(
    members: &[(&str, &str)],
    signers: usize,
    agreement: &str,
    via_proxy: bool,
) -> Result<(Federation, Vec<(u16, u16)>)> {
    let dir = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    let mut toml = String::from("federation = \"lienthong.example/bac-bo-11\"\nversion = 1\n\n");
    let mut ports = Vec::new();
    for (code, name) in members {
        let node = Node::init(code, name)?;
        let port = free_port();
        let endpoint = if via_proxy { free_port() } else { port };
        toml.push_str(&run_ok(&[
            "federation",
            "member",
            "--config",
            &node.config_arg(),
            "--endpoint",
            &format!("127.0.0.1:{endpoint}"),
        ])?);
        toml.push('\n');
        ports.push((endpoint, port));
        nodes.push(node);
    }
    toml.push_str(agreement);
    let manifest_toml = dir.path().join("manifest.toml");
    std::fs::write(&manifest_toml, &toml)?;
    let manifest = dir.path().join("manifest.json");
    let m = manifest.display().to_string();
    run_ok(&[
        "federation",
        "propose",
        "--toml",
        &manifest_toml.display().to_string(),
        "--file",
        &m,
    ])?;
    for node in nodes.iter().take(signers) {
        run_ok(&[
            "federation",
            "sign",
            "--config",
            &node.config_arg(),
            "--file",
            &m,
        ])?;
    }
    for (node, (_, port)) in nodes.iter().zip(&ports) {
        node.join_federation(*port, &manifest)?;
    }
    Ok((Federation { nodes, dir }, ports))
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A valid alert with the given reference, observed an hour ago.
/// A realistic assistance request to member `to` (verify a business's
/// address), due `due_unix_ms` (0: the agreement's default).
pub fn sample_assistance(
    reference: &str,
    to: &str,
    due_unix_ms: i64,
) -> lienthong_proto::v1::AssistanceRequest {
    use lienthong_proto::v1::{AssistanceRequest, AssistanceTopic, Business, Subject, subject};
    AssistanceRequest {
        reference: reference.into(),
        to: to.into(),
        topic: AssistanceTopic::Business as i32,
        question: "Xác minh địa chỉ kinh doanh của công ty".into(),
        subjects: vec![Subject {
            kind: Some(subject::Kind::Business(Business {
                tax_code: "2300123456".into(),
                ..Default::default()
            })),
        }],
        due_unix_ms,
        ..Default::default()
    }
}

pub fn sample_alert(reference: &str) -> lienthong_proto::v1::Alert {
    use lienthong_proto::v1::{
        Alert, Category, Goods, Location, Severity, Subject, Vehicle, subject,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Alert {
        reference: reference.to_owned(),
        category: Category::Counterfeit as i32,
        severity: Severity::High as i32,
        title: "Phát hiện mỹ phẩm giả nhãn hiệu Ohui".into(),
        description: "Xe tải chở 120 thùng hàng giả, không hóa đơn.".into(),
        location: Some(Location {
            province: "20".into(),
            commune: "Xã Đồng Đăng".into(),
            address: "QL1A".into(),
        }),
        observed_unix_ms: now - 3_600_000,
        subjects: vec![
            Subject {
                kind: Some(subject::Kind::Vehicle(Vehicle {
                    plate: "12C-045.67".into(),
                    country: String::new(),
                    description: "xe tải".into(),
                })),
            },
            Subject {
                kind: Some(subject::Kind::Goods(Goods {
                    hs_code: "3304.99.90".into(),
                    description: "Kem dưỡng da".into(),
                    quantity: 120.0,
                    unit: "thùng".into(),
                    estimated_value_vnd: 480_000_000,
                })),
            },
        ],
        attachments: vec![],
        concerned_provinces: vec!["24".into()],
        redacted: vec![],
    }
}

impl Node {
    /// The process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `lienthong run` and returns at once, with the path of the
    /// ready file the node writes once it serves (removed beforehand), so
    /// a caller can time the start itself. See [`Node::exit_status`].
    pub fn spawn(&mut self) -> Result<PathBuf> {
        anyhow::ensure!(self.child.is_none(), "node {} already runs", self.member);
        let ready = self.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("node.log"))?;
        let child = Command::new(binary())
            .args([
                "run",
                "--config",
                &self.config_arg(),
                "--ready-file",
                ready.to_str().unwrap_or_default(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(ready)
    }

    /// `Some` once a spawned node has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sets `[checkpoint] interval_ms` in the config (takes effect at the
    /// next start).
    pub fn set_checkpoint_interval_ms(&self, ms: u64) -> Result<()> {
        self.set_config_value("interval_ms", &ms.to_string())
    }

    /// Sets `[federation] manifest_poll_ms` (the fixture's 300 ms lets
    /// tests see new versions quickly; the default is 10 s); takes effect
    /// at the next start.
    pub fn set_manifest_poll_ms(&self, ms: u64) -> Result<()> {
        self.set_config_value("manifest_poll_ms", &ms.to_string())
    }

    /// Replaces the value of the one setting line `key = …` in the config.
    fn set_config_value(&self, key: &str, value: &str) -> Result<()> {
        let text = std::fs::read_to_string(self.config())?;
        let mut out = String::with_capacity(text.len());
        let mut found = 0;
        for line in text.lines() {
            if line.split('=').next().map(str::trim) == Some(key) {
                out.push_str(&format!("{key} = {value}"));
                found += 1;
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        anyhow::ensure!(
            found == 1,
            "{found} lines set {key} in {}, not one",
            self.config().display()
        );
        std::fs::write(self.config(), out)?;
        Ok(())
    }
}

/// Every file below `dir` with its contents, sorted by path.
pub fn files_of(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ephemeral_start = super::ephemeral_port_start();
        let ports: Vec<u16> = (0..50).map(|_| super::free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port handed out twice");
        for p in ports {
            if ephemeral_start >= super::LOWEST_FREE_PORT + 1_000 {
                assert!(
                    (super::LOWEST_FREE_PORT..ephemeral_start).contains(&p),
                    "{p}"
                );
            }
            std::net::TcpListener::bind(("127.0.0.1", p)).expect("bindable");
            assert!(!super::FIXED_PORTS.contains(&p), "{p}");
            // Held: a second taker (another open of its lock file, as in
            // another process) is refused.
            assert!(!super::reserve(p), "{p} is not held");
        }
    }

    #[test]
    fn metric_sums_are_taken_over_the_series_asked_for() {
        let scrape = "# TYPE x histogram\n\
            x_count{kind=\"a\"} 3\n\
            x_count{kind=\"b\"} 4.5\n\
            x_count_other 100\n\
            x_bucket{kind=\"a\",le=\"0.01\"} 2\n\
            x_bucket{kind=\"b\",le=\"0.01\"} 1\n\
            x_bucket{kind=\"b\",le=\"0.1\"} 4\n\
            y 7\n";
        assert_eq!(super::metric_sum(scrape, "x_count", None), Some(7.5));
        assert_eq!(
            super::metric_sum(scrape, "x_count", Some("kind=\"b\"")),
            Some(4.5)
        );
        assert_eq!(
            super::metric_sum(scrape, "x_bucket", Some("le=\"0.01\"")),
            Some(3.0)
        );
        assert_eq!(super::metric_sum(scrape, "y", None), Some(7.0));
        assert_eq!(super::metric_sum(scrape, "x", None), None);
        assert_eq!(
            super::metric_sum(scrape, "x_count", Some("kind=\"c\"")),
            None
        );
    }
}
