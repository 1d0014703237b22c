//! Issue 9 item 6: a node of this version reads the store of the previous
//! release and talks to its peers. tests/fixtures/old-federation.tar.gz
//! holds two members (20, 24; agreement "all") that ran the previous
//! release (commit 348b470): 50 alerts each, replicated, receipted,
//! checkpointed and cosigned, then stopped with SIGTERM. Both are started
//! here with the current binary; every old entry must be served and
//! verify, the feeds must extend the old checkpoints, new alerts must
//! cross, the audit bundles must verify, and the store must open again
//! after a restart. How the fixture was made: tests/fixtures/README.md.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lienthong_proto::v1::{self as pb, get_entry_request::Key};
use lienthong_tests::{binary, free_port, run_ok, sample_alert};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Members of the fixture and their Federation ports (signed into the
/// manifest's endpoints, so they cannot be changed here; below the
/// ephemeral range, so no kernel-chosen port of another test takes them).
const MEMBERS: [(&str, u16); 2] = [("20", 31121), ("24", 31125)];
/// API ports written by the old `init` (rewritten here to free ones).
const OLD_API_PORTS: [u16; 2] = [31120, 31124];
/// Alerts each old node authored.
const OLD_ALERTS: u64 = 50;
/// Alerts each node authors after the upgrade.
const NEW_ALERTS: u64 = 5;

/// One node of the unpacked fixture, run with the current binary.
struct Upgraded {
    dir: PathBuf,
    member: String,
    api: u16,
    child: Option<Child>,
}

impl Upgraded {
    fn config(&self) -> String {
        self.dir.join("lienthong.toml").display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    fn start(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "{} already runs", self.member);
        let ready = self.dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))?;
        self.child = Some(
            Command::new(binary())
                .args(["run", "--config", &self.config(), "--ready-file"])
                .arg(&ready)
                .env_remove("LIENTHONG_CONFIG")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "{} (old store, new binary) exited with {s} before serving:\n{}",
                    self.member,
                    self.log()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not start within 60 s:\n{}",
                self.member,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGTERM; fails unless the node exits cleanly.
    fn stop(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = c.try_wait()? {
                ensure!(
                    s.success(),
                    "{} exited with {s} on SIGTERM:\n{}",
                    self.member,
                    self.log()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("{} did not stop within 20 s of SIGTERM", self.member);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn channel(&self) -> Result<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(
                self.dir.join("tls/ca-cert.pem"),
            )?))
            .identity(Identity::from_pem(
                std::fs::read(self.dir.join("clients/admin-cert.pem"))?,
                std::fs::read(self.dir.join("clients/admin-key.pem"))?,
            ))
            .domain_name("localhost");
        Ok(
            Endpoint::from_shared(format!("https://127.0.0.1:{}", self.api))?
                .tls_config(tls)?
                .connect()
                .await?,
        )
    }

    async fn alerts(&self) -> Result<pb::alerts_client::AlertsClient<Channel>> {
        Ok(pb::alerts_client::AlertsClient::new(self.channel().await?))
    }

    async fn audit(&self) -> Result<pb::audit_client::AuditClient<Channel>> {
        Ok(pb::audit_client::AuditClient::new(self.channel().await?))
    }

    async fn status(&self) -> Result<pb::GetStatusResponse> {
        Ok(self
            .audit()
            .await?
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner())
    }

    fn vkey(&self) -> Result<String> {
        Ok(run_ok(&["key", "show", "--config", &self.config()])?
            .trim()
            .to_owned())
    }

    /// `feed verify` with the member's vkey, proving the current checkpoint
    /// extends the one the old node saved.
    fn feed_verify(&self, previous: &Path) -> Result<String> {
        let vkey = self.vkey()?;
        run_ok(&[
            "feed",
            "verify",
            "--config",
            &self.config(),
            "--vkey",
            &vkey,
            "--previous",
            &previous.display().to_string(),
        ])
    }
}

impl Drop for Upgraded {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the old node reported for an alert it authored: (reference, id).
fn submitted(root: &Path, member: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let text = std::fs::read_to_string(root.join(format!("expected/submitted-{member}.jsonl")))?;
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let reference = v["reference"]
                .as_str()
                .context("submitted line without reference")?
                .to_owned();
            let id = v["entryIdHex"]
                .as_str()
                .with_context(|| format!("submitted line without entry id: {l}"))?;
            Ok((reference, hex::decode(id).context("entry id hex")?))
        })
        .collect()
}

