//! Honest bundles verify, and the report says what was checked.

use std::io::Cursor;

use lienthong_audit::{
    BundleInput, BundleReader, BundleWriter, Check, Report, VerifyOptions, WriteError,
    compact_prefix, verify,
};
use lienthong_log::{consistency_proof, leaf_hash};
use lienthong_proto::v1::{
    ConsistencyProof, Equivocation, Evidence, RefusedEntry, bundle_record::Record, evidence,
};

use crate::fed::{HOUR, Sim, anchor, origin};
use crate::{assert_fails, assert_pass, check, check_with};

fn all_three(s: &Sim) -> Vec<(String, Vec<u8>)> {
    ["01", "20", "24"]
        .iter()
        .map(|c| (format!("{c}.bundle"), s.bundle(c)))
        .collect()
}

fn as_refs(v: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    v.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect()
}

#[test]
fn three_members_bundles_verify_together() {
    let s = Sim::exchange();
    let bundles = all_three(&s);
    let r = check(&as_refs(&bundles), &[anchor("01", 0)]);
    assert_pass(&r);
    assert!(r.warnings.is_empty(), "{r}");
    let own: u64 = ["01", "20", "24"].iter().map(|c| s.feed(c).size()).sum();
    let received: u64 = ["01", "20", "24"]
        .iter()
        .map(|c| s.feed(c).received.len() as u64)
        .sum();
    assert_eq!(r.count(Check::EntrySignature).passed, own + received);
    assert_eq!(r.count(Check::EntryPosition).passed, own);
    assert_eq!(r.count(Check::Inclusion).passed, received);
    assert_eq!(r.count(Check::BundleSignature).passed, 3);
    assert_eq!(r.count(Check::Cosignature).passed, 3);
    assert_eq!(r.count(Check::TrustAnchor).passed, 1);
    // Every alert addressed to a peer reached it, and every feed is whole.
    let d = r.deliveries;
    assert_eq!(d.expected, 7, "{r}");
    assert_eq!(
        (d.delivered, d.late, d.missing, d.not_checkable),
        (7, 0, 0, 0)
    );
    assert_eq!(d.receipts_unmatched, 0);
    for f in &r.feeds {
        assert_eq!(f.checkpoint_groups, 1, "{r}");
        assert_eq!(f.segments.len(), 1);
    }
    // The report survives JSON both ways.
    let json = serde_json::to_string_pretty(&r).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert!(json.contains("\"verdict\": \"pass\""));
    assert!(json.contains("\"entry_signature\""));
}

#[test]
fn one_bundle_alone_verifies_its_feed_and_uses_receipts_it_received() {
    let s = Sim::exchange();
    let b = s.bundle("20");
    let r = check(&[("20.bundle", &b)], &[anchor("20", 0)]);
    assert_pass(&r);
    // 20's alerts to 01 and 24 are acknowledged by the receipts 20 holds.
    assert_eq!(r.deliveries.expected, 4, "{r}");
    assert_eq!(r.deliveries.delivered, 4, "{r}");
    // Alone, 20 has no checkpoint of 01 linking the ones it received.
    assert!(r.feeds.iter().any(|f| f.member == "01"));
}

#[test]
fn progress_reaches_every_record_and_byte() {
    let s = Sim::exchange();
    let b = s.bundle("01");
    let total = BundleReader::new(Cursor::new(&b)).count() as u64;
    let mut seen = Vec::new();
    let r = verify(
        vec![BundleInput {
            name: "01.bundle".into(),
            reader: Cursor::new(b.clone()),
        }],
        &[anchor("01", 0)],
        &VerifyOptions::default(),
        &mut |p| seen.push(p),
    );
    assert_pass(&r);
    let last = seen.last().expect("progress was reported");
    let front = 1 + s.chain.len() as u64; // header and manifests, read first
    assert_eq!(last.records + front, total);
    assert!(seen.windows(2).all(|w| w[0].records <= w[1].records));
    assert!(last.bytes < b.len() as u64 && last.bytes > b.len() as u64 / 2);
}

#[test]
fn a_key_rotation_mid_feed_verifies_and_reports_both_keys() {
    let mut s = Sim::new(&["01", "20", "24"]);
    s.alert("20", &["01"]);
    s.settle();
    s.rotate("20");
    s.alert("20", &["01", "24"]);
    s.settle();
    s.rotate("01");
    s.alert("01", &["20"]);
    s.settle();
    assert_eq!(s.version(), 3);
    let bundles = all_three(&s);
    let r = check(&as_refs(&bundles), &[anchor("24", 0)]);
    assert_pass(&r);
    assert_eq!(r.manifest_versions, 3);
    let feed20 = r.feeds.iter().find(|f| f.member == "20").unwrap();
    assert_eq!(feed20.checkpoint_keys.len(), 2, "{r}");
    assert_eq!(feed20.checkpoint_keys[0].last_version, 1);
    assert_eq!(feed20.checkpoint_keys[1].first_version, 2);
    // The old key alone is no trust anchor for a chain it does not end.
    let r = check(&as_refs(&bundles), &[anchor("20", 0)]);
    assert_pass(&r);
    assert_eq!(r.anchors[0].listed_in_versions, vec![1]);
}

