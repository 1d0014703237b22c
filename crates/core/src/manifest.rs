//! The federation manifest: who the members are (code, name, endpoint,
//! signing key, TLS pin) plus the agreement, versioned and signed by members.
//!
//! ```text
//! manifest.toml ──Manifest::from_toml──▶ Manifest (every problem reported at once)
//! Manifest ──canonical_bytes──▶ bytes ──Ed25519("lienthong:manifest:v1\n" ‖ bytes)──▶ ManifestSignature
//! SignedManifest ──accept_next(in force, proposed)──▶ VerifiedManifest
//! ```
//!
//! # The quorum rule
//!
//! - Version 1 (genesis) takes effect when signed by the quorum of its own
//!   members.
//! - Version N+1 takes effect when signed by the quorum of the members of
//!   version N, the version in force, checked against the keys version N
//!   lists. It must keep the federation name and have exactly version N+1.
//!   So a member rotating its key signs the change with its old key, and a
//!   joining member's signature counts for nothing until it is in force.
//! - The quorum is the manifest's `quorum`, or a majority of its members
//!   when absent. A quorum of a majority or less is refused, because two
//!   disjoint groups could then each sign a different version N+1.
//! - Signatures by non-members, repeated signatures by one member and
//!   signatures that do not verify are not counted, and the error says so.
//!
//! [`VerifiedManifest`] can only be made by [`accept_next`], so code that
//! needs "the manifest in force" cannot be handed an unchecked one.
//!
//! # Signing keys
//!
//! Each member's key is written in the C2SP signed-note verifier key form
//! `<federation>/<code>+<key id, 8 hex>+<base64(0x01 ‖ 32-byte Ed25519 key)>`,
//! where key id = the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key). The
//! name is the member's checkpoint origin, so it must be exactly
//! `<federation>/<code>`.
//!
//! # Canonical form
//!
//! `canonical_bytes` is the manifest as compact JSON with object keys in
//! ascending byte order (RFC 8785 form, every number is an integer), members
//! sorted by code, `quorum` written as the effective number, and the
//! agreement in its own canonical form (see [`crate::agreement`]):
//!
//! ```text
//! {"agreement":{…},"federation":"lienthong.example/bac-bo-11",
//!  "members":[{"code":"01","endpoint":"10.0.0.1:7443","name":"Hà Nội",
//!              "signing_key":"lienthong.example/bac-bo-11/01+…","tls_spki_sha256":"…"},…],
//!  "quorum":6,"version":1}
//! ```
//!
//! Strings are UTF-8 with only `"`, `\` and control characters escaped.
//! `manifest_hash = SHA-256(canonical_bytes)`; a signature is Ed25519 over
//! `"lienthong:manifest:v1\n" ‖ canonical_bytes`.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agreement::Agreement;
use crate::provinces::is_province;

/// Domain separation tag prefixed to the canonical bytes before signing.
pub const MANIFEST_SIGNING_DOMAIN: &[u8] = b"lienthong:manifest:v1\n";

/// The signed-note key type byte for Ed25519.
const ED25519_KEY_TYPE: u8 = 0x01;

/// Membership plus agreement, one version. Field order is alphabetical on
/// purpose: it is the key order of the canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The sharing rules in force with this version.
    pub agreement: Agreement,
    /// The federation's name, e.g. `lienthong.example/bac-bo-11`; prefix of
    /// every member's checkpoint origin.
    pub federation: String,
    /// The members.
    pub members: Vec<Member>,
    /// Signatures of this version's members needed for the next version;
    /// default: a majority.
    #[serde(default)]
    pub quorum: Option<u32>,
    /// 1 for the genesis manifest, then +1 per change.
    pub version: u64,
}

