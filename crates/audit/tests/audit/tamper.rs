//! Altered bundles fail, and the failure names what was altered. Most
//! bundles here are re-signed by their exporter after the change (as a
//! dishonest exporter would do), so the checks that fire are the ones that
//! do not depend on the exporter's honesty.

use std::io::Cursor;

use base64::Engine as _;
use lienthong_audit::{BundleReader, Check, Report, VerifyOptions};
use lienthong_core::entry::{decode_envelope, sign_entry};
use lienthong_core::manifest::{Manifest, SignedManifest, sign_manifest};
use lienthong_proto::v1::{BundleCheckpoint, BundleHeader, bundle_record::Record};

use crate::fed::{FED, HOUR, Sim, agreement, anchor, encode, key, member, wire};
use crate::{assert_fails, assert_pass, check, check_with, failed_checks};

fn bundles_of(s: &Sim) -> Vec<(String, Vec<u8>)> {
    ["01", "20", "24"]
        .iter()
        .map(|c| (format!("{c}.bundle"), s.bundle(c)))
        .collect()
}

/// The byte ranges inside a record that are covered by a signature or
/// checked against a signed root: a flip there must be named at that
/// record, not only caught by the end record's digest.
fn signed_ranges(raw: &[u8], record: &Record) -> Vec<(usize, usize)> {
    let find = |needle: &[u8]| -> Option<(usize, usize)> {
        if needle.is_empty() {
            return None;
        }
        raw.windows(needle.len())
            .position(|w| w == needle)
            .map(|p| (p, p + needle.len()))
    };
    let mut out = Vec::new();
    match record {
        Record::SegmentEntry(e) => out.extend(find(&e.envelope)),
        Record::ReceivedEntry(e) => {
            out.extend(find(&e.envelope));
            for h in &e.inclusion_proof {
                out.extend(find(h));
            }
        }
        Record::Checkpoint(c) => {
            // The checkpoint text, which every signature covers.
            let text = c.note.split_once("\n\n").map_or("", |(t, _)| t);
            out.extend(find(text.as_bytes()));
        }
        Record::Manifest(m) => {
            out.extend(find(&m.canonical_manifest));
            for s in &m.signatures {
                out.extend(find(&s.signature));
            }
        }
        Record::SegmentStart(s) => {
            for h in &s.prefix {
                out.extend(find(h));
            }
        }
        Record::End(e) => {
            out.extend(find(&e.sha256));
            out.extend(find(&e.signature));
        }
        _ => {}
    }
    out
}

#[test]
fn a_flipped_byte_anywhere_is_detected_and_named() {
    let s = Sim::exchange();
    let original = s.bundle("20");
    assert_pass(&check(&[("20", &original)], &[anchor("01", 0)]));
    let records: Vec<_> = BundleReader::new(Cursor::new(&original))
        .map(|r| r.unwrap())
        .collect();
    let mut kinds = std::collections::HashSet::new();
    let (mut flips, mut named) = (0, 0);
    for (k, rec) in records.iter().enumerate() {
        let start = rec.offset as usize;
        let end = records
            .get(k + 1)
            .map_or(original.len(), |n| n.offset as usize);
        let body_start = end - rec.len as usize;
        let record = rec.record.as_ref().unwrap();
        kinds.insert(std::mem::discriminant(record));
        let ranges = signed_ranges(&original[body_start..end], record);
        let stride = ((end - start) / 24).max(1);
        let mut positions: Vec<usize> = (start..end).step_by(stride).collect();
        // And a few inside each signed range.
        for (a, b) in &ranges {
            positions.extend([body_start + a, body_start + (a + b) / 2, body_start + b - 1]);
        }
        for pos in positions {
            let mut bytes = original.clone();
            bytes[pos] ^= 0x10;
            let r = check(&[("20", &bytes)], &[anchor("01", 0)]);
            flips += 1;
            assert!(
                !r.passed(),
                "flipping byte {pos} (record {k}, {record:?}) went unnoticed:\n{r}"
            );
            let in_signed = ranges
                .iter()
                .any(|(a, b)| (body_start + a..body_start + b).contains(&pos));
            let at_record = r.failures.iter().any(|f| f.at.record == Some(k as u64));
            if in_signed {
                assert!(
                    at_record,
                    "flipping byte {pos} inside a signed part of record {k} is not named at that record:\n{r}"
                );
            }
            if at_record {
                named += 1;
            }
        }
    }
    assert_eq!(
        kinds.len(),
        8,
        "header, manifest, segment start/entry/end, checkpoint, received, end"
    );
    println!("{flips} byte flips, all detected; {named} named at the altered record");
}

