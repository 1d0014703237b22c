//! Issue 8: hostile input to every parser and verifier of `lienthong-core`.
//!
//! Random and mutated bytes go to the envelope decoder and verifier, the
//! manifest readers (wire form and TOML), the agreement reader, the
//! validators of alerts and coordination entries and the delivery check.
//! Each must answer with a value or an error, never panic; valid inputs
//! must round-trip, and a mutated signed input must never verify.
//!
//! Case counts are fixed and small and the seed is fixed, so the whole file
//! runs in a few seconds and a failure reproduces.

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use lienthong_core::agreement::{Agreement, decide};
use lienthong_core::alert::validate_alert;
use lienthong_core::coordination::validate::{
    validate_assistance_answer, validate_assistance_request, validate_case_event,
    validate_inspection_event, validate_meeting, validate_reason,
};
use lienthong_core::delivery::{
    AuthorKeys, Delivery, accept_entry, verify_author_checkpoint, verify_delivery,
    verify_delivery_under, verify_entries,
};
use lienthong_core::entry::{
    ENTRY_FORMAT, MAX_ENVELOPE_BYTES, VerifiedEntry, decode_envelope, sign_entry, verify_envelope,
};
use lienthong_core::manifest::{
    Manifest, ManifestChain, Member, SignedManifest, accept_next, format_vkey, parse_vkey,
    sign_manifest,
};
use lienthong_core::proto::{
    Alert, AssistanceAnswer, AssistanceRequest, CaseEvent, EntryBody, Envelope, InspectionEvent,
    Location, Meeting, SignedManifestVersion, Subject, Vehicle, entry_body::Payload, subject,
};
use lienthong_log::{
    Hash, MemoryHashStore, NoteSigner, TreeHead, inclusion_proof, sign_checkpoint,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use prost::Message as _;

const FED: &str = "lienthong.example/bac-bo-11";
/// 2026-11-15, the clock every validator is given.
const NOW: i64 = 1_794_700_800_000;

/// Case counts and seed. CI runs these counts with a fixed seed; the long
/// run scales them and picks another seed:
/// `LIENTHONG_FUZZ_SCALE=200 LIENTHONG_FUZZ_SEED=7 cargo test --release --test hostile_input`.
fn cfg(cases: u32) -> Config {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let scale = env("LIENTHONG_FUZZ_SCALE").unwrap_or(1).clamp(1, 100_000) as u32;
    Config {
        cases: cases.saturating_mul(scale),
        // Nothing is written next to the sources; the seed is fixed instead.
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(env("LIENTHONG_FUZZ_SEED").unwrap_or(0x1e27_7407_0008)),
        ..Config::default()
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn sample_alert(reference: &str) -> Alert {
    Alert {
        reference: reference.into(),
        category: 3,
        severity: 3,
        title: "Phát hiện mỹ phẩm giả nhãn hiệu Ohui".into(),
        description: "Xe tải chở 120 thùng hàng giả, không hóa đơn.".into(),
        location: Some(Location {
            province: "20".into(),
            commune: "Xã Đồng Đăng".into(),
            address: "QL1A".into(),
        }),
        observed_unix_ms: NOW - 3_600_000,
        subjects: vec![Subject {
            kind: Some(subject::Kind::Vehicle(Vehicle {
                plate: "12C-045.67".into(),
                country: String::new(),
                description: "xe tải".into(),
            })),
        }],
        concerned_provinces: vec!["24".into()],
        ..Default::default()
    }
}

fn body(index: u64, audience: &[&str]) -> EntryBody {
    EntryBody {
        format: ENTRY_FORMAT,
        author: "20".into(),
        index,
        created_unix_ms: NOW,
        audience: audience.iter().map(|s| (*s).to_owned()).collect(),
        manifest_version: 1,
        agreement_hash: vec![7; 32],
        handling: 1,
        response_deadline_hours: 0,
        payload: Some(Payload::Alert(sample_alert(&format!("ls-{index}")))),
    }
}

/// Applies one of several mutations to `bytes`, driven by `ops`.
fn mutate(bytes: &mut Vec<u8>, ops: &[(u8, usize, u8)]) {
    for &(op, pos, val) in ops {
        let len = bytes.len();
        match op % 6 {
            0 if len > 0 => bytes[pos % len] ^= 1 << (val % 8),
            1 if len > 0 => bytes[pos % len] = val,
            2 => bytes.insert(pos % (len + 1), val),
            3 if len > 0 => {
                bytes.remove(pos % len);
            }
            4 => bytes.truncate(pos % (len + 1)),
            5 if len > 0 => {
                // Duplicate a slice: repeated fields and fields given twice.
                let a = pos % len;
                let b = (a + usize::from(val) + 1).min(len);
                let dup = bytes[a..b].to_vec();
                let at = (pos / 7) % (len + 1);
                bytes.splice(at..at, dup);
            }
            _ => bytes.push(val),
        }
    }
}

fn ops() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)
}

// ---------------------------------------------------------------------------
// Entries

proptest! {
    #![proptest_config(cfg(512))]

    /// Random bytes: an error or a value, and the size limit holds.
    #[test]
    fn envelope_decoder_takes_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_envelope(&bytes);
        prop_assert!(verify_envelope(&bytes, "20", &key(1).verifying_key()).is_err());
    }

    /// A random `EntryBody` wrapped in an envelope with a random signature:
    /// decodes or not, never verifies.
    #[test]
    fn random_body_with_random_signature_never_verifies(
        body_bytes in prop::collection::vec(any::<u8>(), 0..256),
        sig in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let env = Envelope { body: body_bytes, signature: sig }.encode_to_vec();
        let _ = decode_envelope(&env);
        prop_assert!(verify_envelope(&env, "20", &key(1).verifying_key()).is_err());
    }
}

