//! The manifest and its quorum rule: issue 4 item 1 and the `manifest`
//! module docs. Scenarios: genesis of the eleven northern provinces,
//! 75 Đồng Nai joining through a bilateral agreement with 01 Hà Nội, and a
//! member rotating its signing key.

use ed25519_dalek::SigningKey;
use lienthong_core::agreement::{Agreement, Audience, Handling, Match, Rule, decide};
use lienthong_core::manifest::{
    Manifest, ManifestChain, ManifestError, Member, SignedManifest, VerifiedManifest, accept_next,
    format_vkey, parse_vkey, sign_manifest,
};
use lienthong_core::provinces::province_name;
use sha2::{Digest, Sha256};

use crate::agreement::{SHIPPED, alert, eleven};

const FED: &str = "lienthong.example/bac-bo-11";

/// A deterministic key per member code and generation (0 = first key).
fn key(code: &str, generation: u8) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("test key {code} {generation}")).into();
    SigningKey::from_bytes(&seed)
}

fn member(code: &str, generation: u8) -> Member {
    Member {
        code: code.into(),
        endpoint: format!("127.0.0.1:74{code}"),
        name: province_name(code).unwrap_or("?").into(),
        signing_key: format_vkey(
            &format!("{FED}/{code}"),
            &key(code, generation).verifying_key(),
        ),
        tls_spki_sha256: hex::encode(Sha256::digest(format!("spki {code} {generation}"))),
    }
}

fn genesis() -> Manifest {
    Manifest {
        agreement: Agreement::from_toml(SHIPPED).unwrap(),
        federation: FED.into(),
        members: eleven().iter().map(|c| member(c, 0)).collect(),
        quorum: None,
        version: 1,
    }
}

fn signed_by(m: &Manifest, signers: &[(&str, u8)]) -> SignedManifest {
    SignedManifest {
        manifest: m.clone(),
        signatures: signers
            .iter()
            .map(|(c, g)| sign_manifest(m, c, &key(c, *g)))
            .collect(),
    }
}

const MAJORITY: [(&str, u8); 6] = [
    ("01", 0),
    ("04", 0),
    ("15", 0),
    ("19", 0),
    ("20", 0),
    ("22", 0),
];

fn in_force() -> VerifiedManifest {
    accept_next(None, &signed_by(&genesis(), &MAJORITY)).expect("genesis signed by a majority")
}

/// Version 2: 75 Đồng Nai joins; alerts concerning it go only to 01 and 75.
fn with_dong_nai() -> Manifest {
    let mut m = genesis();
    m.version = 2;
    m.members.push(member("75", 0));
    m.agreement.rules.insert(
        0,
        Rule {
            name: "bilateral-01-75".into(),
            when: Match {
                provinces: vec!["75".into()],
                ..Default::default()
            },
            audience: Audience::Members(vec!["01".into(), "75".into()]),
            handling: Handling::H1,
            redact: vec![],
            response_deadline_hours: Some(72),
        },
    );
    m
}

#[test]
fn genesis_needs_a_majority_of_its_own_members() {
    let v = in_force();
    assert_eq!(v.version(), 1);
    assert_eq!(v.manifest().effective_quorum(), 6);
    assert_eq!(v.signers(), ["01", "04", "15", "19", "20", "22"]);
    assert_eq!(v.hash(), genesis().hash());
    assert!(v.member_key("20").is_some() && v.member_key("75").is_none());

    let err = accept_next(None, &signed_by(&genesis(), &MAJORITY[..5])).unwrap_err();
    assert!(
        matches!(err, ManifestError::QuorumNotMet { needed: 6, ref valid, .. } if valid.len() == 5)
    );
    let msg = err.to_string();
    assert!(
        msg.contains("5 valid signature(s) (from 01, 04, 15, 19, 20)"),
        "{msg}"
    );
    assert!(msg.contains("needs 6"), "{msg}");

    let mut g = genesis();
    g.version = 2;
    assert_eq!(
        accept_next(None, &signed_by(&g, &MAJORITY)).unwrap_err(),
        ManifestError::WrongVersion {
            expected: 1,
            found: 2
        }
    );
}

