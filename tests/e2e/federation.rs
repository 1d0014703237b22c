//! Issue 4: members exchange alerts directly, only as the agreement allows,
//! over mutual TLS pinned by a manifest the members signed.

use std::time::{Duration, Instant};

use lienthong_proto::v1::{self as pb, get_entry_request::Key};
use lienthong_tests::{AGREEMENT_ALL, Node, federation, run_ok, sample_alert};

/// Eleven-province style agreement, reduced to what the test checks:
/// counterfeit goes to 24 Bắc Ninh only; everything else stays home.
const AGREEMENT: &str = r#"
[agreement]
[[agreement.rules]]
name = "counterfeit-to-bac-ninh"
when = { categories = ["counterfeit"] }
audience = { members = ["24"] }
handling = "H1"

[[agreement.rules]]
name = "default"
audience = "author_only"
handling = "H2"
"#;

async fn wait_for(node: &Node, id: &[u8]) -> anyhow::Result<pb::StoredEntry> {
    let mut c = node.alerts().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(e) = c
            .get(pb::GetEntryRequest {
                key: Some(Key::EntryId(id.to_vec())),
            })
            .await
        {
            return Ok(e.into_inner());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "entry {} did not reach {} within 20 s:\n{}",
            hex::encode(id),
            node.member,
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has(node: &Node, id: &[u8]) -> anyhow::Result<bool> {
    let mut c = node.alerts().await?;
    Ok(c.get(pb::GetEntryRequest {
        key: Some(Key::EntryId(id.to_vec())),
    })
    .await
    .is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_exactly_their_audience_with_receipts_and_catch_up() -> anyhow::Result<()> {
    let mut f = federation(
        &[("20", "Lạng Sơn"), ("24", "Bắc Ninh"), ("01", "Hà Nội")],
        3,
        AGREEMENT,
    )?;
    f.start_all()?;
    let mut ls = f.nodes[0].alerts().await?;

    // Counterfeit: the agreement sends it to 24 only.
    let counterfeit = ls
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("ls-cf-1")),
        })
        .await?
        .into_inner();
    let mut smuggling_alert = sample_alert("ls-sm-1");
    smuggling_alert.category = pb::Category::Smuggling as i32;
    let smuggling = ls
        .submit(pb::SubmitAlertRequest {
            alert: Some(smuggling_alert),
        })
        .await?
        .into_inner();

    let at_bn = wait_for(&f.nodes[1], &counterfeit.entry_id).await?;
    assert_eq!(at_bn.verification, pb::Verification::Verified as i32);
    let body = at_bn.body.unwrap();
    assert_eq!(
        (body.author.as_str(), body.audience.clone()),
        ("20", vec!["20".to_owned(), "24".to_owned()])
    );
    assert_eq!(body.manifest_version, 1);
    assert_eq!(body.agreement_hash.len(), 32);
    assert_eq!(
        body.handling,
        pb::Handling::H1 as i32,
        "the agreement's handling code is signed into the entry"
    );

    // 24's receipt travels back to 20 (its audience is the author).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = ls
            .query(pb::QueryRequest {
                author: "24".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if let Some(r) = page
            .entries
            .iter()
            .find_map(|e| match &e.body.as_ref()?.payload {
                Some(pb::entry_body::Payload::Receipt(r)) => Some(r.clone()),
                _ => None,
            })
        {
            assert_eq!(
                (r.author.as_str(), r.entry_id.clone()),
                ("20", counterfeit.entry_id.clone())
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no receipt from 24 at 20:\n{}",
            f.nodes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Never beyond the audience.
    assert!(
        !has(&f.nodes[2], &counterfeit.entry_id).await?,
        "01 got an entry not addressed to it"
    );
    assert!(
        !has(&f.nodes[1], &smuggling.entry_id).await?,
        "24 got an author-only entry"
    );
    assert!(
        !has(&f.nodes[2], &smuggling.entry_id).await?,
        "01 got an author-only entry"
    );

    // 24 is down while 20 writes; it catches up with nothing lost or doubled.
    f.nodes[1].stop()?;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            ls.submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&format!("ls-cf-late-{i}"))),
            })
            .await?
            .into_inner()
            .entry_id,
        );
    }
    f.nodes[1].start()?;
    for id in &ids {
        wait_for(&f.nodes[1], id).await?;
    }
    let mut bn = f.nodes[1].alerts().await?;
    let from_ls = bn
        .query(pb::QueryRequest {
            author: "20".into(),
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .entries;
    assert_eq!(
        from_ls.len(),
        6,
        "exactly the six counterfeit alerts, once each"
    );
    drop(f.dir);
    Ok(())
}

#[test]
fn a_manifest_without_its_quorum_is_refused() -> anyhow::Result<()> {
    // One signature of three: not a majority.
    let mut f = federation(
        &[("20", "Lạng Sơn"), ("24", "Bắc Ninh"), ("01", "Hà Nội")],
        1,
        AGREEMENT,
    )?;
    let shown = run_ok(&[
        "federation",
        "show",
        "--file",
        &f.nodes[0]
            .path()
            .join("manifest.json")
            .display()
            .to_string(),
    ])?;
    assert!(shown.contains("not in force"), "{shown}");
    let err = f.nodes[0].start().unwrap_err().to_string();
    assert!(err.contains("federation.manifest"), "{err}");
    Ok(())
}

/// Issue 4 item 4: a field the agreement withholds from a recipient reaches
/// it only as a salted commitment inside the signed entry; a recipient
/// allowed to see it gets the value and checks it against the commitment;
/// both verify the same signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_fields_reach_only_the_recipients_allowed_to_see_them() -> anyhow::Result<()> {
    const REDACTING: &str = r#"
[agreement]
[[agreement.rules]]
name = "all-but-ids-only-to-bac-ninh"
audience = "all"
handling = "H1"
redact = [{ field = "person.citizen_id", except_to = ["24"] }]
"#;
    let mut f = federation(
        &[("20", "Lạng Sơn"), ("24", "Bắc Ninh"), ("01", "Hà Nội")],
        3,
        REDACTING,
    )?;
    f.start_all()?;
    let mut alert = sample_alert("ls-person-1");
    alert.subjects.push(pb::Subject {
        kind: Some(pb::subject::Kind::Person(pb::Person {
            citizen_id: "020085012345".into(),
            full_name: "Hoàng Văn Thắng".into(),
        })),
    });
    let sent = f.nodes[0]
        .alerts()
        .await?
        .submit(pb::SubmitAlertRequest { alert: Some(alert) })
        .await?
        .into_inner();

    let citizen_id = |e: &pb::StoredEntry| -> (String, Vec<String>) {
        let Some(pb::entry_body::Payload::Alert(a)) =
            e.body.as_ref().and_then(|b| b.payload.clone())
        else {
            panic!("not an alert")
        };
        let signed = a.subjects.iter().find_map(|s| match &s.kind {
            Some(pb::subject::Kind::Person(p)) => Some(p.citizen_id.clone()),
            _ => None,
        });
        (
            signed.unwrap_or_default(),
            e.openings.iter().map(|o| o.value.clone()).collect(),
        )
    };
    // The author keeps the value as an opening; the signed body has none.
    let at_author = f.nodes[0]
        .alerts()
        .await?
        .get(pb::GetEntryRequest {
            key: Some(Key::EntryId(sent.entry_id.clone())),
        })
        .await?
        .into_inner();
    assert_eq!(
        citizen_id(&at_author),
        (String::new(), vec!["020085012345".to_owned()])
    );
    // 24 may see it: it gets the opening, and can search by it.
    let at_bn = wait_for(&f.nodes[1], &sent.entry_id).await?;
    assert_eq!(
        citizen_id(&at_bn),
        (String::new(), vec!["020085012345".to_owned()])
    );
    let found = f.nodes[1]
        .alerts()
        .await?
        .query(pb::QueryRequest {
            subject_id: "020085012345".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(found.entries.len(), 1);
    // 01 may not: the same signed entry, only the commitment.
    let at_hn = wait_for(&f.nodes[2], &sent.entry_id).await?;
    assert_eq!(citizen_id(&at_hn), (String::new(), Vec::<String>::new()));
    let Some(pb::entry_body::Payload::Alert(a)) = at_hn.body.and_then(|b| b.payload) else {
        panic!()
    };
    assert_eq!(a.redacted.len(), 1);
    assert_eq!(a.redacted[0].field, "subjects[2].person.citizen_id");
    let found = f.nodes[2]
        .alerts()
        .await?
        .query(pb::QueryRequest {
            subject_id: "020085012345".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        found.entries.is_empty(),
        "01 can search for a citizen id it was not given"
    );
    assert_eq!(
        at_hn.envelope, at_bn.envelope,
        "every recipient holds the same signed bytes"
    );
    Ok(())
}

/// Issue 4 item 1: 75 Đồng Nai joins through a bilateral agreement with
/// 01 Hà Nội as manifest version 2, signed by the quorum of version 1;
/// after the members load it, entries flow to and from the new member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_joins_through_a_signed_manifest_change() -> anyhow::Result<()> {
    let mut f = federation(&[("01", "Hà Nội"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    f.start_all()?;
    let manifest = f.dir.path().join("manifest.json");
    let m = manifest.display().to_string();

    // Version 2 = version 1 + member 75.
    let mut dong_nai = Node::init("75", "Đồng Nai")?;
    let port = lienthong_tests::free_port();
    let v2 = std::fs::read_to_string(f.dir.path().join("manifest.toml"))?
        .replace("version = 1", "version = 2")
        + "\n"
        + &run_ok(&[
            "federation",
            "member",
            "--config",
            &dong_nai.config_arg(),
            "--endpoint",
            &format!("127.0.0.1:{port}"),
        ])?;
    let v2_path = f.dir.path().join("manifest-v2.toml");
    std::fs::write(&v2_path, v2)?;
    manifest_cmd("propose", "--toml", &v2_path.display().to_string(), &m)?;
    // 75's own signature does not count: only version 1's members can admit it.
    manifest_cmd("sign", "--config", &dong_nai.config_arg(), &m)?;
    manifest_cmd("sign", "--config", &f.nodes[0].config_arg(), &m)?;
    assert!(
        run_ok(&["federation", "show", "--file", &m])?.contains("not in force"),
        "one of two v1 signatures is not a majority"
    );
    manifest_cmd("sign", "--config", &f.nodes[1].config_arg(), &m)?;
    assert!(run_ok(&["federation", "show", "--file", &m])?.contains("in force: version 2"));

    // Version 2 is handed to 01 only, while everyone runs: 01 adopts it
    // from its file, 24 fetches it from 01 and checks the quorum itself.
    manifest_cmd("publish", "--config", &f.nodes[0].config_arg(), &m)?;
    for n in &f.nodes {
        wait_for_manifest(n, 2).await?;
    }
    dong_nai.join_federation(port, &manifest)?;
    dong_nai.start()?;

    let from_hn = f.nodes[0]
        .alerts()
        .await?
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("hn-1")),
        })
        .await?
        .into_inner();
    let got = wait_for(&dong_nai, &from_hn.entry_id).await?;
    assert_eq!(got.body.unwrap().manifest_version, 2);
    let from_dn = dong_nai
        .alerts()
        .await?
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("dn-1")),
        })
        .await?
        .into_inner();
    wait_for(&f.nodes[0], &from_dn.entry_id).await?;
    wait_for(&f.nodes[1], &from_dn.entry_id).await?;
    Ok(())
}