/// One member (one province's node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Province code, e.g. `01`.
    pub code: String,
    /// `host:port` of its Federation API.
    pub endpoint: String,
    /// Display name, e.g. `Hà Nội`.
    pub name: String,
    /// C2SP verifier key `<federation>/<code>+<8 hex>+<base64>`.
    pub signing_key: String,
    /// SHA-256 of its TLS certificate's SubjectPublicKeyInfo DER, 64
    /// lower-case hex characters.
    pub tls_spki_sha256: String,
}

/// One member's signature over a manifest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSignature {
    /// The signing member's code.
    pub member: String,
    /// Ed25519 over `"lienthong:manifest:v1\n" ‖ canonical_bytes`.
    pub signature: [u8; 64],
}

/// A proposed manifest version with the signatures gathered so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    /// The proposed version.
    pub manifest: Manifest,
    /// Signatures over it, in any order.
    pub signatures: Vec<ManifestSignature>,
}

impl SignedManifest {
    /// The wire form (`lienthong.v1.SignedManifestVersion`).
    pub fn to_proto(&self) -> crate::proto::SignedManifestVersion {
        crate::proto::SignedManifestVersion {
            canonical_manifest: self.manifest.canonical_bytes(),
            signatures: self
                .signatures
                .iter()
                .map(|s| crate::proto::ManifestSignature {
                    member: s.member.clone(),
                    signature: s.signature.to_vec(),
                })
                .collect(),
        }
    }

    /// Reads the wire form. Only the shape is checked here; the quorum is
    /// checked by [`accept_next`].
    pub fn from_proto(p: &crate::proto::SignedManifestVersion) -> Result<Self, ManifestError> {
        let manifest: Manifest = serde_json::from_slice(&p.canonical_manifest)
            .map_err(|e| ManifestError::Parse(format!("canonical manifest: {e}")))?;
        // Signatures cover the canonical form; bytes that only parse to it
        // are not what was signed.
        if manifest.canonical_bytes() != p.canonical_manifest {
            return Err(ManifestError::Parse(
                "canonical_manifest is not in canonical form (keys sorted, members by code, quorum written out)".into(),
            ));
        }
        let signatures = p
            .signatures
            .iter()
            .map(|s| {
                Ok(ManifestSignature {
                    member: s.member.clone(),
                    signature: s.signature.as_slice().try_into().map_err(|_| {
                        ManifestError::Parse(format!(
                            "the signature of {} is {} bytes, not 64",
                            s.member,
                            s.signature.len()
                        ))
                    })?,
                })
            })
            .collect::<Result<_, ManifestError>>()?;
        Ok(Self {
            manifest,
            signatures,
        })
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not valid TOML for a manifest (syntax, unknown field, wrong type).
    #[error("manifest is not valid: {0}")]
    Parse(String),
    /// Parsed, but inconsistent; every problem found is listed.
    #[error("manifest has {} problem(s):\n{}", .0.len(), .0.join("\n"))]
    Invalid(Vec<String>),
    /// The proposed version is for another federation.
    #[error(
        "manifest is for federation {found:?} but the one in force is {expected:?}; a federation cannot be renamed"
    )]
    WrongFederation {
        /// Federation of the manifest in force.
        expected: String,
        /// Federation of the proposal.
        found: String,
    },
    /// The proposed version does not follow the one in force.
    #[error("manifest version {found} refused: the next version must be {expected}")]
    WrongVersion {
        /// The only acceptable version.
        expected: u64,
        /// The proposal's version.
        found: u64,
    },
    /// Not enough valid signatures.
    #[error(
        "manifest version {version} has {} valid signature(s){} but needs {needed} from the members of {}{}",
        .valid.len(),
        if .valid.is_empty() { String::new() } else { format!(" (from {})", .valid.join(", ")) },
        match .signers_of { Some(v) => format!("version {v}, the one in force"), None => "the genesis manifest itself".into() },
        if .ignored.is_empty() { String::new() } else { format!("; not counted: {}", .ignored.join("; ")) },
    )]
    QuorumNotMet {
        /// The proposed version.
        version: u64,
        /// Version whose members must sign (`None` for genesis).
        signers_of: Option<u64>,
        /// Members whose signature verified, sorted.
        valid: Vec<String>,
        /// Valid signatures needed.
        needed: u32,
        /// Why each other signature did not count.
        ignored: Vec<String>,
    },
}