fn signed_entry() -> &'static VerifiedEntry {
    static E: OnceLock<VerifiedEntry> = OnceLock::new();
    E.get_or_init(|| sign_entry(body(3, &["20", "24"]), &key(9)))
}

proptest! {
    #![proptest_config(cfg(384))]

    /// Any single bit flip of a signed envelope fails to decode or verify.
    #[test]
    fn single_bit_flip_never_verifies(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = signed_entry().envelope().to_vec();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let _ = decode_envelope(&bytes);
        prop_assert!(verify_envelope(&bytes, "20", &key(9).verifying_key()).is_err(),
            "bit {} of byte {} flipped and it still verifies", bit, i);
    }

    /// Several mutations (flips, overwrites, insertions, deletions,
    /// truncations, duplications): never panics; if it verifies, the signed
    /// body is byte for byte the original one.
    #[test]
    fn mutated_envelope_verifies_only_with_the_signed_body(ops in ops()) {
        let original = signed_entry();
        let mut bytes = original.envelope().to_vec();
        mutate(&mut bytes, &ops);
        let _ = decode_envelope(&bytes);
        if let Ok(v) = verify_envelope(&bytes, "20", &key(9).verifying_key()) {
            prop_assert_eq!(v.body(), original.body());
        }
    }

    /// Round trip: any index, title and audience signs, verifies and
    /// decodes to the same body.
    #[test]
    fn signed_entries_round_trip(index in any::<u64>(), title in "\\PC{0,60}", n in 0usize..5) {
        let mut b = body(index, &["01", "20", "24", "19", "22"][..n]);
        if let Some(Payload::Alert(a)) = &mut b.payload {
            a.title = title;
        }
        let e = sign_entry(b.clone(), &key(4));
        let v = verify_envelope(e.envelope(), "20", &key(4).verifying_key());
        prop_assert!(v.is_ok());
        prop_assert_eq!(v.map(|v| v.body().clone()).ok(), Some(b.clone()));
        prop_assert_eq!(decode_envelope(e.envelope()).map(|x| x.1).ok(), Some(b));
    }
}

#[test]
fn oversized_envelope_is_refused_before_decoding() {
    let big = vec![0xffu8; MAX_ENVELOPE_BYTES + 1];
    assert!(decode_envelope(&big).is_err());
    assert!(verify_envelope(&big, "20", &key(1).verifying_key()).is_err());
    // A length prefix promising 4 GiB inside a small envelope.
    let lie = [0x0a, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3];
    assert!(decode_envelope(&lie).is_err());
}

