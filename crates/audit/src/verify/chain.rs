//! The manifest chain, from every bundle's copy: canonical bytes, every
//! signature, the quorum rule (`lienthong_core::manifest::accept_next`),
//! agreement between bundles, and the auditor's trust anchors.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use lienthong_core::manifest::{
    MANIFEST_SIGNING_DOMAIN, Manifest, ManifestSignature, SignedManifest, VerifiedManifest,
    accept_next,
};
use lienthong_proto::v1::SignedManifestVersion;

use crate::keys::{KeyTable, TrustAnchor};
use crate::report::{AnchorSummary, Check};
use crate::verify::record::Recorder;

/// One manifest record as read.
#[derive(Debug)]
pub(crate) struct ManifestRecord {
    pub bundle: usize,
    pub record: u64,
    pub offset: u64,
    pub version: SignedManifestVersion,
}

#[derive(Debug)]
pub(crate) struct Chain {
    pub keys: KeyTable,
    pub anchors: Vec<AnchorSummary>,
    /// Per bundle: the newest manifest version it carries.
    pub newest_in_bundle: Vec<u64>,
}

struct Copy {
    bundle: usize,
    record: u64,
    offset: u64,
    canonical: Vec<u8>,
    signed: SignedManifest,
}

/// Builds the trusted chain. Versions are trusted from genesis up to the
/// first one that fails; nothing after a failure is trusted.
pub(crate) fn build(
    records: Vec<ManifestRecord>,
    bundles: usize,
    anchors: &[TrustAnchor],
    require_anchor_signature: bool,
    rec: &mut Recorder,
) -> Chain {
    let mut newest_in_bundle = vec![0u64; bundles];
    let mut by_version: BTreeMap<u64, Vec<Copy>> = BTreeMap::new();
    for r in records {
        let Some(copy) = parse(&r, rec) else { continue };
        let v = copy.signed.manifest.version;
        let expected = newest_in_bundle[r.bundle] + 1;
        if v != expected {
            let loc = rec.at(r.bundle, r.record, r.offset);
            rec.fail(
                Check::Manifest,
                loc,
                format!(
                    "the bundle carries manifest version {v} where version {expected} belongs: versions must run from 1 without gaps or repeats"
                ),
            );
            continue;
        }
        newest_in_bundle[r.bundle] = v;
        by_version.entry(v).or_default().push(copy);
    }

    let mut current: Option<VerifiedManifest> = None;
    let mut trusted: Vec<BTreeMap<String, VerifyingKey>> = Vec::new();
    // (version, member, key) of every manifest signature that verified.
    let mut endorsements: Vec<(u64, String, VerifyingKey)> = Vec::new();
    let mut federation = String::new();
    for (v, copies) in &by_version {
        if *v != trusted.len() as u64 + 1 {
            break;
        }
        let first = &copies[0];
        if let Some(other) = copies.iter().find(|c| c.canonical != first.canonical) {
            rec.fail(
                Check::Manifest,
                rec.at(other.bundle, other.record, other.offset),
                format!(
                    "manifest version {v} here differs from version {v} in {} record {}: two versions with one number mean the federation forked or a bundle was altered; nothing from version {v} on is trusted",
                    rec.names.get(first.bundle).map_or("?", String::as_str),
                    first.record
                ),
            );
            break;
        }
        let mut accepted = None;
        for c in copies {
            let loc = rec.at(c.bundle, c.record, c.offset);
            match accept_next(current.as_ref(), &c.signed) {
                Ok(vm) => {
                    rec.pass(Check::Manifest);
                    accepted.get_or_insert(vm);
                }
                Err(e) => rec.fail(Check::Manifest, loc.clone(), e.to_string()),
            }
            check_each_signature(*v, c, current.as_ref(), rec, &mut endorsements, loc);
        }
        let Some(vm) = accepted else {
            if by_version.len() as u64 > *v {
                rec.fail(
                    Check::Manifest,
                    rec.at_bundle(first.bundle),
                    format!(
                        "manifest versions after {} are not trusted because version {v} was refused; entries and checkpoints that need them cannot be verified",
                        v - 1
                    ),
                );
            }
            break;
        };
        if federation.is_empty() {
            federation = vm.manifest().federation.clone();
        }
        trusted.push(
            vm.member_codes()
                .into_iter()
                .filter_map(|code| vm.member_key(&code).map(|k| (code.clone(), *k)))
                .collect(),
        );
        current = Some(vm);
    }
    if by_version.is_empty() {
        rec.fail(
            Check::Manifest,
            crate::report::Location::default(),
            "no bundle carries a manifest chain, so no key can be trusted",
        );
    }

    let keys = KeyTable::new(&federation, trusted);
    let anchors = check_anchors(anchors, &keys, &endorsements, require_anchor_signature, rec);
    Chain {
        keys,
        anchors,
        newest_in_bundle,
    }
}

