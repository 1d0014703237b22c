//! A small federation in memory, with real keys and real signatures: each
//! member appends signed entries to its own Merkle log, signs checkpoints,
//! cosigns its peers' checkpoints, delivers entries with inclusion proofs,
//! and writes receipts into its own feed, as the node does. Bundles are
//! built from it the way `lienthong audit export` will.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer as _, SigningKey};
use lienthong_audit::{BundleWriter, ExportInfo, TrustAnchor, bundle_signing_message};
use lienthong_core::agreement::Agreement;
use lienthong_core::entry::{EntryId, sign_entry};
use lienthong_core::manifest::{Manifest, Member, SignedManifest, format_vkey, sign_manifest};
use lienthong_core::proto::entry_body::Payload;
use lienthong_core::proto::{Alert, EntryBody, Receipt};
use lienthong_log::{
    Hash, MemoryHashStore, NoteSigner, TreeHead, cosign, inclusion_proof, leaf_hash,
    sign_checkpoint,
};
use lienthong_proto::v1::{
    BundleCheckpoint, BundleEnd, BundleHeader, BundleRecord, ManifestSignature, ReceivedEntry,
    SegmentEnd, SegmentEntry, SegmentStart, Selection, SignedManifestVersion,
    bundle_record::Record,
};
use prost::Message as _;
use sha2::{Digest, Sha256};

pub const FED: &str = "lienthong.example/bac-bo-11";
/// 2025-11-15 00:00 UTC.
pub const T0: i64 = 1_763_164_800_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;

pub fn origin(code: &str) -> String {
    format!("{FED}/{code}")
}

/// A deterministic key per member and generation (0 = first key).
pub fn key(code: &str, generation: u8) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(format!("audit test key {code} {generation}")).into())
}

pub fn anchor(code: &str, generation: u8) -> TrustAnchor {
    TrustAnchor::parse(&format_vkey(
        &origin(code),
        &key(code, generation).verifying_key(),
    ))
    .expect("a valid vkey")
}

/// One entry as a receiver holds it.
#[derive(Debug, Clone)]
pub struct Held {
    pub envelope: Vec<u8>,
    pub author: String,
    pub index: u64,
    pub checkpoint: String,
    pub checkpoint_size: u64,
    pub proof: Vec<Hash>,
}

#[derive(Debug, Default)]
pub struct Feed {
    pub envelopes: Vec<Vec<u8>>,
    pub store: MemoryHashStore,
    /// (size, note) in the order issued.
    pub checkpoints: Vec<(u64, String)>,
    pub received: Vec<Held>,
}

impl Feed {
    pub fn size(&self) -> u64 {
        self.envelopes.len() as u64
    }

    /// The newest checkpoint.
    pub fn latest(&self) -> Option<&(u64, String)> {
        self.checkpoints.last()
    }
}

pub struct Sim {
    pub chain: Vec<SignedManifest>,
    /// Current key generation per member.
    pub generation: BTreeMap<String, u8>,
    pub feeds: BTreeMap<String, Feed>,
    pub now: i64,
}

pub fn agreement() -> Agreement {
    Agreement::from_toml("[[rules]]\nname = \"all\"\naudience = \"all\"\nhandling = \"H0\"\n")
        .expect("a valid agreement")
}

pub fn member(code: &str, generation: u8) -> Member {
    Member {
        code: code.into(),
        endpoint: format!("10.0.0.{}:7443", code.parse::<u8>().unwrap_or(1)),
        name: lienthong_core::provinces::province_name(code)
            .unwrap_or("?")
            .into(),
        signing_key: format_vkey(&origin(code), &key(code, generation).verifying_key()),
        tls_spki_sha256: hex::encode(Sha256::digest(format!("spki {code} {generation}"))),
    }
}

impl Sim {
    /// A federation of `codes`, genesis signed by every member.
    pub fn new(codes: &[&str]) -> Self {
        let m = Manifest {
            agreement: agreement(),
            federation: FED.into(),
            members: codes.iter().map(|c| member(c, 0)).collect(),
            quorum: None,
            version: 1,
        };
        let signatures = codes
            .iter()
            .map(|c| sign_manifest(&m, c, &key(c, 0)))
            .collect();
        Self {
            chain: vec![SignedManifest {
                manifest: m,
                signatures,
            }],
            generation: codes.iter().map(|c| (c.to_string(), 0)).collect(),
            feeds: codes
                .iter()
                .map(|c| (c.to_string(), Feed::default()))
                .collect(),
            now: T0,
        }
    }

    pub fn version(&self) -> u64 {
        self.chain.len() as u64
    }

    pub fn key_of(&self, code: &str) -> SigningKey {
        key(code, self.generation[code])
    }