/// Regression: an unknown field appended after the signature still decodes
/// to the same body and signature, which gave one signed entry a second
/// entry id; envelopes must now be in their one canonical encoding.
#[test]
fn an_envelope_with_an_unknown_field_is_refused() {
    let e = signed_entry();
    let mut bytes = e.envelope().to_vec();
    // Field 15, varint, value 1.
    bytes.extend_from_slice(&[0x78, 0x01]);
    let r = verify_envelope(&bytes, "20", &key(9).verifying_key());
    assert!(
        r.is_err(),
        "a re-encoded envelope verifies with id {} instead of {}",
        r.map(|v| v.id().to_hex()).unwrap_or_default(),
        e.id().to_hex()
    );
}

// ---------------------------------------------------------------------------
// Manifest and agreement

const AGREEMENT: &str = r#"
[coordination]
assistance_deadline_hours = 48
escalate_to = ["01"]

[neighbours]
"20" = ["24", "19"]
"24" = ["01"]

[[rules]]
name = "critical-to-all"
when = { min_severity = "critical" }
audience = "all"
handling = "H1"
response_deadline_hours = 24
redact = [
  { field = "person.citizen_id", except_to = ["observed", "concerned"] },
]

[[rules]]
name = "border"
when = { categories = ["smuggling", "counterfeit"], provinces = ["20"] }
audience = { neighbours_of = { observed = true, concerned = true } }
handling = "H2"

[[rules]]
name = "bilateral"
when = { categories = ["food_safety"] }
audience = { members = ["01", "24"] }
handling = "H0"

[[rules]]
name = "default"
audience = "author_only"
handling = "H3"
"#;

const CODES: [&str; 4] = ["01", "19", "20", "24"];

fn member(code: &str) -> Member {
    Member {
        code: code.into(),
        endpoint: format!("10.0.0.{}:7443", code.parse::<u8>().unwrap_or(1)),
        name: format!("Tỉnh {code}"),
        signing_key: format_vkey(&format!("{FED}/{code}"), &member_key(code).verifying_key()),
        tls_spki_sha256: format!("{:0>64}", code),
    }
}

fn member_key(code: &str) -> SigningKey {
    key(code.parse::<u8>().unwrap_or(0).wrapping_add(100))
}

fn manifest() -> Manifest {
    Manifest {
        agreement: Agreement::from_toml(AGREEMENT).expect("the test agreement is valid"),
        federation: FED.into(),
        members: CODES.iter().map(|c| member(c)).collect(),
        // Written out: the canonical form always carries the number.
        quorum: Some(3),
        version: 1,
    }
}

fn signed_manifest() -> &'static SignedManifest {
    static M: OnceLock<SignedManifest> = OnceLock::new();
    M.get_or_init(|| {
        let m = manifest();
        let signatures = CODES
            .iter()
            .map(|c| sign_manifest(&m, c, &member_key(c)))
            .collect();
        SignedManifest {
            manifest: m,
            signatures,
        }
    })
}

const MANIFEST_TOML_HEAD: &str =
    "federation = \"lienthong.example/bac-bo-11\"\nquorum = 3\nversion = 1\n";

fn membership_toml() -> String {
    let mut t = MANIFEST_TOML_HEAD.to_owned();
    for c in CODES {
        let m = member(c);
        t.push_str(&format!(
            "\n[[members]]\ncode = {:?}\nendpoint = {:?}\nname = {:?}\nsigning_key = {:?}\ntls_spki_sha256 = {:?}\n",
            m.code, m.endpoint, m.name, m.signing_key, m.tls_spki_sha256
        ));
    }
    t
}

