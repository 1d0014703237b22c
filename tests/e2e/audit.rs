//! What an auditor checks, trusting only the member's vkey.

use std::time::Duration;

use lienthong_log::Hash;
use lienthong_proto::v1 as pb;
use lienthong_tests::{Node, sample_alert};

fn hashes(v: &[Vec<u8>]) -> Vec<Hash> {
    v.iter()
        .map(|h| Hash(h.as_slice().try_into().expect("32 bytes")))
        .collect()
}

async fn checkpoint_of_size(
    audit: &mut pb::audit_client::AuditClient<tonic::transport::Channel>,
    size: u64,
) -> anyhow::Result<pb::GetCheckpointResponse> {
    for _ in 0..200 {
        if let Ok(cp) = audit
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await
        {
            let cp = cp.into_inner();
            if cp.size >= size {
                return Ok(cp);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("no checkpoint of size {size} within 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_entries_and_proofs_verify_with_the_vkey_alone() -> anyhow::Result<()> {
    let mut node = Node::init("15", "Lào Cai")?;
    node.start()?;
    let vkey = node.vkey()?;
    assert!(
        vkey.starts_with("lienthong.example/bac-bo-11/15+"),
        "{vkey}"
    );
    let (_, _, key) = lienthong_log::parse_vkey(&vkey)?;
    let mut alerts = node.alerts().await?;
    let mut audit = node.audit().await?;

    for i in 0..7 {
        alerts
            .submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&format!("lc-{i}"))),
            })
            .await?;
    }
    let first = checkpoint_of_size(&mut audit, 7).await?;
    let cp1 = lienthong_log::verify_checkpoint(first.signed_note.as_bytes(), &vkey)?;
    assert_eq!(cp1.size(), 7);
    assert_eq!(cp1.origin(), "lienthong.example/bac-bo-11/15");

    // A tampered note does not verify.
    let tampered = first.signed_note.replacen("\n7\n", "\n8\n", 1);
    assert!(lienthong_log::verify_checkpoint(tampered.as_bytes(), &vkey).is_err());

    for i in 7..20 {
        alerts
            .submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&format!("lc-{i}"))),
            })
            .await?;
    }
    let second = checkpoint_of_size(&mut audit, 20).await?;
    let cp2 = lienthong_log::verify_checkpoint(second.signed_note.as_bytes(), &vkey)?;

    // Every entry: signature by the member, index, inclusion under cp2.
    let envs = audit
        .get_entries(pb::GetEntriesRequest {
            start: 0,
            end: cp2.size(),
        })
        .await?
        .into_inner()
        .envelopes;
    assert_eq!(envs.len() as u64, cp2.size());
    for (i, env) in envs.iter().enumerate() {
        let e = lienthong_core::entry::verify_envelope(env, "15", &key)?;
        assert_eq!(e.index(), i as u64);
        let p = audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                index: i as u64,
                tree_size: cp2.size(),
            })
            .await?
            .into_inner();
        assert_eq!(p.leaf_hash, e.id().0.to_vec());
        lienthong_log::verify_inclusion(
            i as u64,
            cp2.size(),
            Hash(e.id().0),
            &hashes(&p.hashes),
            cp2.root(),
        )?;
        // The same proof does not prove a different entry.
        assert!(
            lienthong_log::verify_inclusion(
                i as u64,
                cp2.size(),
                Hash([7; 32]),
                &hashes(&p.hashes),
                cp2.root()
            )
            .is_err()
        );
    }
    // The feed only grew between the two checkpoints.
    let c = audit
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            old_size: cp1.size(),
            new_size: cp2.size(),
        })
        .await?
        .into_inner();
    lienthong_log::verify_consistency(
        cp1.size(),
        cp1.root(),
        cp2.size(),
        cp2.root(),
        &hashes(&c.hashes),
    )?;

    // Asking beyond the checkpoint is a clear OUT_OF_RANGE / INVALID_ARGUMENT.
    let e = audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            index: 0,
            tree_size: 1_000,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange);
    let e = audit
        .get_entries(pb::GetEntriesRequest {
            start: 5,
            end: 1_000,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // The CLI verifier agrees, and proves consistency with a saved checkpoint.
    let saved = node.path().join("cp1.txt");
    std::fs::write(&saved, &first.signed_note)?;
    let report = node.feed_verify(Some(&saved))?;
    assert!(report.contains("VERIFIED"), "{report}");
    Ok(())
}