#[test]
fn every_record_kind_survives_a_flip_test_including_proofs_and_evidence() {
    // The consistency-proof and evidence records, which the exchange does
    // not produce, flipped at every byte.
    let mut s = Sim::new(&["01", "20"]);
    let a = s.alert("20", &["01"]);
    s.checkpoint("20");
    s.deliver("20", a, "01");
    let b = s.alert("20", &["01"]);
    s.checkpoint("20");
    s.deliver("20", b, "01");
    s.checkpoint("01");
    let held = s.feed("01").received[0].clone();
    let mut records = s.records("01", 0);
    let proof = lienthong_log::consistency_proof(1, 2, &s.feed("20").store).unwrap();
    records.push(Record::ConsistencyProof(
        lienthong_proto::v1::ConsistencyProof {
            author: "20".into(),
            old_size: 1,
            new_size: 2,
            hashes: proof.iter().map(|h| h.0.to_vec()).collect(),
        },
    ));
    records.push(Record::Evidence(lienthong_proto::v1::Evidence {
        recorded_by: "01".into(),
        recorded_unix_ms: s.now,
        kind: Some(lienthong_proto::v1::evidence::Kind::RefusedEntry(
            lienthong_proto::v1::RefusedEntry {
                envelope: held.envelope.clone(),
                checkpoint: held.checkpoint.clone(),
                inclusion_proof: held.proof.iter().map(|h| h.0.to_vec()).collect(),
                reason: "slow".into(),
            },
        )),
    }));
    let original = s.encode("01", &records);
    assert_pass(&check(&[("01", &original)], &[anchor("01", 0)]));
    let parsed: Vec<_> = BundleReader::new(Cursor::new(&original))
        .map(|r| r.unwrap())
        .collect();
    let n = parsed.len();
    let from = parsed[n - 3].offset as usize;
    let to = parsed[n - 1].offset as usize;
    for pos in from..to {
        let mut bytes = original.clone();
        bytes[pos] ^= 0x01;
        let r = check(&[("01", &bytes)], &[anchor("01", 0)]);
        assert!(!r.passed(), "flipping byte {pos} went unnoticed:\n{r}");
    }
}