#[test]
fn valid_manifest_and_agreement_round_trip() {
    let s = signed_manifest();
    let back = SignedManifest::from_proto(&s.to_proto()).expect("wire form reads back");
    assert_eq!(&back, s);
    let v = accept_next(None, &back).expect("signed by all four");
    assert_eq!(v.manifest(), &s.manifest);
    let chain = ManifestChain::from_versions(std::slice::from_ref(s)).expect("a chain");
    assert_eq!(chain.current().version(), 1);

    let from_files = Manifest::from_toml_with_agreement(&membership_toml(), AGREEMENT)
        .expect("membership and agreement files");
    assert_eq!(from_files, s.manifest);
    let toml_text = format!(
        "{}\n[agreement]\n{}",
        membership_toml(),
        AGREEMENT
            .replace("[[rules]]", "[[agreement.rules]]")
            .replace("[coordination]", "[agreement.coordination]")
            .replace("[neighbours]", "[agreement.neighbours]")
    );
    assert_eq!(
        Manifest::from_toml(&toml_text).expect("one file"),
        s.manifest
    );

    let a = Agreement::from_toml(AGREEMENT).expect("valid");
    let json: Agreement = serde_json::from_slice(&a.canonical_bytes()).expect("canonical JSON");
    assert_eq!(json, a);
    assert_eq!(json.canonical_bytes(), a.canonical_bytes());
}

proptest! {
    #![proptest_config(cfg(512))]

    /// The wire form from random protobuf bytes, and from random JSON.
    #[test]
    fn signed_manifest_from_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(s) = SignedManifestVersion::decode(bytes.as_slice())
            .map_err(|e| e.to_string())
            .and_then(|p| SignedManifest::from_proto(&p).map_err(|e| e.to_string()))
        {
            let _ = accept_next(None, &s);
        }
        let p = SignedManifestVersion { canonical_manifest: bytes, signatures: vec![] };
        prop_assert!(SignedManifest::from_proto(&p).is_err());
    }

    /// Random text as TOML manifest, membership, agreement and vkey.
    #[test]
    fn toml_readers_take_random_text(text in "\\PC{0,300}") {
        let _ = Manifest::from_toml(&text);
        let _ = Manifest::from_toml_with_agreement(&text, &text);
        let _ = Agreement::from_toml(&text);
        prop_assert!(parse_vkey(&text).is_err());
    }
}

proptest! {
    #![proptest_config(cfg(256))]

    /// The signed wire form, mutated: either it does not read, or it is not
    /// accepted, or (mutations outside the signed bytes, e.g. a signature
    /// duplicated) it is exactly the manifest that was signed.
    #[test]
    fn mutated_signed_manifest_is_never_accepted_as_another(ops in ops()) {
        let original = signed_manifest();
        let mut bytes = original.to_proto().encode_to_vec();
        mutate(&mut bytes, &ops);
        let Ok(p) = SignedManifestVersion::decode(bytes.as_slice()) else { return Ok(()) };
        let Ok(s) = SignedManifest::from_proto(&p) else { return Ok(()) };
        if let Ok(v) = accept_next(None, &s) {
            prop_assert_eq!(v.manifest(), &original.manifest);
        }
        if let Ok(chain) = ManifestChain::from_versions(&[original.clone(), s.clone()]) {
            prop_assert_eq!(chain.current().version(), 2);
        }
    }

    /// The canonical JSON, mutated (signatures kept): never accepted.
    #[test]
    fn mutated_canonical_manifest_is_refused(ops in ops()) {
        let original = signed_manifest();
        let mut p = original.to_proto();
        mutate(&mut p.canonical_manifest, &ops);
        if p.canonical_manifest == original.manifest.canonical_bytes() {
            return Ok(());
        }
        if let Ok(s) = SignedManifest::from_proto(&p) {
            prop_assert!(accept_next(None, &s).is_err());
        }
    }

    /// The manifest and agreement TOML, mutated: an error or a manifest
    /// that passes its own checks.
    #[test]
    fn mutated_toml_never_panics(ops in ops(), which in 0u8..3) {
        let mut bytes = match which {
            0 => membership_toml().into_bytes(),
            _ => AGREEMENT.as_bytes().to_vec(),
        };
        mutate(&mut bytes, &ops);
        let text = String::from_utf8_lossy(&bytes);
        match which {
            0 => {
                if let Ok(m) = Manifest::from_toml_with_agreement(&text, AGREEMENT) {
                    prop_assert!(m.problems().is_empty());
                    let _ = SignedManifest::from_proto(&SignedManifest { manifest: m, signatures: vec![] }.to_proto());
                }
            }
            1 => {
                if let Ok(a) = Agreement::from_toml(&text) {
                    prop_assert!(a.problems("", None).is_empty());
                    let json: Result<Agreement, _> = serde_json::from_slice(&a.canonical_bytes());
                    prop_assert_eq!(json.ok(), Some(a));
                }
            }
            _ => {
                let _ = Manifest::from_toml_with_agreement(&membership_toml(), &text);
            }
        }
    }

    /// Random vkeys built from plausible parts.
    #[test]
    fn vkey_parser_takes_plausible_garbage(
        name in "[a-z./0-9+ ]{0,30}",
        id in "[0-9a-fA-Fxg]{0,10}",
        b64 in "[A-Za-z0-9+/=]{0,60}",
    ) {
        let _ = parse_vkey(&format!("{name}+{id}+{b64}"));
    }
}