/// Waits until `cond` holds on `node`'s audit status.
async fn settle(
    node: &Upgraded,
    what: &str,
    cond: impl Fn(&pb::GetStatusResponse) -> bool,
) -> Result<pb::GetStatusResponse> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = node.status().await?;
        if cond(&s) {
            return Ok(s);
        }
        ensure!(
            Instant::now() < deadline,
            "{} not {what} within 60 s: {s:?}\n{}",
            node.member,
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(node: &Upgraded, key: Key) -> Result<pb::StoredEntry> {
    Ok(node
        .alerts()
        .await?
        .get(pb::GetEntryRequest { key: Some(key) })
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_reads_the_old_store_and_federates_with_it() -> Result<()> {
    for (m, port) in MEMBERS {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            eprintln!(
                "SKIPPED: port {port} (Federation port of fixture member {m}, signed into its manifest) is busy"
            );
            return Ok(());
        }
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/old-federation.tar.gz");
    let tmp = tempfile::tempdir()?;
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(tmp.path())
        .output()?;
    ensure!(
        out.status.success(),
        "unpacking {}: {}",
        fixture.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let root = tmp.path().join("old-federation");

    let mut nodes = Vec::new();
    for ((m, _), old_api) in MEMBERS.into_iter().zip(OLD_API_PORTS) {
        let dir = root.join(m);
        let api = free_port();
        let cfg = dir.join("lienthong.toml");
        let text = std::fs::read_to_string(&cfg)?;
        let old = format!("listen = \"127.0.0.1:{old_api}\"");
        ensure!(text.contains(&old), "{} has no {old}", cfg.display());
        std::fs::write(
            &cfg,
            text.replace(&old, &format!("listen = \"127.0.0.1:{api}\"")),
        )?;
        // The certificates the old `init` issued are valid for two years
        // from the fixture's making: renew them (same keys, so the pins in
        // the signed manifest hold) so the test does not age.
        run_ok(&["tls", "renew", "--config", &cfg.display().to_string()])?;
        nodes.push(Upgraded {
            dir,
            member: m.to_owned(),
            api,
            child: None,
        });
    }
    for n in &mut nodes {
        n.start()?;
    }

    // Every old entry is served and verifies with the member's key.
    let mut old_sizes = Vec::new();
    for n in &nodes {
        let saved = root.join(format!("expected/checkpoint-{}.txt", n.member));
        let vkey = n.vkey()?;
        let old_cp =
            lienthong_log::verify_checkpoint(std::fs::read_to_string(&saved)?.as_bytes(), &vkey)
                .context("the old saved checkpoint")?;
        let s = n.status().await?;
        ensure!(
            s.feed_size >= old_cp.size() && s.checkpoint_size >= old_cp.size(),
            "{}: the new node shows a smaller feed than the old checkpoint ({}): {s:?}",
            n.member,
            old_cp.size()
        );
        ensure!(s.writes_refused.is_empty(), "{}: {s:?}", n.member);
        assert_eq!(s.manifest_version, 1, "{s:?}");
        assert_eq!(s.equivocations, 0, "{s:?}");
        // Own alerts and receipts of the other's: 2 × 50.
        assert_eq!(old_cp.size(), 2 * OLD_ALERTS, "{}", n.member);
        let (_, _, key) = lienthong_log::parse_vkey(&vkey)?;
        let mut audit = n.audit().await?;
        let mut envs = Vec::new();
        while (envs.len() as u64) < old_cp.size() {
            let page = audit
                .get_entries(pb::GetEntriesRequest {
                    start: envs.len() as u64,
                    end: old_cp.size(),
                })
                .await?
                .into_inner()
                .envelopes;
            ensure!(!page.is_empty(), "GetEntries returned nothing");
            envs.extend(page);
        }
        let mut ids = Vec::new();
        for (i, env) in envs.iter().enumerate() {
            let e = lienthong_core::entry::verify_envelope(env, &n.member, &key)
                .with_context(|| format!("{} old entry {i}", n.member))?;
            assert_eq!(e.index(), i as u64);
            ids.push(e.id().0.to_vec());
        }
        let own = submitted(&root, &n.member)?;
        assert_eq!(own.len() as u64, OLD_ALERTS);
        for (reference, id) in &own {
            ensure!(ids.contains(id), "{reference} not in {}'s feed", n.member);
            let e = get(n, Key::Reference(reference.clone()))
                .await
                .with_context(|| format!("{} by reference {reference}", n.member))?;
            assert_eq!(&e.entry_id, id, "{reference}");
        }
        old_sizes.push(old_cp.size());
    }
    // Each holds the other's old alerts, verified.
    for (n, other) in [(&nodes[0], &nodes[1]), (&nodes[1], &nodes[0])] {
        for (reference, id) in submitted(&root, &other.member)? {
            let e = get(n, Key::EntryId(id))
                .await
                .with_context(|| format!("{}'s {reference} at {}", other.member, n.member))?;
            assert_eq!(
                e.verification,
                pb::Verification::Verified as i32,
                "{reference} at {}",
                n.member
            );
        }
    }
    // The feeds verify, and extend the checkpoints the old nodes saved.
    for n in &nodes {
        let saved = root.join(format!("expected/checkpoint-{}.txt", n.member));
        let report = n.feed_verify(&saved)?;
        assert!(report.contains("VERIFIED"), "{report}");
    }

    // New alerts cross the upgraded federation, and get their receipts.
    let mut new_ids = Vec::new();
    for n in &nodes {
        let mut c = n.alerts().await?;
        for i in 0..NEW_ALERTS {
            let mut a = sample_alert(&format!("new-{}-{i}", n.member));
            if let Some(l) = a.location.as_mut() {
                l.province = n.member.clone();
            }
            let r = c
                .submit(pb::SubmitAlertRequest { alert: Some(a) })
                .await?
                .into_inner();
            new_ids.push((n.member.clone(), r.entry_id));
        }
    }
    for (author, id) in &new_ids {
        let n = nodes
            .iter()
            .find(|n| &n.member != author)
            .context("the other member")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(e) = get(n, Key::EntryId(id.clone())).await {
                assert_eq!(e.verification, pb::Verification::Verified as i32);
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "new alert {} of {author} did not reach {} within 30 s:\n{}",
                hex::encode(id),
                n.member,
                n.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let want = 2 * (OLD_ALERTS + NEW_ALERTS);
    for n in &nodes {
        settle(n, "settled (receipts checkpointed and cosigned)", |s| {
            s.feed_size == want && s.checkpoint_size == want && s.cosignatures == 1
        })
        .await?;
    }

    // Audit bundles of both members verify together.
    let mut bundles = Vec::new();
    for n in &nodes {
        let out = tmp
            .path()
            .join(format!("{}.ltb", n.member))
            .display()
            .to_string();
        run_ok(&["audit", "export", "--config", &n.config(), "--out", &out])?;
        bundles.push(out);
    }
    let report = tmp.path().join("report.json").display().to_string();
    let vkey = nodes[0].vkey()?;
    let mut args = vec!["audit", "verify"];
    args.extend(bundles.iter().map(String::as_str));
    args.extend(["--vkey", &vkey, "--json", &report]);
    let out = run_ok(&args)?;
    assert!(out.contains("VERIFIED"), "{out}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    assert_eq!(r["verdict"], "pass", "{r:#}");
    let alerts = 2 * (OLD_ALERTS + NEW_ALERTS);
    assert_eq!(r["deliveries"]["expected"], alerts, "{:#}", r["deliveries"]);
    assert_eq!(
        r["deliveries"]["delivered"], alerts,
        "{:#}",
        r["deliveries"]
    );

    // The store written by the new version opens again.
    for n in &mut nodes {
        n.stop()?;
    }
    for n in &mut nodes {
        n.start()?;
    }
    for n in &nodes {
        let s = settle(n, "back with its feed", |s| {
            s.feed_size == want && s.checkpoint_size == want
        })
        .await?;
        ensure!(s.writes_refused.is_empty(), "{}: {s:?}", n.member);
        let saved = root.join(format!("expected/checkpoint-{}.txt", n.member));
        let report = n.feed_verify(&saved)?;
        assert!(report.contains("VERIFIED"), "{report}");
        get(n, Key::Reference(format!("old-{}-000", n.member))).await?;
        get(n, Key::Reference(format!("new-{}-0", n.member))).await?;
    }
    for n in &mut nodes {
        n.stop()?;
    }
    assert_eq!(old_sizes, vec![2 * OLD_ALERTS; 2]);
    Ok(())
}
