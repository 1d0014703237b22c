//! Verification speed on large feeds. Prints the rate; asserts nothing
//! about time (machines differ), only that the result is right.

use std::io::Cursor;
use std::time::Instant;

use lienthong_audit::{BundleInput, BundleWriter, VerifyOptions, verify};
use lienthong_core::entry::sign_entry;
use lienthong_core::proto::entry_body::Payload;
use lienthong_core::proto::{Alert, EntryBody};
use lienthong_log::{MemoryHashStore, NoteSigner, TreeHead, cosign, leaf_hash, sign_checkpoint};

use crate::assert_pass;
use crate::fed::{Sim, T0, anchor, origin};

/// A bundle of `n` alerts by 01 (one in ten addressed to 20), a checkpoint
/// every `every` entries, every tenth cosigned by 20; written as an
/// exporter streams it, never holding the feed in memory.
fn big_bundle(n: u64, every: u64) -> (Vec<u8>, u64) {
    let s = Sim::new(&["01", "20"]);
    let key = s.key_of("01");
    let witness = s.key_of("20");
    let signer = NoteSigner::new(&origin("01"), key.clone()).unwrap();
    let mut store = MemoryHashStore::new();
    let mut w = BundleWriter::new(Vec::new(), &s.info("01"), &s.chain).unwrap();
    w.begin_segment("01", 0, &[]).unwrap();
    let mut checkpoints = 0;
    for i in 0..n {
        let audience = if i % 10 == 0 {
            vec!["01".into(), "20".into()]
        } else {
            vec!["01".into()]
        };
        let body = EntryBody {
            format: 1,
            author: "01".into(),
            index: i,
            created_unix_ms: T0 + i as i64 * 1000,
            audience,
            manifest_version: 1,
            agreement_hash: vec![7; 32],
            handling: 1,
            response_deadline_hours: 0,
            payload: Some(Payload::Alert(Alert {
                reference: format!("ref-{i}"),
                category: 3,
                severity: 2,
                title: format!("Cơ sở kinh doanh mỹ phẩm giả số {i} tại phường Hoàn Kiếm"),
                description: "Phát hiện 1.200 sản phẩm mỹ phẩm giả mạo nhãn hiệu, không rõ nguồn gốc xuất xứ.".into(),
                observed_unix_ms: T0,
                ..Default::default()
            })),
        };
        let e = sign_entry(body, &key);
        store.append(leaf_hash(e.envelope())).unwrap();
        w.segment_entry(e.envelope()).unwrap();
        if (i + 1) % every == 0 || i + 1 == n {
            let head = TreeHead {
                origin: origin("01"),
                size: i + 1,
                root: store.root().unwrap(),
            };
            let mut note = sign_checkpoint(&head, &signer).unwrap();
            if checkpoints % 10 == 0 {
                let text = format!("{}\n", note.split_once("\n\n").unwrap().0);
                note.push_str(
                    &cosign(text.as_bytes(), 1_763_164_800, &origin("20"), &witness).unwrap(),
                );
            }
            w.checkpoint(&note).unwrap();
            checkpoints += 1;
        }
    }
    w.end_segment().unwrap();
    (w.finish(&key).unwrap(), checkpoints)
}

/// CPU seconds this process has used (user + system), where the OS says.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn measure(n: u64, every: u64) {
    let started = Instant::now();
    let (bundle, checkpoints) = big_bundle(n, every);
    let built = started.elapsed();
    let mb = bundle.len() as f64 / 1e6;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let r = verify(
        vec![BundleInput {
            name: "01.bundle".into(),
            reader: Cursor::new(bundle),
        }],
        &[anchor("01", 0)],
        &VerifyOptions::default(),
        &mut |_| {},
    );
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map_or(String::new(), |(after, before)| {
            format!(", {:.1} CPU s", after - before)
        });
    assert_pass(&r);
    assert_eq!(r.count(lienthong_audit::Check::EntrySignature).passed, n);
    assert_eq!(
        r.count(lienthong_audit::Check::CheckpointSignature).passed,
        checkpoints
    );
    assert_eq!(r.deliveries.not_checkable, n.div_ceil(10));
    println!(
        "verified {n} entries and {checkpoints} checkpoints ({mb:.1} MB, built in {:.1} s) in {secs:.2} s: \
         {:.0} entries/s, {:.1} MB/s, {threads} cores{cpu} ({} build)",
        built.as_secs_f64(),
        n as f64 / secs,
        mb / secs,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
}

#[test]
fn a_hundred_thousand_entries_verify() {
    measure(100_000, 100);
}

/// The brief's target: run with
/// `cargo test --release -p lienthong-audit -- --ignored --nocapture million`.
#[test]
#[ignore = "takes a minute and 1 GB; run in release to measure"]
fn a_million_entries_verify() {
    measure(1_000_000, 100);
}

/// Worst case for checkpoints: one per entry (a node that checkpoints each
/// write), every tenth cosigned.
#[test]
#[ignore = "run in release to measure"]
fn a_hundred_thousand_entries_with_a_checkpoint_each_verify() {
    measure(100_000, 1);
}