// ---------------------------------------------------------------------------
// Alerts and coordination entries

fn validate_all(bytes: &[u8]) {
    if let Ok(a) = Alert::decode(bytes) {
        if let Ok(v) = validate_alert(Some(&a), NOW) {
            // The normalised form is valid and normalises to itself.
            let again = validate_alert(Some(v.get()), NOW).expect("a valid alert stays valid");
            assert_eq!(again.get(), v.get());
        }
        let agreement = Agreement::from_toml(AGREEMENT).expect("valid");
        let members: Vec<String> = CODES.iter().map(|c| (*c).to_owned()).collect();
        let _ = decide(&agreement, &members, "20", &a);
    }
    if let Ok(e) = CaseEvent::decode(bytes) {
        let _ = validate_case_event(Some(&e), NOW);
    }
    if let Ok(r) = AssistanceRequest::decode(bytes) {
        let _ = validate_assistance_request(Some(&r), NOW);
    }
    if let Ok(a) = AssistanceAnswer::decode(bytes) {
        let _ = validate_assistance_answer(Some(&a));
    }
    if let Ok(e) = InspectionEvent::decode(bytes) {
        let _ = validate_inspection_event(Some(&e), NOW);
    }
    if let Ok(m) = Meeting::decode(bytes) {
        let _ = validate_meeting(Some(&m), NOW);
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = validate_reason("reason", s);
    }
}

proptest! {
    #![proptest_config(cfg(1024))]

    /// Random bytes decoded as each submitted message, then validated.
    #[test]
    fn validators_take_random_messages(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        validate_all(&bytes);
    }

    /// A valid alert's encoding, mutated, then validated.
    #[test]
    fn validators_take_mutated_alerts(ops in ops()) {
        let mut bytes = sample_alert("ls-1").encode_to_vec();
        mutate(&mut bytes, &ops);
        validate_all(&bytes);
    }

    /// Alerts with hostile field values: huge numbers, odd text, many
    /// subjects; validation answers and never panics.
    #[test]
    fn alert_fields_at_their_limits(
        category in any::<i32>(),
        severity in any::<i32>(),
        observed in prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), any::<i64>()],
        title in "\\PC{0,320}",
        province in "\\PC{0,4}",
        subjects in 0usize..104,
        size in any::<u64>(),
    ) {
        let mut a = sample_alert("ls-2");
        a.category = category;
        a.severity = severity;
        a.observed_unix_ms = observed;
        a.title = title;
        if let Some(l) = &mut a.location {
            l.province = province;
        }
        a.subjects = vec![a.subjects[0].clone(); subjects];
        a.attachments = vec![lienthong_core::proto::Attachment {
            sha256: vec![1; 32],
            media_type: "image/png".into(),
            size_bytes: size,
            name: "ảnh.png".into(),
        }];
        let r = validate_alert(Some(&a), NOW);
        if subjects > 100 {
            let e = r.err().map(|e| e.to_string()).unwrap_or_default();
            prop_assert!(e.contains("alert.subjects"), "{}", e);
        } else if let Ok(v) = r {
            prop_assert_eq!(validate_alert(Some(v.get()), NOW).ok().map(|x| x.into_inner()), Some(v.into_inner()));
        }
    }
}