    pub fn feed(&self, code: &str) -> &Feed {
        &self.feeds[code]
    }

    /// Next manifest version in which `code` has a new key; signed by every
    /// member of the version in force with its current key.
    pub fn rotate(&mut self, code: &str) {
        let next = self.generation[code] + 1;
        let mut m = self.chain.last().expect("genesis").manifest.clone();
        m.version += 1;
        for mem in &mut m.members {
            if mem.code == code {
                *mem = member(code, next);
            }
        }
        let signatures = self
            .generation
            .keys()
            .map(|c| sign_manifest(&m, c, &self.key_of(c)))
            .collect();
        self.chain.push(SignedManifest {
            manifest: m,
            signatures,
        });
        self.generation.insert(code.into(), next);
    }

    /// Appends a signed entry to `author`'s feed.
    pub fn append(&mut self, author: &str, audience: &[&str], payload: Payload) -> (u64, EntryId) {
        self.now += 1000;
        let mut audience: Vec<String> = audience.iter().map(|s| s.to_string()).collect();
        audience.push(author.into());
        audience.sort();
        audience.dedup();
        let key = self.key_of(author);
        let version = self.version();
        let feed = self.feeds.get_mut(author).expect("a member");
        let body = EntryBody {
            format: 1,
            author: author.into(),
            index: feed.size(),
            created_unix_ms: self.now,
            audience,
            manifest_version: version,
            agreement_hash: vec![7; 32],
            handling: 1,
            response_deadline_hours: 0,
            payload: Some(payload),
        };
        let e = sign_entry(body, &key);
        feed.store.append(leaf_hash(e.envelope())).expect("append");
        feed.envelopes.push(e.envelope().to_vec());
        (e.index(), e.id())
    }

    /// Appends an alert addressed to `audience` (plus the author).
    pub fn alert(&mut self, author: &str, audience: &[&str]) -> u64 {
        let n = self.feed(author).size();
        let payload = Payload::Alert(Alert {
            reference: format!("{author}-{n}"),
            category: 1,
            severity: 3,
            title: format!("Xe tải chở hàng lậu qua cửa khẩu, tin số {n} của {author}"),
            description: "Phát hiện xe tải 8 tấn chở mỹ phẩm giả, không có hóa đơn chứng từ."
                .into(),
            observed_unix_ms: self.now,
            ..Default::default()
        });
        self.append(author, audience, payload).0
    }

    /// Signs a checkpoint of `author`'s feed at its current size.
    pub fn checkpoint(&mut self, author: &str) -> String {
        let signer = NoteSigner::new(&origin(author), self.key_of(author)).expect("signer");
        let feed = self.feeds.get_mut(author).expect("a member");
        let head = TreeHead {
            origin: origin(author),
            size: feed.size(),
            root: feed.store.root().expect("root"),
        };
        let note = sign_checkpoint(&head, &signer).expect("sign");
        feed.checkpoints.push((head.size, note.clone()));
        note
    }

    /// `witness` cosigns `author`'s newest checkpoint.
    pub fn cosign(&mut self, author: &str, witness: &str) {
        self.now += 1000;
        let wkey = self.key_of(witness);
        let feed = self.feeds.get_mut(author).expect("a member");
        let (_, note) = feed.checkpoints.last_mut().expect("a checkpoint");
        // A checkpoint's text has no blank line; the signatures follow one.
        let body = format!("{}\n", note.split_once("\n\n").expect("a signed note").0);
        let line = cosign(
            body.as_bytes(),
            u64::try_from(self.now / 1000).unwrap_or(0),
            &origin(witness),
            &wkey,
        )
        .expect("cosign");
        note.push_str(&line);
    }

    /// `receiver` receives entry `index` of `author` under the author's
    /// newest checkpoint (signing one if it does not cover the entry) and
    /// writes its receipt, `delay_ms` after the entry's creation time.
    pub fn deliver(&mut self, author: &str, index: u64, receiver: &str) {
        let (id, size, is_receipt) = self.hold(author, index, receiver);
        if !is_receipt {
            self.receipt(receiver, author, index, id, size);
        }
    }

    /// As [`Sim::deliver`] for several entries of `author` at once,
    /// acknowledged by one receipt (the first entry, then `more`), as a
    /// node does for entries stored in one group commit.
    pub fn deliver_together(&mut self, author: &str, indexes: &[u64], receiver: &str) {
        let items: Vec<(u64, Vec<u8>, u64)> = indexes
            .iter()
            .filter_map(|&i| {
                let (id, size, is_receipt) = self.hold(author, i, receiver);
                (!is_receipt).then_some((i, id, size))
            })
            .collect();
        let Some(((index, id, size), more)) = items.split_first() else {
            return;
        };
        self.append(
            receiver,
            &[author],
            Payload::Receipt(Receipt {
                author: author.into(),
                index: *index,
                entry_id: id.clone(),
                checkpoint_size: *size,
                more: more
                    .iter()
                    .map(|(i, id, size)| lienthong_core::proto::ReceiptItem {
                        index: *i,
                        entry_id: id.clone(),
                        checkpoint_size: *size,
                    })
                    .collect(),
            }),
        );
    }

