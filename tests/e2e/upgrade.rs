//! Issue 9 item 6: a node of this version reads the store of the previous
//! release and talks to its peers. tests/fixtures/old-federation.tar.gz
//! holds two members (20, 24; agreement "all") that ran the previous
//! release (commit 348b470): 50 alerts each, replicated, receipted,
//! checkpointed and cosigned, then stopped with SIGTERM. Both are started
//! here with the current binary; every old entry must be served and
//! verify, the feeds must extend the old checkpoints, new alerts must
//! cross, the audit bundles must verify, and the store must open again
//! after a restart. How the fixture was made: tests/fixtures/README.md.
//!
//! The mixed-version test runs member 20 on the previous release's binary
//! itself (tests/previous-release/build.sh builds it from this
//! repository's history) beside 24 on this one.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lienthong_proto::v1::{self as pb, get_entry_request::Key};
use lienthong_tests::{binary, files_of, free_port, run_ok, sample_alert};
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

/// One node of the unpacked fixture, run with the current binary (or,
/// in the mixed-version test, the previous release's).
struct Upgraded {
    dir: PathBuf,
    member: String,
    api: u16,
    binary: PathBuf,
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
            Command::new(&self.binary)
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
                    "{} (old store, {}) exited with {s} before serving:\n{}",
                    self.member,
                    self.binary.display(),
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

    async fn cases(&self) -> Result<pb::cases_client::CasesClient<Channel>> {
        Ok(pb::cases_client::CasesClient::new(self.channel().await?))
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

/// (turn lock, temporary directory, fixture root, nodes)
type Unpacked = (std::fs::File, tempfile::TempDir, PathBuf, Vec<Upgraded>);

/// The fixture unpacked into a temporary directory, its API ports
/// rewritten to free ones and its certificates renewed; `None` (after
/// saying SKIPPED) when its signed Federation ports are busy.
///
/// The tests using the fixture take turns (its ports are fixed): the lock
/// returned first is held until the test ends, across processes.
fn unpack_fixture() -> Result<Option<Unpacked>> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("lienthong-old-federation-ports.lock"))?;
    tokio::task::block_in_place(|| {
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
    })?;
    for (m, port) in MEMBERS {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            eprintln!(
                "SKIPPED: port {port} (Federation port of fixture member {m}, signed into its manifest) is busy"
            );
            return Ok(None);
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
            binary: binary(),
            child: None,
        });
    }
    Ok(Some((lock, tmp, root, nodes)))
}