impl Manifest {
    /// Parses a manifest written in TOML and validates everything, reporting
    /// every problem at once.
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        let problems = m.problems();
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(ManifestError::Invalid(problems))
        }
    }

    /// Like [`Manifest::from_toml`], for a membership file and an agreement
    /// file kept apart (the agreement is negotiated by the committees, the
    /// membership by IT staff). The membership text must not hold an
    /// `[agreement]` table; agreement problems are reported under
    /// `agreement.`.
    pub fn from_toml_with_agreement(
        membership: &str,
        agreement: &str,
    ) -> Result<Self, ManifestError> {
        // The manifest without its agreement: same fields, same strictness.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Membership {
            federation: String,
            members: Vec<Member>,
            #[serde(default)]
            quorum: Option<u32>,
            version: u64,
        }
        let head: Membership = toml::from_str(membership)
            .map_err(|e| ManifestError::Parse(format!("membership: {e}")))?;
        let agreement: Agreement = toml::from_str(agreement)
            .map_err(|e| ManifestError::Parse(format!("agreement: {e}")))?;
        let m = Manifest {
            agreement,
            federation: head.federation,
            members: head.members,
            quorum: head.quorum,
            version: head.version,
        };
        let problems = m.problems();
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(ManifestError::Invalid(problems))
        }
    }

    /// The quorum in effect: the stated one, or a majority of the members.
    pub fn effective_quorum(&self) -> u32 {
        let n = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        self.quorum.unwrap_or(n / 2 + 1)
    }

    /// The member codes, in manifest order.
    pub fn member_codes(&self) -> Vec<String> {
        self.members.iter().map(|m| m.code.clone()).collect()
    }

    /// Every problem with this manifest, each naming the field and the fix.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let fed = &self.federation;
        if fed.is_empty() || fed.chars().any(|c| c.is_whitespace() || c == '+') {
            out.push(format!(
                "federation: {fed:?} must be non-empty without spaces or '+', e.g. \"lienthong.example/bac-bo-11\""
            ));
        }
        if self.version == 0 {
            out.push("version: must be at least 1 (1 is the genesis manifest)".into());
        }
        if self.members.is_empty() {
            out.push("members: none; list at least one [[members]]".into());
        }
        let mut codes = BTreeSet::new();
        let mut pins = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for (i, m) in self.members.iter().enumerate() {
            let p = format!("members[{i}]");
            if !is_province(&m.code) {
                out.push(format!(
                    "{p}.code: {:?} is not a province code (two digits, one of the 34)",
                    m.code
                ));
            } else if !codes.insert(m.code.as_str()) {
                out.push(format!(
                    "{p}.code: {:?} is listed twice; each member appears once",
                    m.code
                ));
            }
            if m.name.trim().is_empty() {
                out.push(format!(
                    "{p}.name: empty; write the province's name, e.g. \"Hà Nội\""
                ));
            }
            if let Err(e) = check_endpoint(&m.endpoint) {
                out.push(format!("{p}.endpoint: {e}"));
            }
            match parse_vkey(&m.signing_key) {
                Err(e) => out.push(format!("{p}.signing_key: {e}")),
                Ok((name, key)) => {
                    let want = format!("{fed}/{}", m.code);
                    if name != want {
                        out.push(format!(
                            "{p}.signing_key: key is named {name:?} but this member's must be named {want:?}; generate it with that name"
                        ));
                    }
                    // A small-order key lets anyone sign; a key with a
                    // small-order component makes the two Ed25519
                    // equations disagree on its holder's signatures
                    // (`crate::signature`). Neither comes from a real key
                    // generator.
                    if key.is_weak() || !key.to_edwards().is_torsion_free() {
                        out.push(format!(
                            "{p}.signing_key: not a point of the prime-order group (it has a small-order part), which no Ed25519 key generator makes; make the member a new key (`lienthong key new`) and list it"
                        ));
                    }
                    if let Some(other) = keys.insert(key.to_bytes(), m.code.clone()) {
                        out.push(format!("{p}.signing_key: same key as member {other:?}; each member needs its own key"));
                    }
                }
            }
            let pin = &m.tls_spki_sha256;
            if pin.len() != 64
                || !pin
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                out.push(format!(
                    "{p}.tls_spki_sha256: must be 64 lower-case hex characters (SHA-256 of the certificate's SubjectPublicKeyInfo DER)"
                ));
            } else if let Some(other) = pins.insert(pin.as_str(), m.code.clone()) {
                out.push(format!("{p}.tls_spki_sha256: same pin as member {other:?}; each member needs its own TLS key"));
            }
        }
        let n = self.members.len();
        if let Some(q) = self.quorum {
            if q as usize > n {
                out.push(format!(
                    "quorum: {q} is more than the {n} member(s); no version could ever be signed"
                ));
            } else if (q as usize) * 2 <= n {
                out.push(format!(
                    "quorum: {q} of {n} is not a majority, so two groups could sign different next versions; use at least {} or remove it",
                    n / 2 + 1
                ));
            }
        }
        let members = self.member_codes();
        out.extend(self.agreement.problems("agreement.", Some(&members)));
        out
    }

    /// The canonical bytes that are hashed and signed (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Canonical<'a> {
            agreement: &'a Agreement,
            federation: &'a str,
            members: Vec<&'a Member>,
            quorum: u32,
            version: u64,
        }
        let mut members: Vec<&Member> = self.members.iter().collect();
        members.sort_by(|a, b| a.code.cmp(&b.code));
        let c = Canonical {
            agreement: &self.agreement,
            federation: &self.federation,
            members,
            quorum: self.effective_quorum(),
            version: self.version,
        };
        // Strings, integers, lists and a BTreeMap always serialise; the
        // fallback only keeps this function total.
        serde_json::to_vec(&c).unwrap_or_default()
    }

    /// SHA-256 of the canonical bytes.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    fn signing_message(&self) -> Vec<u8> {
        let mut m = MANIFEST_SIGNING_DOMAIN.to_vec();
        m.extend_from_slice(&self.canonical_bytes());
        m
    }
}