    /// `receiver` holds entry `index` of `author` with its proof; the id
    /// and checkpoint size its receipt names, and whether it is a receipt
    /// itself (never acknowledged).
    fn hold(&mut self, author: &str, index: u64, receiver: &str) -> (Vec<u8>, u64, bool) {
        let covered = self
            .feed(author)
            .latest()
            .is_some_and(|(size, _)| *size > index);
        if !covered {
            self.checkpoint(author);
        }
        let feed = &self.feeds[author];
        let (size, note) = feed.latest().cloned().expect("a checkpoint");
        let envelope = feed.envelopes[index as usize].clone();
        let proof = inclusion_proof(index, size, &feed.store).expect("proof");
        let id = EntryId::of_envelope(&envelope);
        let is_receipt = matches!(
            lienthong_core::entry::decode_envelope(&envelope).map(|(_, b)| b.payload),
            Ok(Some(Payload::Receipt(_)))
        );
        self.feeds
            .get_mut(receiver)
            .expect("a member")
            .received
            .push(Held {
                envelope,
                author: author.into(),
                index,
                checkpoint: note,
                checkpoint_size: size,
                proof,
            });
        // As the node does: a receipt is delivered to the author it
        // acknowledges, but never acknowledged itself.
        (id.0.to_vec(), size, is_receipt)
    }

    /// Writes a receipt into `receiver`'s feed (possibly a wrong one).
    pub fn receipt(&mut self, receiver: &str, author: &str, index: u64, id: Vec<u8>, size: u64) {
        self.append(
            receiver,
            &[author],
            Payload::Receipt(Receipt {
                author: author.into(),
                index,
                entry_id: id,
                checkpoint_size: size,
                more: vec![],
            }),
        );
    }

    /// Everything addressed to someone is delivered, checkpointed and
    /// acknowledged; each feed ends with a checkpoint.
    pub fn settle(&mut self) {
        let codes: Vec<String> = self.feeds.keys().cloned().collect();
        for author in &codes {
            if self.feed(author).size() > 0 {
                self.checkpoint(author);
            }
        }
        loop {
            let mut any = false;
            for author in &codes {
                let delivered: std::collections::BTreeSet<(u64, String)> = codes
                    .iter()
                    .flat_map(|r| {
                        self.feeds[r]
                            .received
                            .iter()
                            .filter(|h| h.author == *author)
                            .map(move |h| (h.index, r.clone()))
                    })
                    .collect();
                for index in 0..self.feed(author).size() {
                    let (_, body) = lienthong_core::entry::decode_envelope(
                        &self.feed(author).envelopes[index as usize],
                    )
                    .expect("decodes");
                    for r in &body.audience {
                        if r != author && !delivered.contains(&(index, r.clone())) {
                            self.deliver(author, index, r);
                            any = true;
                        }
                    }
                }
            }
            if !any {
                break;
            }
        }
        for author in &codes {
            if self.feed(author).latest().map(|c| c.0) != Some(self.feed(author).size()) {
                self.checkpoint(author);
            }
        }
    }

    /// A typical exchange among 01 Hà Nội, 20 Lạng Sơn and 24 Bắc Ninh:
    /// alerts to one or two peers and to no one, cosigned checkpoints,
    /// every delivery acknowledged.
    pub fn exchange() -> Self {
        let mut s = Sim::new(&["01", "20", "24"]);
        s.alert("20", &["01"]);
        s.alert("20", &["01", "24"]);
        s.alert("01", &[]);
        s.alert("24", &["20"]);
        s.checkpoint("20");
        s.cosign("20", "01");
        s.cosign("20", "24");
        s.settle();
        s.alert("01", &["20", "24"]);
        s.alert("20", &["24"]);
        s.alert("20", &[]);
        s.settle();
        s.cosign("01", "20");
        s
    }

    pub fn info(&self, exporter: &str) -> ExportInfo {
        ExportInfo {
            federation: FED.into(),
            exporter: exporter.into(),
            created_unix_ms: self.now,
            selection: Selection {
                member: exporter.into(),
                ..Selection::default()
            },
        }
    }