/// `lienthong federation CMD FLAG VALUE --file MANIFEST`.
pub(crate) fn manifest_cmd(
    cmd: &str,
    flag: &str,
    value: &str,
    manifest: &str,
) -> anyhow::Result<String> {
    run_ok(&["federation", cmd, flag, value, "--file", manifest])
}

/// The first node makes a new key (keys/signing-2.pem, beside its key);
/// manifest version 2 lists it in place of the old one and the first two
/// nodes sign it (a majority of three). Returns (old vkey, new vkey).
fn new_key_in_version_2(f: &lienthong_tests::Federation) -> anyhow::Result<(String, String)> {
    let m = f.dir.path().join("manifest.json").display().to_string();
    let new_key = f.nodes[0].path().join("keys/signing-2.pem");
    let vkey_new = run_ok(&[
        "key",
        "new",
        "--config",
        &f.nodes[0].config_arg(),
        "--out",
        &new_key.display().to_string(),
    ])?;
    let vkey_old = f.nodes[0].vkey()?;
    let toml = std::fs::read_to_string(f.dir.path().join("manifest.toml"))?;
    let v2 = toml
        .replace("version = 1", "version = 2")
        .replace(vkey_old.trim(), vkey_new.trim());
    anyhow::ensure!(v2.contains(vkey_new.trim()), "new key not in v2");
    let v2_path = f.dir.path().join("manifest-v2.toml");
    std::fs::write(&v2_path, v2)?;
    manifest_cmd("propose", "--toml", &v2_path.display().to_string(), &m)?;
    for n in 0..2 {
        manifest_cmd("sign", "--config", &f.nodes[n].config_arg(), &m)?;
    }
    Ok((vkey_old, vkey_new))
}