/// Each node authors NEW_ALERTS alerts (references `<tag>-<member>-<i>`);
/// each must reach the other node, verified.
async fn cross(nodes: &[Upgraded], tag: &str) -> Result<()> {
    let mut new_ids = Vec::new();
    for n in nodes {
        let mut c = n.alerts().await?;
        for i in 0..NEW_ALERTS {
            let mut a = sample_alert(&format!("{tag}-{}-{i}", n.member));
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
        let e = arrive(n, id, &format!("alert of {author}")).await?;
        assert_eq!(e.verification, pb::Verification::Verified as i32);
    }
    Ok(())
}

/// Waits (30 s at most) until `node` holds the entry `id`.
async fn arrive(node: &Upgraded, id: &[u8], what: &str) -> Result<pb::StoredEntry> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(e) = get(node, Key::EntryId(id.to_vec())).await {
            return Ok(e);
        }
        ensure!(
            Instant::now() < deadline,
            "{what} {} did not reach {} within 30 s:\n{}",
            hex::encode(id),
            node.member,
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Exports both members' audit bundles (with the current binary) and
/// verifies them together: every one of `alerts` delivered and receipted.
async fn verify_bundles(tmp: &Path, nodes: &[Upgraded], alerts: u64) -> Result<serde_json::Value> {
    let mut bundles = Vec::new();
    for n in nodes {
        let out = tmp.join(format!("{}.ltb", n.member)).display().to_string();
        run_ok(&["audit", "export", "--config", &n.config(), "--out", &out])?;
        bundles.push(out);
    }
    let report = tmp.join("report.json").display().to_string();
    let vkey = nodes[0].vkey()?;
    let mut args = vec!["audit", "verify"];
    args.extend(bundles.iter().map(String::as_str));
    args.extend(["--vkey", &vkey, "--json", &report]);
    let out = run_ok(&args)?;
    ensure!(out.contains("VERIFIED"), "{out}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    ensure!(r["verdict"] == "pass", "{r:#}");
    ensure!(
        r["deliveries"]["expected"] == alerts && r["deliveries"]["delivered"] == alerts,
        "{:#}",
        r["deliveries"]
    );
    Ok(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_reads_the_old_store_and_federates_with_it() -> Result<()> {
    let Some((_turn, tmp, root, mut nodes)) = unpack_fixture()? else {
        return Ok(());
    };
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
    cross(&nodes, "new").await?;
    // Each alert is at the other member, so its receipt is written (how
    // many receipts depends on how group commits fell): wait until both
    // feeds are checkpointed and cosigned.
    let mut sizes = Vec::new();
    for n in &nodes {
        let s = settle(n, "settled (receipts checkpointed and cosigned)", |s| {
            s.feed_size == s.checkpoint_size
                && s.feed_size > 2 * OLD_ALERTS + NEW_ALERTS
                && s.cosignatures == 1
        })
        .await?;
        sizes.push(s.feed_size);
    }

    // Audit bundles of both members verify together.
    let alerts = 2 * (OLD_ALERTS + NEW_ALERTS);
    verify_bundles(tmp.path(), &nodes, alerts).await?;

    // The store written by the new version opens again.
    for n in &mut nodes {
        n.stop()?;
    }
    for n in &mut nodes {
        n.start()?;
    }
    for (n, want) in nodes.iter().zip(&sizes) {
        let s = settle(n, "back with its feed", |s| {
            s.feed_size == *want && s.checkpoint_size == *want
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

/// The previous release's binary, built by tests/previous-release/build.sh
/// (tests/run.sh runs it first).
fn previous_release() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/previous-release/lienthong-prev");
    p.exists().then_some(p)
}

/// Issue 9 item 6, the other half: a federation in which one member runs
/// the previous release (20, the fixture's store, the old binary) and the
/// other this one (24). Alerts cross both ways and are receipted,
/// checkpoints are cosigned each way, and the audit bundles verify. An
/// assistance request (a kind of entry the old release does not know) is
/// stored and receipted by the old node as an entry it cannot read, and
/// once 20 is upgraded it is there, readable, as a request to answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_and_a_node_of_the_previous_release_federate() -> Result<()> {
    let Some(old_binary) = previous_release() else {
        eprintln!(
            "SKIPPED: no previous release binary (run tests/previous-release/build.sh; it needs the commit in this clone's history)"
        );
        return Ok(());
    };
    let Some((_turn, tmp, root, mut nodes)) = unpack_fixture()? else {
        return Ok(());
    };
    nodes[0].binary = old_binary.clone();
    let version = |b: &Path| -> Result<String> {
        let out = Command::new(b).arg("--version").output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let (old_v, new_v) = (version(&old_binary)?, version(&binary())?);
    ensure!(
        old_v == std::fs::read_to_string(root.join("expected/old-version.txt"))?.trim()
            && old_v != new_v,
        "versions: previous {old_v:?}, current {new_v:?}"
    );
    for n in &mut nodes {
        n.start()?;
    }

    // Alerts both ways, each verified where it arrives.
    cross(&nodes, "mixed").await?;
    let (old, new) = (&nodes[0], &nodes[1]);

    // 24 asks 20 for assistance: a kind of entry 20's release does not
    // know. 20 verifies its signature, stores it and receipts it.
    let asked = new
        .cases()
        .await?
        .request_assistance(lienthong_tests::sample_assistance("mixed-ask-1", "20", 0))
        .await?
        .into_inner();
    arrive(old, &asked.entry_id, "assistance request").await?;
    for n in &nodes {
        settle(n, "settled (receipts checkpointed and cosigned)", |s| {
            s.feed_size == s.checkpoint_size
                && s.feed_size > 2 * OLD_ALERTS + NEW_ALERTS
                && s.cosignatures == 1
        })
        .await?;
    }
    // The new auditor verifies both feeds, the old member's receipts
    // included.
    verify_bundles(tmp.path(), &nodes, 2 * (OLD_ALERTS + NEW_ALERTS) + 1).await?;

    // 20 upgrades: the request it stored unread is now a request to it.
    nodes[0].stop()?;
    nodes[0].binary = binary();
    nodes[0].start()?;
    let received = nodes[0]
        .cases()
        .await?
        .list_assistance(pb::ListAssistanceRequest {
            direction: "received".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .requests;
    ensure!(
        received.len() == 1,
        "20 after its upgrade lists {received:?}\n{}",
        nodes[0].log()
    );
    let e = get(&nodes[0], Key::EntryId(asked.entry_id.clone())).await?;
    assert_eq!(e.verification, pb::Verification::Verified as i32);
    // It was found because the upgraded node rebuilt its search indexes,
    // which the previous release had built without that entry's terms.
    let log = nodes[0].log();
    ensure!(log.contains("search indexes rebuilt"), "{log}");
    // Alerts still cross, both nodes now on this release.
    cross(&nodes, "upgraded").await?;
    for n in &mut nodes {
        n.stop()?;
    }
    Ok(())
}

/// A backup written by the previous release (store layout 1) restores into
/// a node of this one, which upgrades the restored store, and the backup
/// itself is left byte for byte as it was: it stays the way back to the
/// release that wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_the_previous_release_restores_and_is_left_as_it_was() -> Result<()> {
    let Some((_turn, _tmp, _root, nodes)) = unpack_fixture()? else {
        return Ok(());
    };
    let node = &nodes[0];
    let store = node.dir.join("store");
    let backup = node.dir.join("backup-0.1");
    std::fs::rename(&store, &backup)?;
    let before = files_of(&backup)?;
    let out = run_ok(&[
        "restore",
        "--config",
        &node.config(),
        "--from",
        backup.to_str().context("path")?,
    ])?;
    ensure!(out.contains("feed size 100"), "{out}");
    ensure!(
        files_of(&backup)? == before,
        "restoring changed the backup of the previous release"
    );
    // The restored copy was upgraded: the old binary's layout marker is gone.
    let db = sled::open(&store)?;
    let format = db.get(b"Mformat")?.context("format marker")?;
    ensure!(format.as_ref() == 6u32.to_be_bytes(), "{format:?}");
    Ok(())
}
