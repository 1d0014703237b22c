//! Issue 6, item 5: what a node publishes verifies with code this project
//! did not write. The checker, tests/independent/c2sp-check, is built here
//! against Go's golang.org/x/mod/sumdb/note (C2SP signed-note) and
//! sumdb/tlog (RFC 6962 inclusion proofs) as Debian ships them;
//! tests/independent/install.sh installs them. Its cosignature/v1 verifier
//! is written in that checker from the C2SP text (no package we can install
//! has one); only the note parsing around it is Go's.
//!
//! Every accepting check is paired with a tampered input the checker must
//! refuse, for the reason it gives, so a checker that accepts anything
//! fails this test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use ed25519_dalek::SigningKey;
use lienthong_proto::v1 as pb;
use lienthong_tests::{Node, sample_alert};
use tonic::transport::Channel;

/// Where Debian's golang-golang-x-mod-dev puts golang.org/x/mod (GOPATH layout).
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// Builds tests/independent/c2sp-check offline, in GOPATH mode, into `dir`.
fn build_checker(dir: &Path) -> Result<PathBuf> {
    let install_hint = "run tests/independent/install.sh (tests/run.sh does) to install Debian's \
                        golang-go and golang-golang-x-mod-dev";
    let note_pkg = Path::new(DEBIAN_GOPATH).join("src/golang.org/x/mod/sumdb/note/note.go");
    ensure!(
        note_pkg.is_file(),
        "{} is missing: {install_hint}",
        note_pkg.display()
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bin = dir.join("c2sp-check");
    let out = Command::new("go")
        .current_dir(root)
        .args(["build", "-o"])
        .arg(&bin)
        .arg("./tests/independent/c2sp-check")
        // GOPATH mode: imports come from Debian's sources, never from a
        // module proxy; no C compiler needed.
        .env("GO111MODULE", "off")
        .env("GOPATH", DEBIAN_GOPATH)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build"),
        )
        .output()
        .with_context(|| format!("running `go build`: {install_hint}"))?;
    ensure!(
        out.status.success(),
        "go build of tests/independent/c2sp-check failed ({install_hint}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(bin)
}

/// One invocation of the checker; files are written into its directory.
struct Check<'a> {
    bin: &'a Path,
    dir: &'a Path,
    args: Vec<String>,
}

impl<'a> Check<'a> {
    fn new(bin: &'a Path, dir: &'a Path, note: &str, vkey: &str) -> Result<Self> {
        let mut c = Self {
            bin,
            dir,
            args: Vec::new(),
        };
        c.file("-note", "note.txt", note.as_bytes())?;
        c.args.extend(["-vkey".into(), vkey.into()]);
        Ok(c)
    }

    fn file(&mut self, flag: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes)?;
        self.args.extend([flag.into(), path.display().to_string()]);
        Ok(())
    }

    fn cosigner(mut self, vkey: &str) -> Self {
        self.args.extend(["-cosigner-vkey".into(), vkey.into()]);
        self
    }

    /// Leaf `index`: its envelope, the leaf hash the node claims, and the
    /// audit path (hex, one hash a line).
    fn inclusion(
        mut self,
        index: u64,
        envelope: &[u8],
        leaf_hash: &[u8],
        proof: &[Vec<u8>],
    ) -> Result<Self> {
        self.args.extend(["-index".into(), index.to_string()]);
        self.file("-envelope", "envelope.bin", envelope)?;
        self.args
            .extend(["-leaf-hash".into(), hex::encode(leaf_hash)]);
        let lines: String = proof.iter().map(|h| hex::encode(h) + "\n").collect();
        self.file("-proof", "proof.txt", lines.as_bytes())?;
        Ok(self)
    }

    fn run(&self) -> Result<Output> {
        Ok(Command::new(self.bin).args(&self.args).output()?)
    }

    /// Fails unless the checker accepts; returns its report.
    fn accepts(&self) -> Result<String> {
        let out = self.run()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success() && stdout.trim_end().ends_with("VERIFIED"),
            "the independent checker refused {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            self.args,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    }

    /// Fails unless the checker refuses with exit code 1 and a message
    /// containing `reason`.
    fn refuses(&self, reason: &str) -> Result<()> {
        let out = self.run()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1) && stderr.contains("FAILED:") && stderr.contains(reason),
            "the independent checker should have refused {:?} with {reason:?}; exit {:?}\nstdout:\n{}\nstderr:\n{stderr}",
            self.args,
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(())
    }
}