    /// The records of `exporter`'s bundle (without the end record): its
    /// own feed from `from` to its newest checkpoint, then every entry it
    /// received, each after the checkpoint it is proven in.
    pub fn records(&self, exporter: &str, from: u64) -> Vec<Record> {
        let mut out = vec![Record::Header(BundleHeader {
            format: lienthong_audit::FORMAT.into(),
            federation: FED.into(),
            exporter: exporter.into(),
            created_unix_ms: self.now,
            selection: Some(Selection {
                member: exporter.into(),
                from_index: from,
                ..Selection::default()
            }),
        })];
        out.extend(self.chain.iter().map(|s| Record::Manifest(wire(s))));
        let feed = self.feed(exporter);
        let end = feed.latest().map_or(0, |c| c.0);
        out.push(Record::SegmentStart(SegmentStart {
            author: exporter.into(),
            start: from,
            prefix: lienthong_audit::compact_prefix(from, &feed.store)
                .expect("prefix")
                .iter()
                .map(|h| h.0.to_vec())
                .collect(),
        }));
        for (size, note) in &feed.checkpoints {
            if *size == from && from > 0 {
                out.push(Record::Checkpoint(BundleCheckpoint { note: note.clone() }));
            }
        }
        for i in from..end {
            out.push(Record::SegmentEntry(SegmentEntry {
                envelope: feed.envelopes[i as usize].clone(),
            }));
            for (size, note) in &feed.checkpoints {
                if *size == i + 1 {
                    out.push(Record::Checkpoint(BundleCheckpoint { note: note.clone() }));
                }
            }
        }
        out.push(Record::SegmentEnd(SegmentEnd { size: end }));
        let mut written = std::collections::BTreeSet::new();
        for h in &feed.received {
            if written.insert(h.checkpoint.clone()) {
                out.push(Record::Checkpoint(BundleCheckpoint {
                    note: h.checkpoint.clone(),
                }));
            }
            out.push(Record::ReceivedEntry(ReceivedEntry {
                envelope: h.envelope.clone(),
                checkpoint_size: h.checkpoint_size,
                inclusion_proof: h.proof.iter().map(|x| x.0.to_vec()).collect(),
            }));
        }
        out
    }

    /// `exporter`'s bundle, written with [`BundleWriter`].
    pub fn bundle(&self, exporter: &str) -> Vec<u8> {
        let bytes = write_with_writer(self, exporter);
        assert_eq!(
            bytes,
            encode(&self.records(exporter, 0), &self.key_of(exporter)),
            "BundleWriter and the test encoder agree byte for byte"
        );
        bytes
    }

    /// `exporter`'s bundle, from raw records signed with its key.
    pub fn encode(&self, exporter: &str, records: &[Record]) -> Vec<u8> {
        encode(records, &self.key_of(exporter))
    }
}

fn write_with_writer(sim: &Sim, exporter: &str) -> Vec<u8> {
    let mut w = BundleWriter::new(Vec::new(), &sim.info(exporter), &sim.chain).expect("header");
    let feed = sim.feed(exporter);
    let end = feed.latest().map_or(0, |c| c.0);
    w.begin_segment(exporter, 0, &[]).expect("segment");
    for i in 0..end {
        w.segment_entry(&feed.envelopes[i as usize]).expect("entry");
        for (size, note) in &feed.checkpoints {
            if *size == i + 1 {
                w.checkpoint(note).expect("checkpoint");
            }
        }
    }
    w.end_segment().expect("end segment");
    let mut written = std::collections::BTreeSet::new();
    for h in &feed.received {
        if written.insert(h.checkpoint.clone()) {
            w.checkpoint(&h.checkpoint).expect("checkpoint");
        }
        w.received_entry(&h.envelope, h.checkpoint_size, &h.proof)
            .expect("received");
    }
    w.finish(&sim.key_of(exporter)).expect("finish")
}

/// The wire form of a manifest version.
pub fn wire(s: &SignedManifest) -> SignedManifestVersion {
    SignedManifestVersion {
        canonical_manifest: s.manifest.canonical_bytes(),
        signatures: s
            .signatures
            .iter()
            .map(|g| ManifestSignature {
                member: g.member.clone(),
                signature: g.signature.to_vec(),
            })
            .collect(),
    }
}

/// Encodes records as a bundle and appends a valid end record signed with
/// `key`: what a dishonest exporter could produce.
pub fn encode(records: &[Record], key: &SigningKey) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        BundleRecord {
            record: Some(r.clone()),
        }
        .encode_length_delimited(&mut out)
        .expect("encode");
    }
    let digest: [u8; 32] = Sha256::digest(&out).into();
    let end = BundleEnd {
        records: records.len() as u64,
        bytes: out.len() as u64,
        sha256: digest.to_vec(),
        signature: key
            .sign(&bundle_signing_message(&digest))
            .to_bytes()
            .to_vec(),
    };
    BundleRecord {
        record: Some(Record::End(end)),
    }
    .encode_length_delimited(&mut out)
    .expect("encode");
    out
}