#[test]
fn a_dropped_entry_is_named_with_the_gap() {
    let s = Sim::exchange();
    let mut records = s.records("20", 0);
    let second = records
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Record::SegmentEntry(_)))
        .nth(1)
        .unwrap()
        .0;
    records.remove(second);
    let b = s.encode("20", &records);
    let r = check(&[("20", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::EntryPosition);
    assert_eq!(f[0].at.index, Some(1), "{r}");
    assert_eq!(f[0].at.author.as_deref(), Some("20"));
    assert!(f[0].message.contains("1 entry is missing"), "{r}");
    assert_eq!(
        f.len(),
        1,
        "a gap is listed once, not once per entry after it:\n{r}"
    );
    assert_fails(&r, Check::SegmentRoot);
}

#[test]
fn two_reordered_entries_are_both_named() {
    let s = Sim::exchange();
    let mut records = s.records("24", 0);
    let entries: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Record::SegmentEntry(_)))
        .map(|(i, _)| i)
        .collect();
    records.swap(entries[0], entries[1]);
    let b = s.encode("24", &records);
    let r = check(&[("24", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::EntryPosition);
    let indexes: Vec<_> = f.iter().map(|x| x.at.index).collect();
    assert!(
        indexes.contains(&Some(0)) && indexes.contains(&Some(1)),
        "{r}"
    );
    assert_fails(&r, Check::SegmentRoot);
}

#[test]
fn a_substituted_trust_anchor_is_refused() {
    let s = Sim::exchange();
    let bundles = bundles_of(&s);
    let refs: Vec<(&str, &[u8])> = bundles
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let r = check(&refs, &[anchor("01", 9)]);
    let f = assert_fails(&r, Check::TrustAnchor);
    assert!(f[0].message.contains("is in no manifest version"), "{r}");
    assert_eq!(failed_checks(&r), vec![Check::TrustAnchor]);
    // No anchor at all is refused too.
    let r = check(&refs, &[]);
    assert_fails(&r, Check::TrustAnchor);
}

#[test]
fn a_substituted_member_key_in_the_manifest_breaks_its_signatures() {
    let s = Sim::exchange();
    let mut records = s.records("20", 0);
    let Record::Manifest(m) = &mut records[1] else {
        panic!("record 1 is the genesis manifest")
    };
    let mut manifest: Manifest = serde_json::from_slice(&m.canonical_manifest).unwrap();
    manifest.members[1] = member("20", 5);
    m.canonical_manifest = manifest.canonical_bytes();
    let b = s.encode("20", &records);
    let r = check(&[("20", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::Manifest);
    assert!(
        f.iter()
            .all(|x| x.at.record == Some(1) || x.at.record.is_none()),
        "{r}"
    );
    assert!(
        f.iter().any(|x| x.message.contains("does not verify")),
        "{r}"
    );
    assert_fails(&r, Check::EntrySignature);
}

#[test]
fn entries_resigned_with_another_key_fail_their_signature() {
    let s = Sim::exchange();
    let mut records = s.records("20", 0);
    for r in &mut records {
        if let Record::SegmentEntry(e) = r {
            let (_, body) = decode_envelope(&e.envelope).unwrap();
            e.envelope = sign_entry(body, &key("20", 7)).envelope().to_vec();
        }
    }
    let b = s.encode("20", &records);
    let r = check(&[("20", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::EntrySignature);
    assert_eq!(
        r.count(Check::EntrySignature).failed,
        s.feed("20").size(),
        "every re-signed entry:\n{r}"
    );
    assert!(f[0].message.contains("does not verify"));
    assert_fails(&r, Check::SegmentRoot);
}

#[test]
fn a_forged_chain_that_only_lists_the_trusted_key_is_refused() {
    // Someone copies 01's public key into a chain they sign themselves.
    let m = Manifest {
        agreement: agreement(),
        federation: FED.into(),
        members: vec![member("01", 0), member("20", 5), member("24", 5)],
        quorum: None,
        version: 1,
    };
    let chain = [SignedManifest {
        signatures: vec![
            sign_manifest(&m, "20", &key("20", 5)),
            sign_manifest(&m, "24", &key("24", 5)),
        ],
        manifest: m,
    }];
    let records = vec![
        Record::Header(BundleHeader {
            format: lienthong_audit::FORMAT.into(),
            federation: FED.into(),
            exporter: "20".into(),
            created_unix_ms: 0,
            selection: None,
        }),
        Record::Manifest(wire(&chain[0])),
    ];
    let b = encode(&records, &key("20", 5));
    let r = check(&[("forged", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::TrustAnchor);
    assert!(f[0].message.contains("signed any manifest version"), "{r}");
    assert_eq!(failed_checks(&r), vec![Check::TrustAnchor]);
    // Only an explicit opt-out accepts a merely listed key.
    let opts = VerifyOptions {
        require_anchor_signature: false,
        ..VerifyOptions::default()
    };
    let r = check_with(&[("forged", &b)], &[anchor("01", 0)], &opts);
    assert_pass(&r);
    assert!(r.warnings.iter().any(|w| w.check == Check::TrustAnchor));
}

/// Re-encodes a cosignature line with another time, keeping its
/// signature: the witness never signed that.
fn shift_cosignature_time(note: &str) -> String {
    let (text, sigs) = note.split_once("\n\n").unwrap();
    let mut lines: Vec<String> = sigs.lines().map(str::to_owned).collect();
    let line = lines.last_mut().unwrap();
    let (head, b64) = line.rsplit_once(' ').unwrap();
    let mut payload = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    payload[11] ^= 1; // the time's last byte (after the 4-byte key id)
    *line = format!(
        "{head} {}",
        base64::engine::general_purpose::STANDARD.encode(payload)
    );
    format!("{text}\n\n{}\n", lines.join("\n"))
}

#[test]
fn a_cosignature_that_no_longer_verifies_is_named() {
    let s = Sim::exchange();
    let mut records = s.records("20", 0);
    let (k, note) = records
        .iter()
        .enumerate()
        .find_map(|(k, r)| match r {
            Record::Checkpoint(c) if c.note.matches("\u{2014} ").count() == 3 => {
                Some((k, c.note.clone()))
            }
            _ => None,
        })
        .expect("20's checkpoint cosigned by 01 and 24");
    records[k] = Record::Checkpoint(BundleCheckpoint {
        note: shift_cosignature_time(&note),
    });
    let b = s.encode("20", &records);
    let r = check(&[("20", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::Cosignature);
    assert_eq!(failed_checks(&r), vec![Check::Cosignature], "{r}");
    assert_eq!(f[0].at.record, Some(k as u64));
    assert!(f[0].message.contains("cosignature by 24"), "{r}");
    assert_eq!(r.count(Check::Cosignature).passed, 1);
}

#[test]
fn a_missing_receipt_fails_the_cross_check() {
    let mut s = Sim::new(&["01", "20"]);
    let i = s.alert("20", &["01"]);
    s.checkpoint("20");
    // 01 keeps working for two hours and never acknowledges it.
    s.now += 2 * HOUR;
    s.alert("01", &[]);
    s.checkpoint("01");
    let r = check(
        &[("20", &s.bundle("20")), ("01", &s.bundle("01"))],
        &[anchor("01", 0)],
    );
    let f = assert_fails(&r, Check::Delivery);
    assert_eq!(failed_checks(&r), vec![Check::Delivery], "{r}");
    assert_eq!(
        (f[0].at.author.as_deref(), f[0].at.index),
        (Some("20"), Some(i))
    );
    assert!(f[0].message.contains("never acknowledged"), "{r}");
    assert_eq!(r.deliveries.missing, 1);
}

/// Issue 7: one receipt acknowledging several entries (`Receipt.more`)
/// counts each of them as delivered; an item with a wrong id fails like a
/// single receipt would.
#[test]
fn one_receipt_for_several_entries_counts_each_and_each_item_is_checked() {
    let mut s = Sim::new(&["01", "20"]);
    let sent: Vec<u64> = (0..5).map(|_| s.alert("20", &["01"])).collect();
    s.checkpoint("20");
    s.deliver_together("20", &sent, "01");
    s.settle();
    let r = check(
        &[("20", &s.bundle("20")), ("01", &s.bundle("01"))],
        &[anchor("01", 0)],
    );
    assert!(r.passed(), "{r}");
    assert_eq!(
        (
            r.deliveries.expected,
            r.deliveries.delivered,
            r.deliveries.missing
        ),
        (5, 5, 0),
        "{r}"
    );
    assert!(r.warnings.is_empty(), "no entry acknowledged twice: {r}");

    // The same with one item naming an id 20 never wrote.
    let mut s = Sim::new(&["01", "20"]);
    let a = s.alert("20", &["01"]);
    let b = s.alert("20", &["01"]);
    s.checkpoint("20");
    let id_a = lienthong_core::entry::EntryId::of_envelope(&s.feed("20").envelopes[0]);
    s.append(
        "01",
        &["20"],
        lienthong_core::proto::entry_body::Payload::Receipt(lienthong_core::proto::Receipt {
            author: "20".into(),
            index: a,
            entry_id: id_a.0.to_vec(),
            checkpoint_size: 2,
            more: vec![lienthong_core::proto::ReceiptItem {
                index: b,
                entry_id: vec![5; 32],
                checkpoint_size: 2,
            }],
        }),
    );
    s.settle();
    let r = check(
        &[("20", &s.bundle("20")), ("01", &s.bundle("01"))],
        &[anchor("01", 0)],
    );
    let f = assert_fails(&r, Check::Delivery);
    assert!(
        f.iter().any(|x| x
            .message
            .contains(&format!("acknowledges entry {b} of 20 with id"))
            && x.message.contains("does not exist")),
        "{r}"
    );
}

#[test]
fn a_receipt_for_a_wrong_id_or_a_foreign_entry_fails() {
    let mut s = Sim::new(&["01", "20", "24"]);
    let i = s.alert("20", &["01"]);
    s.checkpoint("20");
    s.receipt("01", "20", i, vec![5; 32], 1);
    let id = lienthong_core::entry::EntryId::of_envelope(&s.feed("20").envelopes[0]);
    s.receipt("24", "20", i, id.0.to_vec(), 1);
    s.settle();
    let r = check(
        &[
            ("20", &s.bundle("20")),
            ("01", &s.bundle("01")),
            ("24", &s.bundle("24")),
        ],
        &[anchor("01", 0)],
    );
    let f = assert_fails(&r, Check::Delivery);
    assert_eq!(failed_checks(&r), vec![Check::Delivery], "{r}");
    assert!(
        f.iter().any(|x| x
            .message
            .contains("a receipt for an entry that does not exist")
            && x.at.author.as_deref() == Some("01")),
        "{r}"
    );
    assert!(
        f.iter().any(|x| x.message.contains("not addressed to 24")),
        "{r}"
    );
    // The genuine delivery still counts.
    assert_eq!(r.deliveries.delivered, 1);
}

#[test]
fn a_manifest_version_without_its_quorum_is_refused() {
    let mut s = Sim::new(&["01", "20", "24"]);
    s.alert("20", &["01"]);
    s.settle();
    s.rotate("20");
    s.alert("20", &["01"]);
    s.settle();
    let mut records = s.records("20", 0);
    let Record::Manifest(m) = &mut records[2] else {
        panic!("record 2 is version 2")
    };
    m.signatures.retain(|g| g.member == "20");
    let b = s.encode("20", &records);
    let r = check(&[("20", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::Manifest);
    assert_eq!(f[0].at.record, Some(2), "{r}");
    assert!(f[0].message.contains("needs 2"), "{r}");
    assert_eq!(r.manifest_versions, 1);
    // What needs version 2 cannot be verified.
    let e = assert_fails(&r, Check::EntrySignature);
    assert!(e[0].message.contains("not in the trusted chain"), "{r}");
}

#[test]
fn a_truncated_file_fails_wherever_it_is_cut() {
    let s = Sim::exchange();
    let b = s.bundle("01");
    for cut in (1..b.len()).step_by(97).chain([b.len() - 1]) {
        let r = check(&[("01", &b[..cut])], &[anchor("01", 0)]);
        assert!(!r.passed(), "cut at {cut} went unnoticed:\n{r}");
        let checks = failed_checks(&r);
        assert!(
            checks.contains(&Check::Structure) || checks.contains(&Check::BundleSignature),
            "cut at {cut}:\n{r}"
        );
    }
    // Cut exactly before the end record: no record is damaged, the end is
    // simply missing.
    let last = BundleReader::new(Cursor::new(&b)).last().unwrap().unwrap();
    let r = check(&[("01", &b[..last.offset as usize])], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::BundleSignature);
    assert!(f[0].message.contains("truncated"), "{r}");
}

#[test]
fn a_checkpoint_that_forks_the_authors_own_export_is_named() {
    let s = Sim::exchange();
    let (size, _) = s.feed("20").latest().unwrap().clone();
    let forged = {
        let signer =
            lienthong_log::NoteSigner::new(&crate::fed::origin("20"), s.key_of("20")).unwrap();
        let head = lienthong_log::TreeHead {
            origin: crate::fed::origin("20"),
            size,
            root: lienthong_log::Hash([3; 32]),
        };
        lienthong_log::sign_checkpoint(&head, &signer).unwrap()
    };
    let mut records = s.records("01", 0);
    records.push(Record::Checkpoint(BundleCheckpoint { note: forged }));
    let b = s.encode("01", &records);
    let r = check(&[("01", &b), ("20", &s.bundle("20"))], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::Consistency);
    // Named both ways: against the checkpoint 01 received of that size,
    // and against the root of 20's own export.
    assert!(
        f.iter()
            .any(|x| x.message.contains("two different checkpoints of size")),
        "{r}"
    );
    assert!(
        f.iter().any(|x| x.message.contains("two different trees")),
        "{r}"
    );
    assert!(f.iter().all(|x| x.at.author.as_deref() == Some("20")));
}

#[test]
fn a_segment_that_omits_a_checkpoint_others_hold_is_named() {
    let s = Sim::exchange();
    // The checkpoint of 20 under which 01 received 20's first alert.
    let size = s.feed("01").received[0].checkpoint_size;
    let end = s.feed("20").latest().unwrap().0;
    assert!(size < end);
    let mut records = s.records("20", 0);
    records.retain(|r| {
        !matches!(r, Record::Checkpoint(c) if c.note.contains(&format!("\n{size}\n"))
        && c.note.starts_with(&crate::fed::origin("20")))
    });
    let b = s.encode("20", &records);
    let r = check(&[("20", &b), ("01", &s.bundle("01"))], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::Consistency);
    assert!(f[0].message.contains("does not carry it"), "{r}");
    // 01's receipt names that checkpoint too.
    let d = assert_fails(&r, Check::Delivery);
    assert!(
        d.iter().any(|x| x
            .message
            .contains("does not carry a checkpoint of that size")),
        "{r}"
    );
}

#[test]
fn entries_after_the_last_checkpoint_are_named() {
    let s = Sim::exchange();
    let mut records = s.records("24", 0);
    let end = records
        .iter()
        .position(|r| matches!(r, Record::SegmentEnd(_)))
        .unwrap();
    let last_entry = records[..end]
        .iter()
        .rposition(|r| matches!(r, Record::SegmentEntry(_)))
        .unwrap();
    // Drop the checkpoints after the last entry; end the segment there.
    records.drain(last_entry + 1..end);
    let b = s.encode("24", &records);
    let r = check(&[("24", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::SegmentRoot);
    assert!(f[0].message.contains("no signed root covers them"), "{r}");
}

#[test]
fn a_bundle_signed_by_someone_else_or_with_records_after_its_end_fails() {
    let s = Sim::exchange();
    let records = s.records("01", 0);
    let b = encode(&records, &s.key_of("20"));
    let r: Report = check(&[("01", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::BundleSignature);
    assert!(
        f[0].message.contains("does not verify under 01's key"),
        "{r}"
    );
    assert_eq!(failed_checks(&r), vec![Check::BundleSignature]);

    let mut b = s.bundle("01");
    let extra = s.bundle("24");
    b.extend_from_slice(&extra[..20]);
    let r = check(&[("01", &b)], &[anchor("01", 0)]);
    assert!(!r.passed(), "{r}");
}

#[test]
fn bundles_that_disagree_on_a_manifest_version_are_refused() {
    let s = Sim::exchange();
    // Version 1 as 20 presents it: same members, another endpoint for 24,
    // signed by everyone — a fork of the chain, each side validly signed.
    let mut other = s.chain[0].manifest.clone();
    other.members[2].endpoint = "10.9.9.9:7443".into();
    let signed = SignedManifest {
        signatures: ["01", "20", "24"]
            .iter()
            .map(|c| sign_manifest(&other, c, &key(c, 0)))
            .collect(),
        manifest: other,
    };
    let mut records = s.records("20", 0);
    records[1] = Record::Manifest(wire(&signed));
    let b20 = s.encode("20", &records);
    // Alone, that chain is fine.
    assert_pass(&check(&[("20", &b20)], &[anchor("01", 0)]));
    let r = check(&[("01", &s.bundle("01")), ("20", &b20)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::Manifest);
    assert!(f[0].message.contains("forked"), "{r}");
    assert_eq!(f[0].at.bundle.as_deref(), Some("20"));
}

#[test]
fn a_manifest_signature_by_a_stranger_is_named() {
    let s = Sim::exchange();
    let mut records = s.records("24", 0);
    let Record::Manifest(m) = &mut records[1] else {
        panic!("record 1 is the genesis manifest")
    };
    m.signatures[0].member = "79".into();
    let b = s.encode("24", &records);
    let r = check(&[("24", &b)], &[anchor("20", 0)]);
    let f = assert_fails(&r, Check::Manifest);
    assert_eq!(failed_checks(&r), vec![Check::Manifest], "{r}");
    assert!(f[0].message.contains("\"79\""), "{r}");
    assert_eq!(f[0].at.record, Some(1));
}

#[test]
fn a_received_entry_before_its_checkpoint_is_named() {
    let s = Sim::exchange();
    let mut records = s.records("01", 0);
    let cp = records
        .iter()
        .position(|r| matches!(r, Record::ReceivedEntry(_)))
        .unwrap()
        - 1;
    assert!(matches!(records[cp], Record::Checkpoint(_)));
    let moved = records.remove(cp);
    records.push(moved);
    let b = s.encode("01", &records);
    let r = check(&[("01", &b)], &[anchor("01", 0)]);
    let f = assert_fails(&r, Check::Inclusion);
    assert!(
        f[0].message.contains("put the checkpoint record before"),
        "{r}"
    );
    assert_eq!(f[0].at.record, Some(cp as u64));
}