#[test]
fn a_segment_starting_mid_feed_verifies_from_its_prefix() {
    let s = Sim::exchange();
    let size = s.feed("20").size();
    for from in [1, 3, 5, size - 1] {
        let records = s.records("20", from);
        let b = s.encode("20", &records);
        let r = check(&[("20.bundle", &b)], &[anchor("01", 0)]);
        assert_pass(&r);
        assert_eq!(
            r.feeds.iter().find(|f| f.member == "20").unwrap().segments[0].start,
            from
        );
    }
    // A wrong prefix hash is caught by the first checkpoint.
    let mut records = s.records("20", 5);
    for rec in &mut records {
        if let Record::SegmentStart(st) = rec {
            st.prefix[0][0] ^= 1;
        }
    }
    let b = s.encode("20", &records);
    let r = check(&[("20.bundle", &b)], &[anchor("01", 0)]);
    assert_fails(&r, Check::SegmentRoot);
}

#[test]
fn the_exporters_prefix_helper_matches_the_feed() {
    let s = Sim::exchange();
    let feed = s.feed("20");
    let n = feed.size() - 1;
    let prefix = compact_prefix(n, &feed.store).unwrap();
    let mut range = lienthong_audit::CompactRange::from_prefix(n, prefix).unwrap();
    assert_eq!(
        range.root(),
        lienthong_log::tree_root(n, &feed.store).unwrap()
    );
    range.append(leaf_hash(&feed.envelopes[n as usize]));
    assert_eq!(range.root(), feed.store.root().unwrap());
}

#[test]
fn a_late_receipt_is_a_warning_not_a_failure() {
    let mut s = Sim::new(&["01", "20"]);
    let i = s.alert("20", &["01"]);
    s.checkpoint("20");
    s.now += 2 * HOUR;
    s.deliver("20", i, "01");
    s.settle();
    let r = check(
        &[("20", &s.bundle("20")), ("01", &s.bundle("01"))],
        &[anchor("01", 0)],
    );
    assert_pass(&r);
    assert_eq!(r.deliveries.late, 1);
    assert!(r.warnings.iter().any(|w| w.check == Check::Delivery
        && w.message.contains("later than the allowed 1 h")));
    // A looser limit makes it on time.
    let opts = VerifyOptions {
        late_after: std::time::Duration::from_secs(3 * 3600),
        ..VerifyOptions::default()
    };
    let r = check_with(
        &[("20", &s.bundle("20")), ("01", &s.bundle("01"))],
        &[anchor("01", 0)],
        &opts,
    );
    assert_eq!(r.deliveries.late, 0);
}

#[test]
fn a_recipient_whose_feed_ends_too_soon_is_not_checkable() {
    let mut s = Sim::new(&["01", "20"]);
    s.alert("01", &[]);
    s.settle();
    s.alert("20", &["01"]);
    s.checkpoint("20");
    // 01 never receives it, but 01's exported feed ends before the hour.
    let r = check(
        &[("20", &s.bundle("20")), ("01", &s.bundle("01"))],
        &[anchor("01", 0)],
    );
    assert_pass(&r);
    assert_eq!(r.deliveries.not_checkable, 1, "{r}");
    assert_eq!(r.deliveries.missing, 0);
}

#[test]
fn consistency_proofs_link_checkpoints_held_by_a_receiver() {
    let mut s = Sim::new(&["01", "20"]);
    let a = s.alert("20", &["01"]);
    s.checkpoint("20");
    s.deliver("20", a, "01");
    s.alert("20", &[]);
    let b = s.alert("20", &["01"]);
    s.checkpoint("20");
    s.deliver("20", b, "01");
    s.checkpoint("01");
    // 01 holds 20's checkpoints of sizes 1 and 3; nothing links them.
    let records = s.records("01", 0);
    let r = check(&[("01", &s.encode("01", &records))], &[anchor("01", 0)]);
    assert_pass(&r);
    let f20 = r.feeds.iter().find(|f| f.member == "20").unwrap();
    assert_eq!(f20.checkpoint_groups, 2, "{r}");
    assert!(
        r.warnings.iter().any(|w| w.check == Check::Consistency),
        "{r}"
    );

    let proof = consistency_proof(1, 3, &s.feed("20").store).unwrap();
    let mut linked = records.clone();
    linked.push(Record::ConsistencyProof(ConsistencyProof {
        author: "20".into(),
        old_size: 1,
        new_size: 3,
        hashes: proof.iter().map(|h| h.0.to_vec()).collect(),
    }));
    let r = check(&[("01", &s.encode("01", &linked))], &[anchor("01", 0)]);
    assert_pass(&r);
    assert_eq!(r.count(Check::Consistency).passed, 3);
    let f20 = r.feeds.iter().find(|f| f.member == "20").unwrap();
    assert_eq!(f20.checkpoint_groups, 1, "{r}");
    assert!(r.warnings.is_empty(), "{r}");

    // An altered proof is a failure.
    let mut bad = linked.clone();
    if let Some(Record::ConsistencyProof(p)) = bad.last_mut() {
        p.hashes[0][5] ^= 0x40;
    }
    let r = check(&[("01", &s.encode("01", &bad))], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::Consistency);
    assert!(f[0].message.contains("does not connect"), "{r}");
}