fn parse(r: &ManifestRecord, rec: &mut Recorder) -> Option<Copy> {
    let at = rec.at(r.bundle, r.record, r.offset);
    let manifest: Manifest = match serde_json::from_slice(&r.version.canonical_manifest) {
        Ok(m) => m,
        Err(e) => {
            rec.fail(
                Check::Manifest,
                at,
                format!("the manifest bytes are not a manifest: {e}"),
            );
            return None;
        }
    };
    if manifest.canonical_bytes() != r.version.canonical_manifest {
        rec.fail(
            Check::Manifest,
            at,
            format!(
                "manifest version {} is not in canonical form: signatures cover the canonical bytes, and these differ from them",
                manifest.version
            ),
        );
        return None;
    }
    let mut signatures = Vec::new();
    for s in &r.version.signatures {
        match <[u8; 64]>::try_from(s.signature.as_slice()) {
            Ok(signature) => signatures.push(ManifestSignature {
                member: s.member.clone(),
                signature,
            }),
            Err(_) => rec.fail(
                Check::Manifest,
                at.clone(),
                format!(
                    "the signature of {} on manifest version {} is {} bytes, not 64",
                    s.member,
                    manifest.version,
                    s.signature.len()
                ),
            ),
        }
    }
    Some(Copy {
        bundle: r.bundle,
        record: r.record,
        offset: r.offset,
        canonical: r.version.canonical_manifest.clone(),
        signed: SignedManifest {
            manifest,
            signatures,
        },
    })
}

/// Every signature in the bundle must verify, even ones the quorum does
/// not need: a bad one means the record was altered. A signer is checked
/// with its key in the version before (the one that counts for the
/// quorum), or else its key in this version (a member signing with its
/// new key, or one joining).
fn check_each_signature(
    version: u64,
    c: &Copy,
    previous: Option<&VerifiedManifest>,
    rec: &mut Recorder,
    endorsements: &mut Vec<(u64, String, VerifyingKey)>,
    loc: crate::report::Location,
) {
    let mut message = MANIFEST_SIGNING_DOMAIN.to_vec();
    message.extend_from_slice(&c.canonical);
    let listed: BTreeMap<&str, VerifyingKey> = c
        .signed
        .manifest
        .members
        .iter()
        .filter_map(|m| {
            lienthong_core::manifest::parse_vkey(&m.signing_key)
                .ok()
                .map(|(_, k)| (m.code.as_str(), k))
        })
        .collect();
    for s in &c.signed.signatures {
        let candidates: Vec<VerifyingKey> = previous
            .and_then(|p| p.member_key(&s.member).copied())
            .into_iter()
            .chain(listed.get(s.member.as_str()).copied())
            .collect();
        if candidates.is_empty() {
            rec.fail(
                Check::Manifest,
                loc.clone(),
                format!(
                    "manifest version {version} carries a signature by {:?}, which is no member of it or of the version before: no member could have made it, so the record was altered",
                    s.member
                ),
            );
            continue;
        }
        let sig = Signature::from_bytes(&s.signature);
        match candidates.iter().find(|k| k.verify(&message, &sig).is_ok()) {
            Some(k) => endorsements.push((version, s.member.clone(), *k)),
            None => rec.fail(
                Check::Manifest,
                loc.clone(),
                format!(
                    "{}'s signature on manifest version {version} does not verify under any key it holds: the signature or the manifest was altered",
                    s.member
                ),
            ),
        }
    }
}

fn check_anchors(
    anchors: &[TrustAnchor],
    keys: &KeyTable,
    endorsements: &[(u64, String, VerifyingKey)],
    require_signature: bool,
    rec: &mut Recorder,
) -> Vec<AnchorSummary> {
    let at = crate::report::Location::default;
    if anchors.is_empty() {
        rec.fail(
            Check::TrustAnchor,
            at(),
            "no trust anchor given: pass the verifier key of at least one member you trust (`lienthong key show` on that member's node)",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut any_signed = false;
    for a in anchors {
        let listed: Vec<u64> = (1..=keys.newest())
            .filter(|&v| keys.key_at(a.member(), v).ok() == Some(a.key()))
            .collect();
        let signed: Vec<u64> = endorsements
            .iter()
            .filter(|(_, m, k)| m == a.member() && k == a.key())
            .map(|(v, _, _)| *v)
            .collect();
        if a.federation() != keys.federation() {
            rec.fail(
                Check::TrustAnchor,
                at().author(a.member()),
                format!(
                    "the trusted key is for federation {:?} but the bundles' manifest chain is of {:?}",
                    a.federation(),
                    keys.federation()
                ),
            );
        } else if listed.is_empty() {
            rec.fail(
                Check::TrustAnchor,
                at().author(a.member()),
                format!(
                    "the key you trust for member {} ({}) is in no manifest version of the chain: the bundles are not of the federation you trust, or {}'s key changed outside the chain",
                    a.member(),
                    a.vkey(),
                    a.member()
                ),
            );
        } else {
            rec.pass(Check::TrustAnchor);
        }
        any_signed |= !signed.is_empty() && !listed.is_empty();
        out.push(AnchorSummary {
            vkey: a.vkey().to_owned(),
            listed_in_versions: listed,
            signed_versions: signed,
        });
    }
    if !any_signed {
        let message = "no trusted key signed any manifest version in the bundles: a key that is merely listed could have been copied into a forged chain. Trust a member that signed the manifest (see `signatures` in the manifest file)";
        if require_signature {
            rec.fail(Check::TrustAnchor, at(), message);
        } else {
            rec.warn(Check::TrustAnchor, at(), message);
        }
    }
    out
}