async fn submit(node: &Node, reference: &str) -> anyhow::Result<pb::SubmitAlertResponse> {
    Ok(node
        .alerts()
        .await?
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert(reference)),
        })
        .await?
        .into_inner())
}

/// Waits until `node` has adopted manifest `version` (it rewrites its
/// manifest file when it does).
pub(crate) async fn wait_for_manifest(node: &Node, version: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let path = node.path().join("manifest.json");
    loop {
        let show = run_ok(&["federation", "show", "--file", &path.display().to_string()])?;
        if show.contains(&format!("in force: version {version} ")) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not adopt manifest version {version} within 20 s:\n{show}\n{}",
            node.member,
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 4 item 1: a member rotates its signing key through a manifest
/// change while the federation runs. A peer that was down during the
/// rotation comes back on the old manifest, learns the new version from the
/// others, and verifies entries signed before the rotation with the old key
/// and entries after it with the new one; the rotated node's store accepts
/// its own checkpoints signed with the old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_rotates_its_key_and_a_peer_that_was_away_verifies_both() -> anyhow::Result<()> {
    let mut f = federation(
        &[("24", "Bắc Ninh"), ("01", "Hà Nội"), ("20", "Lạng Sơn")],
        2,
        AGREEMENT_ALL,
    )?;
    f.start_all()?;
    let m = f.dir.path().join("manifest.json").display().to_string();
    let first = submit(&f.nodes[0], "bn-before-1").await?;
    wait_for(&f.nodes[2], &first.entry_id).await?;

    // 20 goes away; 24 writes under the old key meanwhile.
    f.nodes[2].stop()?;
    let before = submit(&f.nodes[0], "bn-before-2").await?;
    wait_for(&f.nodes[1], &before.entry_id).await?;

    // 24 stops for the rotation; 01 writes under version 1 meanwhile, so
    // 24 will acknowledge a version-1 entry after its key changed.
    f.nodes[0].stop()?;
    let hn = submit(&f.nodes[1], "hn-while-24-rotates").await?;

    // 24 makes a new key; version 2 lists it; 24 and 01 sign (a majority
    // of three). It is handed to 01 (running) and to 24's own file.
    let (vkey_old, vkey_new) = new_key_in_version_2(&f)?;
    manifest_cmd("publish", "--config", &f.nodes[1].config_arg(), &m)?;
    manifest_cmd("publish", "--config", &f.nodes[0].config_arg(), &m)?;
    wait_for_manifest(&f.nodes[1], 2).await?;

    // 24 restarts with the new key; its store holds checkpoints signed
    // with the old one, which it must accept.
    let cfg = std::fs::read_to_string(f.nodes[0].config())?;
    let cfg = cfg.replace("keys/signing-key.pem", "keys/signing-2.pem");
    anyhow::ensure!(cfg.contains("signing-2.pem"), "config key path");
    std::fs::write(f.nodes[0].config(), cfg)?;
    f.nodes[0].start()?;
    assert_eq!(f.nodes[0].vkey()?.trim(), vkey_new.trim());
    let after = submit(&f.nodes[0], "bn-after-1").await?;
    wait_for(&f.nodes[1], &after.entry_id).await?;
    // Its receipt for 01's version-1 entry is signed under version 2.
    wait_for(&f.nodes[0], &hn.entry_id).await?;

    // 20 comes back still holding version 1 only.
    f.nodes[2].start()?;
    for id in [&before.entry_id, &after.entry_id] {
        let e = wait_for(&f.nodes[2], id).await?;
        assert_eq!(e.body.unwrap_or_default().author, "24");
    }
    wait_for_manifest(&f.nodes[2], 2).await?;
    let got = wait_for(&f.nodes[2], &after.entry_id).await?;
    assert_eq!(got.body.unwrap().manifest_version, 2);
    let old = wait_for(&f.nodes[2], &before.entry_id).await?;
    assert_eq!(old.body.unwrap().manifest_version, 1);

    // An auditor with the old vkey and the manifest verifies the whole feed.
    let out = run_ok(&[
        "feed",
        "verify",
        "--config",
        &f.nodes[0].config_arg(),
        "--vkey",
        vkey_old.trim(),
        "--manifest",
        &m,
    ])?;
    assert!(out.contains("VERIFIED"), "{out}");
    // Without the manifest, the old key alone cannot vouch for the new
    // checkpoint.
    let out = lienthong_tests::lienthong(&[
        "feed",
        "verify",
        "--config",
        &f.nodes[0].config_arg(),
        "--vkey",
        vkey_old.trim(),
    ])?;
    assert!(!out.status.success());
    Ok(())
}

/// Handshakes with a member's Federation port presenting `identity` and
/// expecting the member's pinned key; `Ok` only if the server accepts.
async fn peer_handshake(
    addr: &str,
    identity: &lienthong_federation::tls::TlsIdentity,
    server_pin: lienthong_federation::tls::SpkiPin,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = lienthong_federation::tls::client_config(identity, server_pin)?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(
            rustls_pki_types::ServerName::try_from("peer.lienthong.invalid")?,
            tcp,
        )
        .await?;
    // TLS 1.3 reports a refused client certificate on the first read. An
    // accepted peer gets the server's HTTP/2 SETTINGS in answer to the
    // client preface and an empty SETTINGS frame, so accepting is seen as
    // soon as it happens, and a slow refusal is not taken for acceptance.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await?;
    tls.flush().await?;
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(15), tls.read(&mut buf)).await {
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(0)) => Err(anyhow::anyhow!("closed by the server")),
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(anyhow::anyhow!("no answer within 15 s")),
    }
}