fn check_endpoint(e: &str) -> Result<(), String> {
    let fix = "write host:port, e.g. \"lienthong.hanoi.example:7443\" or \"10.0.0.1:7443\"";
    let Some((host, port)) = e.rsplit_once(':') else {
        return Err(format!("{e:?} has no port; {fix}"));
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(format!("{e:?} has no valid host; {fix}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{e:?} has no valid port (1–65535); {fix}")),
    }
}

/// The signed-note key id: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key).
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_KEY_TYPE]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Writes a verifier key in C2SP form `<name>+<key id hex>+<base64(0x01 ‖ key)>`
/// (the one implementation lives in `lienthong_log`).
pub fn format_vkey(name: &str, key: &VerifyingKey) -> String {
    lienthong_log::vkey_string(name, key)
}

/// Reads a C2SP verifier key, checking its key id; returns the name and key.
pub fn parse_vkey(s: &str) -> Result<(String, VerifyingKey), String> {
    lienthong_log::parse_vkey(s)
        .map(|(name, _, key)| (name, key))
        .map_err(|e| format!("{e} (print it with `lienthong key show`)"))
}

/// Signs a manifest version as `member_code`.
pub fn sign_manifest(
    manifest: &Manifest,
    member_code: &str,
    key: &SigningKey,
) -> ManifestSignature {
    ManifestSignature {
        member: member_code.to_owned(),
        signature: key.sign(&manifest.signing_message()).to_bytes(),
    }
}