#[test]
fn dong_nai_joins_with_a_majority_of_the_eleven() {
    let v1 = in_force();
    let v2 = accept_next(Some(&v1), &signed_by(&with_dong_nai(), &MAJORITY)).expect("accepted");
    assert_eq!(v2.version(), 2);
    assert_eq!(v2.member_codes().len(), 12);
    assert!(v2.member_key("75").is_some());
    // v2's quorum is a majority of twelve.
    assert_eq!(v2.manifest().effective_quorum(), 7);

    // Under v2, an alert concerning 75 goes to 01 and 75 only.
    let m = v2.member_codes();
    let d = decide(
        &v2.manifest().agreement,
        &m,
        "01",
        &alert(3, 3, "01", &["75"], vec![]),
    );
    assert_eq!(
        (d.rule.as_str(), d.audience),
        ("bilateral-01-75", vec!["01".to_string(), "75".to_string()])
    );
}

#[test]
fn dong_nai_refused_with_a_minority_and_its_own_signature_does_not_count() {
    let v1 = in_force();
    let err = accept_next(
        Some(&v1),
        &signed_by(
            &with_dong_nai(),
            &[
                ("01", 0),
                ("04", 0),
                ("15", 0),
                ("19", 0),
                ("20", 0),
                ("75", 0),
            ],
        ),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(
        err,
        ManifestError::QuorumNotMet {
            needed: 6,
            signers_of: Some(1),
            ..
        }
    ));
    assert!(msg.contains("has 5 valid signature(s)"), "{msg}");
    assert!(msg.contains("\"75\" is not a member of version 1"), "{msg}");
}

#[test]
fn key_rotation_is_signed_with_the_old_key() {
    let v1 = in_force();
    let mut rotated = genesis();
    rotated.version = 2;
    rotated.members[4] = member("20", 1); // 20 Lạng Sơn rotates its key
    // 20 signs with its old key, which version 1 lists: counts.
    let old = [
        ("20", 0),
        ("01", 0),
        ("04", 0),
        ("15", 0),
        ("19", 0),
        ("22", 0),
    ];
    let v2 = accept_next(Some(&v1), &signed_by(&rotated, &old)).expect("accepted");
    assert_eq!(v2.member_key("20"), Some(&key("20", 1).verifying_key()));

    // 20 signing with its new key does not count for this transition.
    let new = [
        ("20", 1),
        ("01", 0),
        ("04", 0),
        ("15", 0),
        ("19", 0),
        ("22", 0),
    ];
    let err = accept_next(Some(&v1), &signed_by(&rotated, &new)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("has 5 valid signature(s)"), "{msg}");
    assert!(
        msg.contains("20's signature does not verify under its key in version 1"),
        "{msg}"
    );

    // For the next version the new key is the one that counts.
    let mut v3 = rotated.clone();
    v3.version = 3;
    v3.members[0].endpoint = "lienthong.hanoi.example:7443".into();
    assert!(accept_next(Some(&v2), &signed_by(&v3, &new)).is_ok());
    assert!(accept_next(Some(&v2), &signed_by(&v3, &old)).is_err());
}

#[test]
fn wrong_version_and_wrong_federation_are_refused() {
    let v1 = in_force();
    let mut m = with_dong_nai();
    m.version = 3;
    let err = accept_next(Some(&v1), &signed_by(&m, &MAJORITY)).unwrap_err();
    assert_eq!(
        err,
        ManifestError::WrongVersion {
            expected: 2,
            found: 3
        }
    );
    assert!(err.to_string().contains("must be 2"));
    m.version = 1;
    assert!(matches!(
        accept_next(Some(&v1), &signed_by(&m, &MAJORITY)),
        Err(ManifestError::WrongVersion {
            expected: 2,
            found: 1
        })
    ));

    let mut other = genesis();
    other.version = 2;
    other.federation = "lienthong.example/nam-bo".into();
    for mem in &mut other.members {
        mem.signing_key = format_vkey(
            &format!("lienthong.example/nam-bo/{}", mem.code),
            &key(&mem.code, 0).verifying_key(),
        );
    }
    let err = accept_next(Some(&v1), &signed_by(&other, &MAJORITY)).unwrap_err();
    assert!(matches!(err, ManifestError::WrongFederation { .. }));
    assert!(err.to_string().contains("nam-bo"));
}