/// Issue 4 item 2 / issue 8 item 7: the Federation port refuses a peer whose
/// key is not pinned in the manifest, and a local API client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federation_port_refuses_unpinned_peers_and_local_clients() -> anyhow::Result<()> {
    let mut f = federation(&[("01", "Hà Nội"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    f.nodes[0].start()?;
    let cfg = std::fs::read_to_string(f.nodes[0].config())?;
    let port = cfg
        .lines()
        .find_map(|l| {
            l.strip_prefix("listen = \"127.0.0.1:")
                .and_then(|r| r.split('"').next())
                .filter(|p| p.parse::<u16>().ok() != Some(f.nodes[0].port))
        })
        .expect("federation port");
    let addr = format!("127.0.0.1:{port}");
    let read = |p: &str| std::fs::read_to_string(f.nodes[0].path().join(p));
    let server_pin = lienthong_federation::tls::TlsIdentity {
        cert_pem: read("tls/peer-cert.pem")?,
        key_pem: String::new(),
    }
    .pin()?;

    // The pinned member 24 is accepted.
    let member = lienthong_federation::tls::TlsIdentity {
        cert_pem: std::fs::read_to_string(f.nodes[1].path().join("tls/peer-cert.pem"))?,
        key_pem: std::fs::read_to_string(f.nodes[1].path().join("tls/peer-key.pem"))?,
    };
    peer_handshake(&addr, &member, server_pin).await?;
    // A key nobody pinned is refused.
    let stranger = lienthong_federation::tls::TlsIdentity::generate(
        "24",
        time::OffsetDateTime::now_utc(),
        30,
    )?;
    assert!(
        peer_handshake(&addr, &stranger, server_pin).await.is_err(),
        "an unpinned peer was accepted"
    );
    // The node's own local API client certificate is not a peer.
    let local = lienthong_federation::tls::TlsIdentity {
        cert_pem: read("clients/admin-cert.pem")?,
        key_pem: read("clients/admin-key.pem")?,
    };
    assert!(
        peer_handshake(&addr, &local, server_pin).await.is_err(),
        "a local API client was accepted as a peer"
    );
    Ok(())
}

/// Nothing lost, nothing doubled when the receiver is killed (SIGKILL)
/// while entries stream to it: its cursor and the stored entries are
/// written in one durable batch, so it resumes exactly where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_mid_stream_resumes_without_loss_or_duplicates() -> anyhow::Result<()> {
    let mut f = federation(&[("20", "Lạng Sơn"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    f.start_all()?;
    let channel = f.nodes[0].channel().await?;
    let mut ids = Vec::new();
    for round in 0..3 {
        let mut tasks = Vec::new();
        for c in 0..8 {
            let mut client = pb::alerts_client::AlertsClient::new(channel.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for k in 0..40 {
                    let r = client
                        .submit(pb::SubmitAlertRequest {
                            alert: Some(sample_alert(&format!("k{round}-{c}-{k}"))),
                        })
                        .await?;
                    out.push(r.into_inner().entry_id);
                }
                anyhow::Ok(out)
            }));
        }
        // Kill the receiver while the author is still writing.
        tokio::time::sleep(Duration::from_millis(60)).await;
        f.nodes[1].kill9();
        for t in tasks {
            ids.extend(t.await??);
        }
        f.nodes[1].start()?;
    }
    for id in &ids {
        wait_for(&f.nodes[1], id).await?;
    }
    let mut bn = f.nodes[1].alerts().await?;
    let mut seen = std::collections::HashSet::new();
    let mut token = String::new();
    loop {
        let page = bn
            .query(pb::QueryRequest {
                author: "20".into(),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        for e in &page.entries {
            assert!(seen.insert(e.entry_id.clone()), "an entry was stored twice");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen.len(),
        ids.len(),
        "every acknowledged entry arrived exactly once"
    );
    Ok(())
}

/// Issue 9 item 5: a member rotates its signing key through a manifest
/// change while it runs and clients keep submitting; no entry is refused by
/// a peer, and a restart with the old config still signs with the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_rotates_its_key_without_a_restart() -> anyhow::Result<()> {
    let mut f = federation(
        &[("24", "Bắc Ninh"), ("01", "Hà Nội"), ("20", "Lạng Sơn")],
        2,
        AGREEMENT_ALL,
    )?;
    f.start_all()?;
    let m = f.dir.path().join("manifest.json").display().to_string();
    let first = submit(&f.nodes[0], "hot-before").await?;
    wait_for(&f.nodes[1], &first.entry_id).await?;

    // Clients keep submitting at 24 throughout the rotation: until 20 more
    // each once 24 uses version 2 (at most 3,000 each, about 30 s).
    let switched = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for k in 0..2 {
        let mut c = f.nodes[0].alerts().await?;
        let switched = switched.clone();
        load.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut after_switch = 0;
            for i in 0..3_000 {
                if switched.load(std::sync::atomic::Ordering::SeqCst) {
                    after_switch += 1;
                    if after_switch > 20 {
                        break;
                    }
                }
                let r = c
                    .submit(pb::SubmitAlertRequest {
                        alert: Some(sample_alert(&format!("hot-{k}-{i}"))),
                    })
                    .await?
                    .into_inner();
                ids.push(r.entry_id);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(ids)
        }));
    }

    // The new key is made beside the old one; version 2 lists it; 24 and 01
    // sign; it is handed to the running 24.
    let (vkey_old, _new) = new_key_in_version_2(&f)?;
    manifest_cmd("publish", "--config", &f.nodes[0].config_arg(), &m)?;
    wait_for_manifest(&f.nodes[0], 2).await?;
    switched.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut ids = Vec::new();
    for t in load {
        ids.extend(t.await??);
    }
    let after = submit(&f.nodes[0], "hot-after").await?;
    // Every entry, before, during and after the switch, reaches both peers.
    for n in [&f.nodes[1], &f.nodes[2]] {
        for id in ids.iter().chain([&first.entry_id, &after.entry_id]) {
            wait_for(n, id).await?;
        }
        let st = n
            .audit()
            .await?
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        let p24 = st.peers.iter().find(|p| p.member == "24").unwrap();
        assert_eq!(
            p24.refused, 0,
            "{} refused deliveries of 24: {p24:?}",
            n.member
        );
    }
    let got = wait_for(&f.nodes[1], &after.entry_id).await?;
    assert_eq!(got.body.unwrap().manifest_version, 2);
    // The switch happened while clients were submitting: entries of both
    // versions (signed with the old and the new key) came from the load.
    let mut versions = std::collections::BTreeSet::new();
    for id in &ids {
        versions.insert(
            wait_for(&f.nodes[1], id)
                .await?
                .body
                .unwrap()
                .manifest_version,
        );
    }
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        [1, 2],
        "the load did not span the switch"
    );
    assert!(
        f.nodes[0]
            .log()
            .contains("rotated this member's signing key without a restart"),
        "{}",
        f.nodes[0].log()
    );

    // The config still names the old key; a restart signs with the new one.
    f.nodes[0].stop()?;
    f.nodes[0].start()?;
    let again = submit(&f.nodes[0], "hot-after-restart").await?;
    wait_for(&f.nodes[2], &again.entry_id).await?;
    let out = run_ok(&[
        "feed",
        "verify",
        "--config",
        &f.nodes[0].config_arg(),
        "--vkey",
        vkey_old.trim(),
        "--manifest",
        &m,
    ])?;
    assert!(out.contains("VERIFIED"), "{out}");
    Ok(())
}