/// A manifest version in force: checked, and signed by its quorum. Only
/// [`accept_next`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    manifest: Manifest,
    keys: BTreeMap<String, VerifyingKey>,
    hash: [u8; 32],
    signers: Vec<String>,
}

impl VerifiedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// Its version.
    pub fn version(&self) -> u64 {
        self.manifest.version
    }
    /// SHA-256 of its canonical bytes.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
    /// The members whose signatures made it take effect, sorted.
    pub fn signers(&self) -> &[String] {
        &self.signers
    }
    /// A member's signing key.
    pub fn member_key(&self, code: &str) -> Option<&VerifyingKey> {
        self.keys.get(code)
    }
    /// Member codes, sorted.
    pub fn member_codes(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }
}

/// Checks that `proposed` may replace `current` (or, with `None`, be the
/// genesis manifest) and returns it as the manifest in force.
pub fn accept_next(
    current: Option<&VerifiedManifest>,
    proposed: &SignedManifest,
) -> Result<VerifiedManifest, ManifestError> {
    let m = &proposed.manifest;
    let problems = m.problems();
    if !problems.is_empty() {
        return Err(ManifestError::Invalid(problems));
    }
    let keys = member_keys(m);
    let (signer_keys, needed, signers_of) = match current {
        None => {
            if m.version != 1 {
                return Err(ManifestError::WrongVersion {
                    expected: 1,
                    found: m.version,
                });
            }
            (&keys, m.effective_quorum(), None)
        }
        Some(cur) => {
            if m.federation != cur.manifest.federation {
                return Err(ManifestError::WrongFederation {
                    expected: cur.manifest.federation.clone(),
                    found: m.federation.clone(),
                });
            }
            let expected = cur.version().saturating_add(1);
            if m.version != expected {
                return Err(ManifestError::WrongVersion {
                    expected,
                    found: m.version,
                });
            }
            (
                &cur.keys,
                cur.manifest.effective_quorum(),
                Some(cur.version()),
            )
        }
    };
    let whose = match signers_of {
        Some(v) => format!("version {v}"),
        None => "this manifest".to_string(),
    };
    let message = m.signing_message();
    let mut valid = BTreeSet::new();
    let mut ignored = Vec::new();
    for s in &proposed.signatures {
        let Some(key) = signer_keys.get(&s.member) else {
            ignored.push(format!("{:?} is not a member of {whose}", s.member));
            continue;
        };
        if key
            .verify(&message, &Signature::from_bytes(&s.signature))
            .is_err()
        {
            ignored.push(format!(
                "{}'s signature does not verify under its key in {whose}",
                s.member
            ));
        } else if !valid.insert(s.member.clone()) {
            ignored.push(format!("{} signed more than once (counted once)", s.member));
        }
    }
    if (valid.len() as u64) < u64::from(needed) {
        return Err(ManifestError::QuorumNotMet {
            version: m.version,
            signers_of,
            valid: valid.into_iter().collect(),
            needed,
            ignored,
        });
    }
    Ok(VerifiedManifest {
        hash: m.hash(),
        manifest: m.clone(),
        keys,
        signers: valid.into_iter().collect(),
    })
}

/// The keys of a manifest that passed [`Manifest::problems`], so every key
/// parses; a key that somehow did not would simply be absent.
fn member_keys(m: &Manifest) -> BTreeMap<String, VerifyingKey> {
    m.members
        .iter()
        .filter_map(|mem| Some((mem.code.clone(), parse_vkey(&mem.signing_key).ok()?.1)))
        .collect()
}

/// Every manifest version from genesis to the one in force, each accepted
/// under the quorum of the one before. Holds the signatures too, so a node
/// can hand the chain to a peer that is behind.
///
/// Keys rotate through versions, so "the key of member X" depends on when:
/// an entry is verified with the key in force at the entry's
/// `manifest_version` ([`ManifestChain::key_at`]), a checkpoint with the
/// key in force now ([`ManifestChain::current`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestChain {
    versions: Vec<(VerifiedManifest, SignedManifest)>,
}