#[test]
fn duplicates_bad_signatures_and_non_members_do_not_count() {
    let v1 = in_force();
    let m = with_dong_nai();
    let mut s = signed_by(
        &m,
        &[
            ("01", 0),
            ("01", 0),
            ("04", 0),
            ("15", 0),
            ("19", 0),
            ("20", 0),
        ],
    );
    s.signatures.push(sign_manifest(&m, "22", &key("22", 0)));
    s.signatures.last_mut().unwrap().signature[0] ^= 1;
    s.signatures.push(sign_manifest(&m, "99", &key("99", 0)));
    let err = accept_next(Some(&v1), &s).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("has 5 valid signature(s)"), "{msg}");
    assert!(msg.contains("01 signed more than once"), "{msg}");
    assert!(msg.contains("22's signature does not verify"), "{msg}");
    assert!(msg.contains("\"99\" is not a member"), "{msg}");

    // A signature over another version does not carry over.
    let mut s = signed_by(&m, &MAJORITY);
    let mut changed = m.clone();
    changed.members[0].endpoint = "10.9.9.9:7443".into();
    s.manifest = changed;
    assert!(matches!(
        accept_next(Some(&v1), &s),
        Err(ManifestError::QuorumNotMet { .. })
    ));
}

fn toml_of(m: &Manifest) -> String {
    let mut t = format!("federation = {:?}\nversion = {}\n", m.federation, m.version);
    if let Some(q) = m.quorum {
        t += &format!("quorum = {q}\n");
    }
    for mem in &m.members {
        t += &format!(
            "\n[[members]]\ncode = {:?}\nname = {:?}\nendpoint = {:?}\nsigning_key = {:?}\ntls_spki_sha256 = {:?}\n",
            mem.code, mem.name, mem.endpoint, mem.signing_key, mem.tls_spki_sha256
        );
    }
    t += "\n[agreement]\n[[agreement.rules]]\nname = \"default\"\naudience = \"all\"\nhandling = \"H1\"\n";
    t
}