#[test]
fn evidence_is_re_verified() {
    let mut s = Sim::new(&["01", "20", "24"]);
    s.alert("20", &["01"]);
    s.settle();
    let good = s.feed("20").latest().unwrap().1.clone();
    // 20 signs a second tree of the same size: equivocation.
    let forged = {
        let signer = lienthong_log::NoteSigner::new(&origin("20"), s.key_of("20")).unwrap();
        let head = lienthong_log::TreeHead {
            origin: origin("20"),
            size: s.feed("20").size(),
            root: lienthong_log::Hash([9; 32]),
        };
        lienthong_log::sign_checkpoint(&head, &signer).unwrap()
    };
    let with = |e: Evidence| {
        let mut records = s.records("01", 0);
        records.push(Record::Evidence(e));
        s.encode("01", &records)
    };
    let equivocation = |first: &str, second: &str| Evidence {
        recorded_by: "01".into(),
        recorded_unix_ms: s.now,
        kind: Some(evidence::Kind::Equivocation(Equivocation {
            member: "20".into(),
            first_note: first.into(),
            second_note: second.into(),
        })),
    };
    let r = check(
        &[("01", &with(equivocation(&good, &forged)))],
        &[anchor("01", 0)],
    );
    let f = assert_fails(&r, Check::Evidence);
    assert!(f[0].message.contains("misbehaviour confirmed"), "{r}");
    assert_eq!(f[0].at.author.as_deref(), Some("20"));
    // The same note twice proves nothing: the evidence is invalid.
    let r = check(
        &[("01", &with(equivocation(&good, &good)))],
        &[anchor("01", 0)],
    );
    let f = assert_fails(&r, Check::Evidence);
    assert!(f[0].message.contains("does not verify"), "{r}");

    // A refused entry that passes every check: the refusal is unfounded.
    let held = s.feed("01").received[0].clone();
    let refused = |recorded_by: &str, envelope: Vec<u8>| Evidence {
        recorded_by: recorded_by.into(),
        recorded_unix_ms: s.now,
        kind: Some(evidence::Kind::RefusedEntry(RefusedEntry {
            envelope,
            checkpoint: held.checkpoint.clone(),
            inclusion_proof: held.proof.iter().map(|h| h.0.to_vec()).collect(),
            reason: "timeout".into(),
        })),
    };
    let r = check(
        &[("01", &with(refused("01", held.envelope.clone())))],
        &[anchor("01", 0)],
    );
    assert_pass(&r);
    assert!(r.warnings.iter().any(|w| w.check == Check::Evidence));
    // Refused by 24, to which it was not addressed: the author broke the
    // agreement by sending it.
    let r = check(
        &[("01", &with(refused("24", held.envelope.clone())))],
        &[anchor("01", 0)],
    );
    let f = assert_fails(&r, Check::Evidence);
    assert!(f[0].message.contains("not in its audience"), "{r}");
}

#[test]
fn the_writer_refuses_bundles_the_verifier_would_refuse() {
    let s = Sim::exchange();
    let info = s.info("01");
    assert!(matches!(
        BundleWriter::new(Vec::new(), &info, &[]),
        Err(WriteError::Order(_))
    ));
    let mut w = BundleWriter::new(Vec::new(), &info, &s.chain).unwrap();
    assert!(w.segment_entry(b"x").is_err(), "entry outside a segment");
    assert!(
        w.begin_segment("01", 3, &[]).is_err(),
        "3 needs two prefix hashes"
    );
    w.begin_segment("01", 0, &[]).unwrap();
    assert!(
        w.begin_segment("01", 0, &[]).is_err(),
        "segment already open"
    );
    w.segment_entry(&s.feed("01").envelopes[0]).unwrap();
    let later = s.feed("01").latest().unwrap().1.clone();
    assert!(
        w.checkpoint(&later).is_err(),
        "checkpoint of the wrong size"
    );
    assert!(
        w.end_segment().is_err(),
        "entries after the last checkpoint"
    );
    assert!(w.received_entry(b"x", 1, &[]).is_err(), "inside a segment");
    let key = s.key_of("01");
    assert!(matches!(w.finish(&key), Err(WriteError::Order(_))));
}

#[test]
fn the_reader_gives_back_every_record_written() {
    let s = Sim::exchange();
    let b = s.bundle("24");
    let records: Vec<_> = BundleReader::new(Cursor::new(&b))
        .map(|r| r.unwrap())
        .collect();
    let expected = s.records("24", 0);
    assert_eq!(records.len(), expected.len() + 1);
    for (got, want) in records.iter().zip(&expected) {
        assert_eq!(got.record.as_ref(), Some(want));
    }
    assert!(matches!(
        records.last().unwrap().record,
        Some(Record::End(_))
    ));
    assert_eq!(records[0].offset, 0);
    assert_eq!(records[0].number, 0);
}