impl ManifestChain {
    /// Applies `versions` in order from genesis. On failure returns the
    /// position of the version that was refused and why.
    pub fn from_versions(versions: &[SignedManifest]) -> Result<Self, (usize, ManifestError)> {
        let mut chain: Option<Self> = None;
        for (i, s) in versions.iter().enumerate() {
            let next = accept_next(chain.as_ref().map(Self::current), s).map_err(|e| (i, e))?;
            match &mut chain {
                None => {
                    chain = Some(Self {
                        versions: vec![(next, s.clone())],
                    })
                }
                Some(c) => c.versions.push((next, s.clone())),
            }
        }
        chain.ok_or((
            0,
            ManifestError::Invalid(vec!["the chain has no versions".into()]),
        ))
    }

    /// Appends the next version if its quorum is met.
    pub fn extend(&mut self, next: &SignedManifest) -> Result<(), ManifestError> {
        let v = accept_next(Some(self.current()), next)?;
        self.versions.push((v, next.clone()));
        Ok(())
    }

    /// Adopts the versions of `other` that come after ours, checking each
    /// against the one before. Returns how many were added; a chain that
    /// disagrees with ours on a version we both have is refused.
    pub fn merge(&mut self, other: &[SignedManifest]) -> Result<usize, ManifestError> {
        let mut added = 0;
        for s in other {
            let v = s.manifest.version;
            if let Some(mine) = self.version(v) {
                if mine.hash() != s.manifest.hash() {
                    return Err(ManifestError::Invalid(vec![format!(
                        "version {v} differs from the version {v} this node accepted: the federation has forked, ask the members which is genuine"
                    )]));
                }
                continue;
            }
            self.extend(s)?;
            added += 1;
        }
        Ok(added)
    }

    /// The version in force.
    pub fn current(&self) -> &VerifiedManifest {
        // A chain is never empty: from_versions refuses an empty list.
        &self.versions[self.versions.len() - 1].0
    }

    /// A version, if this chain has it.
    pub fn version(&self, version: u64) -> Option<&VerifiedManifest> {
        let i = usize::try_from(version.checked_sub(1)?).ok()?;
        self.versions.get(i).map(|(v, _)| v)
    }

    /// The signed versions, genesis first.
    pub fn signed(&self) -> impl Iterator<Item = &SignedManifest> {
        self.versions.iter().map(|(_, s)| s)
    }

    /// The signed versions after `version`.
    pub fn signed_after(&self, version: u64) -> Vec<SignedManifest> {
        self.signed()
            .filter(|s| s.manifest.version > version)
            .cloned()
            .collect()
    }

    /// `member`'s key in force at `version`.
    pub fn key_at(&self, member: &str, version: u64) -> Option<&VerifyingKey> {
        self.version(version)?.member_key(member)
    }

    /// Every key `member` has held, newest first, without repeats.
    pub fn keys_of(&self, member: &str) -> Vec<VerifyingKey> {
        let mut out: Vec<VerifyingKey> = Vec::new();
        for (v, _) in self.versions.iter().rev() {
            if let Some(k) = v.member_key(member)
                && !out.contains(k)
            {
                out.push(*k);
            }
        }
        out
    }

    /// The keys `member` held, as (first version it was in force, key), in
    /// version order; `None` from a version where it was not a member. What
    /// [`crate::delivery::AuthorKeys`] needs.
    pub fn key_history(&self, member: &str) -> Vec<(u64, Option<VerifyingKey>)> {
        let mut out: Vec<(u64, Option<VerifyingKey>)> = Vec::new();
        for (v, _) in &self.versions {
            let k = v.member_key(member).copied();
            if out.last().map(|(_, last)| *last) != Some(k) {
                out.push((v.version(), k));
            }
        }
        out
    }
}