#[test]
fn validators_refuse_oversized_text_naming_the_field() {
    let mut a = sample_alert("ls-3");
    a.description = "a".repeat(20_001);
    let e = validate_alert(Some(&a), NOW)
        .expect_err("too long")
        .to_string();
    assert!(e.contains("alert.description"), "{e}");
    let e = validate_reason("case_event.reason", &"x".repeat(2_001))
        .expect_err("too long")
        .to_string();
    assert!(e.contains("case_event.reason"), "{e}");
    assert!(validate_alert(None, NOW).is_err());
    assert!(validate_case_event(None, NOW).is_err());
    assert!(validate_assistance_request(None, NOW).is_err());
    assert!(validate_assistance_answer(None).is_err());
    assert!(validate_inspection_event(None, NOW).is_err());
    assert!(validate_meeting(None, NOW).is_err());
}

// ---------------------------------------------------------------------------
// Deliveries

struct Feed {
    envelopes: Vec<Vec<u8>>,
    note: String,
    proofs: Vec<Vec<Hash>>,
    keys: AuthorKeys,
}

const FEED_SIZE: u64 = 11;

fn feed() -> &'static Feed {
    static F: OnceLock<Feed> = OnceLock::new();
    F.get_or_init(|| {
        let k = key(20);
        let origin = format!("{FED}/20");
        let mut store = MemoryHashStore::new();
        let mut envelopes = Vec::new();
        for i in 0..FEED_SIZE {
            let e = sign_entry(body(i, &["20", "24"]), &k);
            store.append(Hash(e.id().0)).expect("append");
            envelopes.push(e.envelope().to_vec());
        }
        let head = TreeHead {
            origin: origin.clone(),
            size: FEED_SIZE,
            root: store.root().expect("root"),
        };
        let note = sign_checkpoint(&head, &NoteSigner::new(&origin, k.clone()).expect("signer"))
            .expect("sign");
        let proofs = (0..FEED_SIZE)
            .map(|i| inclusion_proof(i, FEED_SIZE, &store).expect("proof"))
            .collect();
        Feed {
            envelopes,
            note,
            proofs,
            keys: AuthorKeys::single("20", &origin, k.verifying_key()),
        }
    })
}

#[test]
fn honest_deliveries_are_accepted() {
    let f = feed();
    for i in 0..FEED_SIZE as usize {
        let d = Delivery {
            envelope: &f.envelopes[i],
            checkpoint: f.note.as_bytes(),
            inclusion_proof: &f.proofs[i],
        };
        let a = verify_delivery(d, &f.keys, "24", 0).expect("honest delivery");
        assert_eq!(a.entry().index(), i as u64);
    }
}