#[test]
fn manifest_toml_parses_and_round_trips_through_the_canonical_form() {
    let text = toml_of(&genesis());
    let m = Manifest::from_toml(&text).expect("valid");
    assert_eq!(m.members, genesis().members);
    assert_eq!(m.quorum, None);
    // Member order and an explicit majority quorum do not change the
    // canonical bytes; the federation name and member data do.
    let mut shuffled = m.clone();
    shuffled.members.reverse();
    shuffled.quorum = Some(6);
    assert_eq!(shuffled.canonical_bytes(), m.canonical_bytes());
    assert_eq!(shuffled.hash(), m.hash());
    let c = String::from_utf8(m.canonical_bytes()).unwrap();
    assert!(
        c.starts_with(r#"{"agreement":{"neighbours":{},"rules":[{"audience":"all","#),
        "{c}"
    );
    assert!(c.contains(r#""federation":"lienthong.example/bac-bo-11","members":[{"code":"01","endpoint":"127.0.0.1:7401","name":"Hà Nội","signing_key":"lienthong.example/bac-bo-11/01+"#), "{c}");
    assert!(c.ends_with(r#""quorum":6,"version":1}"#), "{c}");
}

#[test]
fn manifest_toml_problems_are_each_named() {
    let good = toml_of(&genesis());
    let cases: Vec<(String, &str)> = vec![
        (
            good.replacen("version = 1", "version = 1\nmirror = true", 1),
            "mirror",
        ),
        (
            good.replacen("tls_spki_sha256", "tls_pin = \"x\"\ntls_spki_sha256", 1),
            "tls_pin",
        ),
        (
            good.replace("handling = \"H1\"", "handling = \"H1\"\nshare = 1"),
            "share",
        ),
    ];
    for (text, named) in cases {
        match Manifest::from_toml(&text) {
            Err(ManifestError::Parse(msg)) => assert!(msg.contains(named), "{named}: {msg}"),
            other => panic!("{named}: expected a parse error, got {other:?}"),
        }
    }

    let dup = {
        let mut m = genesis();
        m.members[1] = member("01", 1);
        toml_of(&m)
    };
    let renamed = {
        let mut m = genesis();
        m.members[2].signing_key = format_vkey(&format!("{FED}/19"), &key("15", 0).verifying_key());
        toml_of(&m)
    };
    let bad_id = {
        let mut m = genesis();
        let k = m.members[3].signing_key.clone();
        let (name, rest) = k.split_once('+').unwrap();
        m.members[3].signing_key = format!("{name}+00000000+{}", rest.split_once('+').unwrap().1);
        toml_of(&m)
    };
    let wrong_type = {
        use base64::Engine as _;
        let mut m = genesis();
        // Type byte 0x02 instead of 0x01 (Ed25519).
        let raw = [2u8; 33];
        m.members[0].signing_key = format!(
            "{FED}/01+00000000+{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        toml_of(&m)
    };
    let weak = {
        let mut m = genesis();
        // The identity point: every signature with R = identity and s = 0
        // verifies under it, whatever the message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let k = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        m.members[4].signing_key = format_vkey(&format!("{FED}/{}", m.members[4].code), &k);
        toml_of(&m)
    };
    let mixed = {
        let mut m = genesis();
        // A real key plus a point of order 8: its holder's signatures
        // verify by one Ed25519 equation and not the other.
        let real = key(&m.members[5].code, 0).verifying_key().to_edwards();
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
        let k = ed25519_dalek::VerifyingKey::from_bytes(&(real + torsion).compress().to_bytes())
            .unwrap();
        assert!(!k.is_weak());
        m.members[5].signing_key = format_vkey(&format!("{FED}/{}", m.members[5].code), &k);
        toml_of(&m)
    };
    let cases: Vec<(String, &str)> = vec![
        (
            weak,
            "members[4].signing_key: not a point of the prime-order group",
        ),
        (
            mixed,
            "members[5].signing_key: not a point of the prime-order group",
        ),
        (
            good.replacen("version = 1", "version = 0", 1),
            "version: must be at least 1",
        ),
        (
            good.replacen("version = 1", "version = 1\nquorum = 12", 1),
            "quorum: 12 is more than the 11",
        ),
        (
            good.replacen("version = 1", "version = 1\nquorum = 5", 1),
            "quorum: 5 of 11 is not a majority",
        ),
        (dup, "members[1].code: \"01\" is listed twice"),
        (
            renamed,
            "members[2].signing_key: key is named \"lienthong.example/bac-bo-11/19\" but this member's must be named \"lienthong.example/bac-bo-11/15\"",
        ),
        (bad_id, "the key id does not match the name and key"),
        (
            good.replacen("signing_key = \"", "signing_key = \"x", 1),
            "members[0].signing_key",
        ),
        (wrong_type, "the key type is not Ed25519"),
        (
            good.replacen("127.0.0.1:7401", "127.0.0.1", 1),
            "members[0].endpoint: \"127.0.0.1\" has no port",
        ),
        (
            good.replacen("code = \"37\"", "code = \"02\"", 1),
            "members[10].code: \"02\" is not a province code",
        ),
        (
            good.replace("audience = \"all\"", "audience = { members = [\"75\"] }"),
            "agreement.rules[0].audience.members[0]: \"75\" is not a member",
        ),
    ];
    for (text, needle) in cases {
        match Manifest::from_toml(&text) {
            Err(ManifestError::Invalid(p)) => {
                assert!(
                    p.iter().any(|x| x.contains(needle)),
                    "missing {needle:?} in {p:#?}"
                )
            }
            other => panic!("{needle}: expected problems, got {other:?}"),
        }
    }

    // Several problems at once.
    let mut m = genesis();
    m.version = 0;
    m.members[0].tls_spki_sha256 = "ABC".into();
    m.members[1].tls_spki_sha256 = m.members[2].tls_spki_sha256.clone();
    m.members[3].endpoint = "host:0".into();
    m.quorum = Some(40);
    let Err(ManifestError::Invalid(p)) = Manifest::from_toml(&toml_of(&m)) else {
        panic!("expected problems")
    };
    assert_eq!(p.len(), 5, "{p:#?}");
    assert_eq!(m.problems(), p);
}

#[test]
fn membership_and_shipped_agreement_can_live_in_two_files() {
    let full = toml_of(&genesis());
    let membership = &full[..full.find("\n[agreement]").unwrap()];
    let m = Manifest::from_toml_with_agreement(membership, SHIPPED).expect("valid");
    assert_eq!(m, genesis());

    // Each file's unknown fields are named, with the file they are in.
    let err = Manifest::from_toml_with_agreement(&format!("{membership}\n[agreement]\n"), SHIPPED)
        .unwrap_err();
    assert!(
        matches!(&err, ManifestError::Parse(msg) if msg.starts_with("membership:") && msg.contains("agreement")),
        "{err}"
    );
    let err = Manifest::from_toml_with_agreement(membership, &format!("quorum = 3\n{SHIPPED}"))
        .unwrap_err();
    assert!(
        matches!(&err, ManifestError::Parse(msg) if msg.starts_with("agreement:") && msg.contains("quorum")),
        "{err}"
    );

    // Agreement rules naming a province that is not a member are refused
    // in the manifest, though the agreement alone accepts them.
    let with_75 = SHIPPED.replacen(
        "[[rules]]",
        "[[rules]]\nname = \"bilateral-01-75\"\nwhen = { provinces = [\"75\"] }\naudience = { members = [\"01\", \"75\"] }\nhandling = \"H1\"\n\n[[rules]]",
        1,
    );
    assert!(Agreement::from_toml(&with_75).is_ok());
    let Err(ManifestError::Invalid(p)) = Manifest::from_toml_with_agreement(membership, &with_75)
    else {
        panic!("expected problems")
    };
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("agreement.rules[0].audience.members[1]: \"75\" is not a member"),
        "{p:#?}"
    );
}

#[test]
fn accept_next_rechecks_the_manifest_it_is_given() {
    let mut m = genesis();
    m.members[5].code = "24".into();
    let err = accept_next(None, &signed_by(&m, &MAJORITY)).unwrap_err();
    assert!(
        matches!(err, ManifestError::Invalid(ref p) if p.iter().any(|x| x.contains("listed twice"))),
        "{err}"
    );
}

#[test]
fn vkeys_follow_c2sp_signed_note() {
    // The example key of golang.org/x/mod/sumdb/note.
    let (name, k) =
        parse_vkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
    assert_eq!(name, "PeterNeumann");
    assert_eq!(
        format_vkey("PeterNeumann", &k),
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    );
    for bad in [
        "",
        "a+b",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc",
        "PeterNeumann+zz+AR",
    ] {
        assert!(parse_vkey(bad).is_err(), "{bad}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// How one member takes part in signing a proposal.
    #[derive(Debug, Clone, Copy)]
    enum Part {
        Absent,
        Signs,
        SignsTwice,
        SignsWithWrongKey,
        SignsCorrupted,
    }

    fn arb_part() -> impl Strategy<Value = Part> {
        prop_oneof![
            Just(Part::Absent),
            Just(Part::Signs),
            Just(Part::SignsTwice),
            Just(Part::SignsWithWrongKey),
            Just(Part::SignsCorrupted),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The quorum rule against a model: version 2 is accepted exactly
        /// when at least 6 distinct members of version 1 signed it with
        /// their version-1 key, whatever else is in the signature list.
        #[test]
        fn accepted_iff_a_majority_of_the_version_in_force_signed(
            parts in prop::collection::vec(arb_part(), 11),
            outsider in any::<bool>(),
            shuffle in any::<prop::sample::Index>(),
        ) {
            let v1 = in_force();
            let m = with_dong_nai();
            let mut sigs = Vec::new();
            let mut good = 0;
            for (code, part) in eleven().iter().zip(&parts) {
                match part {
                    Part::Absent => {}
                    Part::Signs => { good += 1; sigs.push(sign_manifest(&m, code, &key(code, 0))); }
                    Part::SignsTwice => {
                        good += 1;
                        sigs.push(sign_manifest(&m, code, &key(code, 0)));
                        sigs.push(sign_manifest(&m, code, &key(code, 0)));
                    }
                    Part::SignsWithWrongKey => sigs.push(sign_manifest(&m, code, &key(code, 1))),
                    Part::SignsCorrupted => {
                        let mut s = sign_manifest(&m, code, &key(code, 0));
                        s.signature[40] ^= 0x80;
                        sigs.push(s);
                    }
                }
            }
            if outsider {
                sigs.push(sign_manifest(&m, "75", &key("75", 0)));
            }
            if !sigs.is_empty() {
                let i = shuffle.index(sigs.len());
                sigs.rotate_left(i);
            }
            let r = accept_next(Some(&v1), &SignedManifest { manifest: m, signatures: sigs });
            match r {
                Ok(v) => {
                    prop_assert!(good >= 6);
                    prop_assert_eq!(v.signers().len(), good);
                }
                Err(ManifestError::QuorumNotMet { valid, needed, .. }) => {
                    prop_assert!(good < 6);
                    prop_assert_eq!((valid.len(), needed), (good, 6));
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        /// Reading untrusted text never panics.
        #[test]
        fn parsers_never_panic(text in "\\PC{0,200}", vkey in "[A-Za-z0-9/+=.]{0,80}") {
            let _ = Manifest::from_toml(&text);
            let _ = Agreement::from_toml(&text);
            let _ = parse_vkey(&text);
            let _ = parse_vkey(&vkey);
        }
    }
}

/// The chain a node keeps: versions in order, keys by version, and what it
/// adopts from a peer's copy.
#[test]
fn chain_tracks_keys_by_version_and_merges_only_what_follows() {
    let v1 = signed_by(&genesis(), &MAJORITY);
    let v2 = signed_by(&with_dong_nai(), &MAJORITY);
    let mut m3 = with_dong_nai();
    m3.version = 3;
    m3.members
        .iter_mut()
        .find(|m| m.code == "24")
        .unwrap()
        .signing_key = format_vkey(&format!("{FED}/24"), &key("24", 1).verifying_key());
    let seven = [
        ("01", 0),
        ("04", 0),
        ("15", 0),
        ("19", 0),
        ("20", 0),
        ("22", 0),
        ("24", 0),
    ];
    let v3 = signed_by(&m3, &seven);

    let full = ManifestChain::from_versions(&[v1.clone(), v2.clone(), v3.clone()]).unwrap();
    assert_eq!(full.current().version(), 3);
    assert_eq!(full.key_at("24", 2), Some(&key("24", 0).verifying_key()));
    assert_eq!(full.key_at("24", 3), Some(&key("24", 1).verifying_key()));
    assert_eq!(full.key_at("75", 1), None);
    assert_eq!(
        full.keys_of("24"),
        vec![key("24", 1).verifying_key(), key("24", 0).verifying_key()]
    );
    assert_eq!(
        full.key_history("75"),
        vec![(1, None), (2, Some(key("75", 0).verifying_key()))]
    );
    assert_eq!(full.signed_after(1).len(), 2);
    // The wire form round-trips, agreement and all.
    // (`quorum` comes back written out, which is the same manifest.)
    for s in full.signed() {
        let back = SignedManifest::from_proto(&s.to_proto()).unwrap();
        assert_eq!(
            back.manifest.canonical_bytes(),
            s.manifest.canonical_bytes()
        );
        assert_eq!(back.signatures, s.signatures);
    }

    // A node at v1 adopts v2 and v3 from a peer, once, and nothing twice.
    let mut behind = ManifestChain::from_versions(std::slice::from_ref(&v1)).unwrap();
    assert_eq!(behind.merge(&full.signed_after(0)).unwrap(), 2);
    assert_eq!(behind, full);
    assert_eq!(behind.merge(&full.signed_after(0)).unwrap(), 0);

    // A different version 2 signed by a majority is a fork: refused.
    let mut other2 = with_dong_nai();
    other2.members.retain(|m| m.code != "75");
    other2.members.push(member("79", 0));
    let mut at_v2 = ManifestChain::from_versions(&[v1.clone(), v2]).unwrap();
    let err = at_v2.merge(&[signed_by(&other2, &MAJORITY)]).unwrap_err();
    assert!(err.to_string().contains("forked"), "{err}");

    // A version without its quorum is refused and changes nothing.
    let mut short = ManifestChain::from_versions(&[v1]).unwrap();
    let err = short
        .merge(&[signed_by(&with_dong_nai(), &MAJORITY[..5])])
        .unwrap_err();
    assert!(matches!(err, ManifestError::QuorumNotMet { .. }));
    assert_eq!(short.current().version(), 1);
    assert!(ManifestChain::from_versions(&[v3]).is_err());
}
