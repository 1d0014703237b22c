//! Who held which key when, from the verified manifest chain; and the
//! auditor's trust anchors.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;

/// A member's verifier key that the auditor trusts, obtained outside the
/// bundle (published by the province, handed over on paper, …).
///
/// Written as printed by `lienthong key show`:
/// `<federation>/<member code>+<key id>+<base64 key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    federation: String,
    member: String,
    key: VerifyingKey,
    vkey: String,
}

/// Why a trust anchor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// Not a valid verifier key.
    #[error("the trust anchor is not a verifier key: {0}")]
    Vkey(#[from] lienthong_log::CheckpointError),
    /// The key's name is not `<federation>/<member code>`.
    #[error(
        "the trust anchor's key is named {0:?}; a member's key is named <federation>/<member code>, e.g. lienthong.example/bac-bo-11/01"
    )]
    Name(String),
}

impl TrustAnchor {
    /// Parses a verifier key string.
    pub fn parse(vkey: &str) -> Result<Self, AnchorError> {
        let vkey = vkey.trim();
        let (name, _, key) = lienthong_log::parse_vkey(vkey)?;
        let (federation, member) = name
            .rsplit_once('/')
            .filter(|(f, m)| !f.is_empty() && !m.is_empty())
            .ok_or_else(|| AnchorError::Name(name.clone()))?;
        Ok(Self {
            federation: federation.into(),
            member: member.into(),
            key,
            vkey: vkey.into(),
        })
    }

    /// The federation the key belongs to.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// The member code.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The verifier key string it was parsed from.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }
}

impl FromStr for TrustAnchor {
    type Err = AnchorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// One key a member held, and the key ids it signs under.
#[derive(Debug, Clone)]
pub(crate) struct HeldKey {
    pub key: VerifyingKey,
    /// Signed-note key id of the Ed25519 key (type 0x01) under the
    /// member's origin: how checkpoint signature lines name it.
    pub note_id: u32,
    /// tlog-cosignature/v1 key id (type 0x04): how its cosignature lines
    /// on other members' checkpoints name it.
    pub cosignature_id: u32,
    /// First and last manifest version listing it.
    pub first: u64,
    pub last: u64,
}

/// The keys of the trusted part of the manifest chain.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    federation: String,
    /// Version v is at index v - 1.
    versions: Vec<BTreeMap<String, VerifyingKey>>,
    held: HashMap<String, Vec<HeldKey>>,
    codes: Vec<String>,
    bits: HashMap<String, u8>,
}

/// Most members the audience bit sets can name; the federation has 34
/// provinces.
pub(crate) const MAX_MEMBERS: usize = 64;

impl KeyTable {
    /// From the verified versions, genesis first.
    pub fn new(federation: &str, versions: Vec<BTreeMap<String, VerifyingKey>>) -> Self {
        let mut held: HashMap<String, Vec<HeldKey>> = HashMap::new();
        for (i, members) in versions.iter().enumerate() {
            let v = i as u64 + 1;
            for (code, key) in members {
                let list = held.entry(code.clone()).or_default();
                if let Some(h) = list.iter_mut().find(|h| h.key == *key) {
                    h.last = v;
                } else {
                    let origin = format!("{federation}/{code}");
                    list.push(HeldKey {
                        key: *key,
                        note_id: note_key_id(&origin, key),
                        cosignature_id: lienthong_log::cosignature_key_id(&origin, key),
                        first: v,
                        last: v,
                    });
                }
            }
        }
        let mut codes: Vec<String> = held.keys().cloned().collect();
        codes.sort();
        codes.truncate(MAX_MEMBERS);
        let bits = codes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u8))
            .collect();
        Self {
            federation: federation.into(),
            versions,
            held,
            codes,
            bits,
        }
    }

    /// The federation name.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// Newest trusted version (0 if none).
    pub fn newest(&self) -> u64 {
        self.versions.len() as u64
    }

    /// The key `member` signed entries with under manifest `version`.
    /// Version 0 (an entry made before the node had a manifest) takes the
    /// first key the member is listed with.
    pub fn key_at(&self, member: &str, version: u64) -> Result<&VerifyingKey, String> {
        if version == 0 {
            return self
                .held
                .get(member)
                .and_then(|h| h.first())
                .map(|h| &h.key)
                .ok_or_else(|| {
                    format!("{member} is not a member in any trusted manifest version")
                });
        }
        let members = usize::try_from(version - 1)
            .ok()
            .and_then(|i| self.versions.get(i))
            .ok_or_else(|| {
                format!(
                    "manifest version {version} is not in the trusted chain (it has versions 1 to {})",
                    self.newest()
                )
            })?;
        members
            .get(member)
            .ok_or_else(|| format!("{member} is not a member in manifest version {version}"))
    }

    /// Every key `member` held, in the order they appeared.
    pub fn held(&self, member: &str) -> &[HeldKey] {
        self.held.get(member).map_or(&[], Vec::as_slice)
    }

    /// The member whose feed has checkpoint origin `origin`.
    pub fn member_of_origin<'a>(&self, origin: &'a str) -> Option<&'a str> {
        let code = origin
            .strip_prefix(self.federation.as_str())?
            .strip_prefix('/')?;
        self.held.contains_key(code).then_some(code)
    }

    /// Checkpoint origin of `member`'s feed.
    pub fn origin_of(&self, member: &str) -> String {
        format!("{}/{member}", self.federation)
    }

    /// The member's bit in audience sets.
    pub fn bit(&self, code: &str) -> Option<u8> {
        self.bits.get(code).copied()
    }

    /// The member of a bit.
    pub fn code(&self, bit: u8) -> &str {
        self.codes.get(usize::from(bit)).map_or("?", String::as_str)
    }

    /// Member codes as a bit set.
    pub fn mask<'a>(&self, codes: impl IntoIterator<Item = &'a String>) -> (u64, Vec<String>) {
        let mut mask = 0u64;
        let mut unknown = Vec::new();
        for c in codes {
            match self.bit(c) {
                Some(b) => mask |= 1 << b,
                None => unknown.push(c.clone()),
            }
        }
        (mask, unknown)
    }
}

/// Signed-note key id of an Ed25519 key named `name`: the first 4 bytes
/// of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key), big-endian.
pub(crate) fn note_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut encoded = Vec::with_capacity(33);
    encoded.push(0x01);
    encoded.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &encoded)
}