/// Submits alerts `first..last` and waits for a checkpoint covering them
/// that carries `witness`'s cosignature.
async fn cosigned_by(
    node: &Node,
    first: usize,
    last: usize,
    witness: &str,
) -> Result<pb::GetCheckpointResponse> {
    grow(node, first, last).await?;
    let mut audit = node.audit().await?;
    for _ in 0..800 {
        let cp = audit
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await?
            .into_inner();
        if cp.size >= last as u64 && cp.signed_note.contains(&format!("— {witness} ")) {
            return Ok(cp);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("no checkpoint of size {last} cosigned by {witness} within 20 s")
}

/// Submits alerts `first..last` and waits for a checkpoint covering them.
async fn grow(node: &Node, first: usize, last: usize) -> Result<pb::GetCheckpointResponse> {
    let mut alerts = node.alerts().await?;
    for i in first..last {
        alerts
            .submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&format!("independent-{i}"))),
            })
            .await?;
    }
    let mut audit = node.audit().await?;
    for _ in 0..400 {
        if let Ok(cp) = audit
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await
        {
            let cp = cp.into_inner();
            if cp.size >= last as u64 {
                return Ok(cp);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("no checkpoint of size {last} within 10 s")
}

async fn inclusion_proof(
    audit: &mut pb::audit_client::AuditClient<Channel>,
    index: u64,
    tree_size: u64,
) -> Result<pb::GetInclusionProofResponse> {
    Ok(audit
        .get_inclusion_proof(pb::GetInclusionProofRequest { index, tree_size })
        .await?
        .into_inner())
}

/// `note` with the first character of its root-hash line changed, still
/// valid base64 of 32 bytes.
fn with_other_root(note: &str) -> String {
    let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
    let root = &mut lines[2];
    let first = if root.starts_with('A') { "B" } else { "A" };
    root.replace_range(0..1, first);
    lines.join("\n")
}

/// `vkey` (`name+id+key`) with a key ID that does not match its key.
fn with_other_key_id(vkey: &str) -> String {
    let mut parts: Vec<String> = vkey.splitn(3, '+').map(str::to_owned).collect();
    let id = u32::from_str_radix(&parts[1], 16).expect("hex key id");
    parts[1] = format!("{:08x}", id ^ 1);
    parts.join("+")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_and_inclusion_proofs_verify_with_go_sumdb_note_and_tlog() -> Result<()> {
    let work = tempfile::tempdir()?;
    let bin = build_checker(work.path())?;
    let mut node = Node::init("20", "Lạng Sơn")?;
    node.start()?;
    let vkey = node.vkey()?;

    // Eleven entries: a tree that is not a power of two, so proofs of
    // different leaves have different shapes and lengths.
    let cp = grow(&node, 0, 11).await?;
    let note = cp.signed_note;
    let mut audit = node.audit().await?;
    let envelopes = audit
        .get_entries(pb::GetEntriesRequest {
            start: 0,
            end: cp.size,
        })
        .await?
        .into_inner()
        .envelopes;
    assert_eq!(envelopes.len() as u64, cp.size);

    let report = Check::new(&bin, work.path(), &note, &vkey)?.accepts()?;
    assert!(
        report.contains(&format!("size {}", cp.size)),
        "the checker read another size than the node's {}: {report}",
        cp.size
    );
    for (i, envelope) in envelopes.iter().enumerate() {
        let p = inclusion_proof(&mut audit, i as u64, cp.size).await?;
        Check::new(&bin, work.path(), &note, &vkey)?
            .inclusion(i as u64, envelope, &p.leaf_hash, &p.hashes)?
            .accepts()?;
    }

    // A tampered root: the member's signature no longer covers the text.
    Check::new(&bin, work.path(), &with_other_root(&note), &vkey)?.refuses("is there but wrong")?;
    // A wrong key under the member's name: no signature of that key.
    let stranger = SigningKey::from_bytes(&[0x20; 32]);
    let wrong_vkey = lienthong_log::vkey_string(&cp.origin, &stranger.verifying_key());
    Check::new(&bin, work.path(), &note, &wrong_vkey)?.refuses("no signature line by this key")?;
    // The member's key with a key ID that is not SHA-256(name || 0x0A || 0x01 || key)[:4].
    Check::new(&bin, work.path(), &note, &with_other_key_id(&vkey))?
        .refuses("invalid verifier hash")?;

    let index = 6;
    let p = inclusion_proof(&mut audit, index, cp.size).await?;
    let envelope = &envelopes[index as usize];
    // A tampered proof hash.
    for k in 0..p.hashes.len() {
        let mut hashes = p.hashes.clone();
        hashes[k][31] ^= 0x01;
        Check::new(&bin, work.path(), &note, &vkey)?
            .inclusion(index, envelope, &p.leaf_hash, &hashes)?
            .refuses("does not lead to the checkpoint's root")?;
    }
    // The proof of one leaf does not prove another entry at that index…
    let other = &envelopes[index as usize + 1];
    let other_leaf = inclusion_proof(&mut audit, index + 1, cp.size)
        .await?
        .leaf_hash;
    Check::new(&bin, work.path(), &note, &vkey)?
        .inclusion(index, other, &other_leaf, &p.hashes)?
        .refuses("does not lead to the checkpoint's root")?;
    // …nor the same entry at another index…
    Check::new(&bin, work.path(), &note, &vkey)?
        .inclusion(index + 1, envelope, &p.leaf_hash, &p.hashes)?
        .refuses("does not lead to the checkpoint's root")?;
    // …and the leaf hash must be SHA-256(0x00 || envelope).
    Check::new(&bin, work.path(), &note, &vkey)?
        .inclusion(index, other, &p.leaf_hash, &p.hashes)?
        .refuses("is not SHA-256(0x00 || envelope)")?;
    // A proof one hash short.
    Check::new(&bin, work.path(), &note, &vkey)?
        .inclusion(
            index,
            envelope,
            &p.leaf_hash,
            &p.hashes[..p.hashes.len() - 1],
        )?
        .refuses("does not lead to the checkpoint's root")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosignature_on_the_nodes_checkpoint_verifies_independently() -> Result<()> {
    let work = tempfile::tempdir()?;
    let bin = build_checker(work.path())?;
    // Two members: 24 witnesses 22's checkpoints (C2SP tlog-cosignature/v1).
    let mut f = lienthong_tests::federation(
        &[("22", "Quảng Ninh"), ("24", "Bắc Ninh")],
        2,
        lienthong_tests::AGREEMENT_ALL,
    )?;
    f.start_all()?;
    let node = &f.nodes[0];
    let vkey = node.vkey()?;
    let witness_name = "lienthong.example/bac-bo-11/24";
    let (_, _, witness_key) = lienthong_log::parse_vkey(f.nodes[1].vkey()?.trim())?;
    let witness_vkey = lienthong_log::cosigner_vkey_string(witness_name, &witness_key);
    let first = cosigned_by(node, 0, 4, witness_name).await?;
    let second = cosigned_by(node, 4, 9, witness_name).await?;
    assert_ne!(first.size, second.size);
    let cosigned = first.signed_note.clone();
    let line = cosigned
        .lines()
        .find(|l| l.starts_with(&format!("— {witness_name} ")))
        .map(|l| format!("{l}\n"))
        .unwrap_or_default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let time = lienthong_log::CosignatureLine::parse(&line)?.time_unix();
    assert!(
        time <= now && now - time < 600,
        "cosigned at {time}, now {now}"
    );
    let own_part = |note: &str| -> String {
        note.lines()
            .filter(|l| !l.starts_with(&format!("— {witness_name} ")))
            .map(|l| format!("{l}\n"))
            .collect()
    };

    let report = Check::new(&bin, work.path(), &cosigned, &vkey)?
        .cosigner(&witness_vkey)
        .accepts()?;
    assert!(
        report.contains(&format!("at time {time}")),
        "the checker read another time than {time}: {report}"
    );
    // The member's signature still verifies beside the cosignature, and
    // inclusion proofs still check against the cosigned checkpoint.
    let mut audit = node.audit().await?;
    let envelope = audit
        .get_entries(pb::GetEntriesRequest { start: 2, end: 3 })
        .await?
        .into_inner()
        .envelopes
        .remove(0);
    let p = inclusion_proof(&mut audit, 2, first.size).await?;
    Check::new(&bin, work.path(), &cosigned, &vkey)?
        .cosigner(&witness_vkey)
        .inclusion(2, &envelope, &p.leaf_hash, &p.hashes)?
        .accepts()?;

    // No cosignature at all.
    Check::new(&bin, work.path(), &own_part(&first.signed_note), &vkey)?
        .cosigner(&witness_vkey)
        .refuses("no signature line by this key")?;
    // Another witness key under the same name.
    let stranger = SigningKey::from_bytes(&[0x40; 32]);
    let stranger_vkey =
        lienthong_log::cosigner_vkey_string(witness_name, &stranger.verifying_key());
    Check::new(&bin, work.path(), &cosigned, &vkey)?
        .cosigner(&stranger_vkey)
        .refuses("no signature line by this key")?;
    // The cosignature moved onto a later checkpoint of the same feed.
    let moved = format!("{}{line}", own_part(&second.signed_note));
    Check::new(&bin, work.path(), &moved, &vkey)?
        .cosigner(&witness_vkey)
        .refuses("is there but wrong")?;
    // A cosigner vkey whose key ID does not match, and a member-style
    // (type 0x01) vkey offered as a cosigner key.
    Check::new(&bin, work.path(), &cosigned, &vkey)?
        .cosigner(&with_other_key_id(&witness_vkey))
        .refuses("does not match the key")?;
    let type_01 = lienthong_log::vkey_string(witness_name, &witness_key);
    Check::new(&bin, work.path(), &cosigned, &vkey)?
        .cosigner(&type_01)
        .refuses("not 0x04 followed by a 32-byte Ed25519 public key")?;
    Ok(())
}