proptest! {
    #![proptest_config(cfg(256))]

    /// One delivery with its proof, checkpoint or envelope mutated (or
    /// another entry's proof, or a proof of absurd length): refused.
    #[test]
    fn mutated_deliveries_are_refused(
        i in 0usize..FEED_SIZE as usize,
        what in 0u8..7,
        ops in ops(),
        other in 0usize..FEED_SIZE as usize,
        extra in 1usize..300,
        h in any::<[u8; 32]>(),
    ) {
        let f = feed();
        let mut envelope = f.envelopes[i].clone();
        let mut note = f.note.clone().into_bytes();
        let mut proof = f.proofs[i].clone();
        match what {
            0 => mutate(&mut envelope, &ops),
            1 => mutate(&mut note, &ops),
            2 => {
                let mut flat: Vec<u8> = proof.iter().flat_map(|x| x.0).collect();
                mutate(&mut flat, &ops);
                proof = flat.chunks_exact(32).map(|c| {
                    let mut x = [0u8; 32];
                    x.copy_from_slice(c);
                    Hash(x)
                }).collect();
            }
            3 => proof = f.proofs[other].clone(),
            4 => proof.extend(std::iter::repeat_n(Hash(h), extra)),
            5 => proof.truncate(ops.len() % proof.len().max(1)),
            _ => proof.insert(ops.len() % (proof.len() + 1), Hash(h)),
        }
        let unchanged = envelope == f.envelopes[i] && note == f.note.as_bytes() && proof == f.proofs[i];
        let d = Delivery { envelope: &envelope, checkpoint: &note, inclusion_proof: &proof };
        let r = verify_delivery(d, &f.keys, "24", 0);
        if unchanged {
            prop_assert!(r.is_ok());
        } else if let Ok(a) = r {
            // Only a change outside what is signed or proven may pass:
            // the same entry, under the same tree head.
            prop_assert_eq!(a.entry().envelope(), f.envelopes[i].as_slice());
            prop_assert_eq!(a.checkpoint().size(), FEED_SIZE);
            prop_assert!(a.inclusion_proof() == f.proofs[i].as_slice());
        }
    }

    /// The feed's envelopes, some mutated, checked as one batch: each gets
    /// the answer it gets alone, in order, whatever its neighbours are.
    #[test]
    fn a_batch_of_envelopes_gets_the_answers_each_gets_alone(
        picks in prop::collection::vec((0usize..FEED_SIZE as usize, any::<bool>(), ops()), 0..24),
    ) {
        let f = feed();
        let cp = verify_author_checkpoint(f.note.as_bytes(), &f.keys).expect("checkpoint");
        let envelopes: Vec<Vec<u8>> = picks
            .iter()
            .map(|(i, mutated, ops)| {
                let mut e = f.envelopes[*i].clone();
                if *mutated {
                    mutate(&mut e, ops);
                }
                e
            })
            .collect();
        let refs: Vec<&[u8]> = envelopes.iter().map(Vec::as_slice).collect();
        let batch = verify_entries(&refs, &f.keys);
        prop_assert_eq!(batch.len(), envelopes.len());
        for ((e, (i, _, _)), b) in envelopes.iter().zip(&picks).zip(batch) {
            let alone = verify_delivery_under(e, &f.proofs[*i], &cp, &f.keys, "24", 0);
            let together = b.and_then(|v| accept_entry(v, &f.proofs[*i], &cp, &f.keys, "24", 0));
            match (alone, together) {
                (Ok(a), Ok(t)) => prop_assert_eq!(a.entry(), t.entry()),
                (Err(a), Err(t)) => prop_assert_eq!(a.to_string(), t.to_string()),
                (a, t) => prop_assert!(false, "alone {:?}, in a batch {:?}", a.map(|_| ()), t.map(|_| ())),
            }
            if e == &f.envelopes[*i] {
                let again = verify_entries(&[e.as_slice()], &f.keys).pop();
                prop_assert!(again.is_some_and(|r| r.is_ok_and(|s| s.entry().envelope() == e.as_slice())));
            }
        }
    }

    /// Delivery from random bytes in every part, with any next index.
    #[test]
    fn random_deliveries_are_refused(
        envelope in prop::collection::vec(any::<u8>(), 0..300),
        note in prop::collection::vec(any::<u8>(), 0..300),
        proof in prop::collection::vec(any::<[u8; 32]>(), 0..70),
        next in any::<u64>(),
    ) {
        let f = feed();
        let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
        let d = Delivery { envelope: &envelope, checkpoint: &note, inclusion_proof: &proof };
        prop_assert!(verify_delivery(d, &f.keys, "24", next).is_err());
        // A real checkpoint and envelope with a random proof and index.
        let d = Delivery { envelope: &f.envelopes[3], checkpoint: f.note.as_bytes(), inclusion_proof: &proof };
        prop_assert!(verify_delivery(d, &f.keys, "24", next).is_err());
    }
}

/// A checkpoint of absurd size signed by the author: the entry is still
/// checked against it without overflow, and refused.
#[test]
fn a_checkpoint_of_size_u64_max_is_handled() {
    let f = feed();
    let k = key(20);
    let origin = format!("{FED}/20");
    let signer = NoteSigner::new(&origin, k).expect("signer");
    for size in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 62) + 1, 1 << 62] {
        let note = sign_checkpoint(
            &TreeHead {
                origin: origin.clone(),
                size,
                root: Hash([3; 32]),
            },
            &signer,
        )
        .expect("sign");
        for proof in [vec![], f.proofs[3].clone(), vec![Hash([1; 32]); 64]] {
            let d = Delivery {
                envelope: &f.envelopes[3],
                checkpoint: note.as_bytes(),
                inclusion_proof: &proof,
            };
            assert!(verify_delivery(d, &f.keys, "24", 0).is_err(), "size {size}");
        }
    }
}
