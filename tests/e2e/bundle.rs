//! Issue 6 items 3–4: each member exports an audit bundle from its running
//! node; an auditor holding one member's vkey verifies them together,
//! including the cross-check of every sender's feed against the
//! receivers' receipts, and any altered byte is caught.

use std::time::Duration;

use lienthong_proto::v1 as pb;
use lienthong_tests::{AGREEMENT_ALL, federation, lienthong, run_ok, sample_alert};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_from_three_members_verify_together_and_tampering_is_named() -> anyhow::Result<()> {
    let mut f = federation(
        &[("01", "Hà Nội"), ("24", "Bắc Ninh"), ("20", "Lạng Sơn")],
        2,
        AGREEMENT_ALL,
    )?;
    f.start_all()?;
    let mut sent = Vec::new();
    for n in &f.nodes {
        for i in 0..3 {
            let r = n
                .alerts()
                .await?
                .submit(pb::SubmitAlertRequest {
                    alert: Some(sample_alert(&format!("b-{}-{i}", n.member))),
                })
                .await?
                .into_inner();
            sent.push((n.member.clone(), r.entry_id));
        }
    }
    // Every alert reaches the two others, each acknowledged by a receipt,
    // all checkpointed and cosigned.
    f.settle(&sent, Duration::from_secs(30)).await?;
    let dir = f.dir.path();
    let bundles = f.export_bundles()?;
    let vkey = f.nodes[0].vkey()?.trim().to_owned();
    let (out, r) = f.verify_bundles(&bundles, &vkey)?;
    assert!(out.contains("VERIFIED"), "{out}");
    assert_eq!(r["verdict"], "pass", "{r:#}");
    // 9 alerts, each for 2 receivers, each with its receipt.
    assert_eq!(r["deliveries"]["expected"], 18, "{:#}", r["deliveries"]);
    assert_eq!(r["deliveries"]["delivered"], 18, "{:#}", r["deliveries"]);
    assert_eq!(r["deliveries"]["missing"], 0);

    // One byte changed anywhere in a bundle is caught and named.
    let original = std::fs::read(&bundles[1])?;
    for at in [original.len() / 5, original.len() / 2, original.len() - 40] {
        let mut bad = original.clone();
        bad[at] ^= 0x01;
        let tampered = dir.join("tampered.ltb");
        std::fs::write(&tampered, &bad)?;
        let t = tampered.display().to_string();
        let out = lienthong(&[
            "audit",
            "verify",
            &bundles[0],
            &t,
            &bundles[2],
            "--vkey",
            &vkey,
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "byte {at} flipped but verified:\n{text}"
        );
        assert!(text.contains("FAILED"), "byte {at}: {text}");
    }
    // A bundle left out: the receipts the others expect from it are not
    // checkable, never counted as delivered.
    let out = run_ok(&["audit", "verify", &bundles[0], "--vkey", &vkey])?;
    assert!(out.contains("VERIFIED"), "{out}");
    Ok(())
}
