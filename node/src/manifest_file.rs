//! The signed manifest as a file: a JSON chain of versions, each with the
//! members' signatures, applied in order with the quorum rule
//! (`lienthong_core::manifest::accept_next`).
//!
//! ```json
//! {"versions": [{"manifest": {…}, "signatures": [{"member": "01", "signature": "<base64>"}]}, …]}
//! ```

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lienthong_core::manifest::{Manifest, ManifestChain, ManifestSignature, SignedManifest};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionEntry {
    pub manifest: Manifest,
    #[serde(default)]
    pub signatures: Vec<SignatureEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    pub member: String,
    pub signature: String,
}

impl VersionEntry {
    pub fn signed(&self) -> Result<SignedManifest> {
        let signatures = self
            .signatures
            .iter()
            .map(|s| {
                let bytes = B64
                    .decode(&s.signature)
                    .with_context(|| format!("signature of {} is not base64", s.member))?;
                let signature: [u8; 64] = bytes
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("signature of {} is not 64 bytes", s.member))?;
                Ok(ManifestSignature {
                    member: s.member.clone(),
                    signature,
                })
            })
            .collect::<Result<_>>()?;
        Ok(SignedManifest {
            manifest: self.manifest.clone(),
            signatures,
        })
    }
}

impl ManifestFile {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lienthong manifest file", path.display()))
    }

    /// Replaces the file atomically and durably (write, fsync, rename,
    /// fsync the directory).
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        let tmp = path.with_extension("tmp");
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all())?;
        }
        Ok(())
    }

    /// Applies every version in order; returns the chain, whose last
    /// version is in force. Fails if any version lacks its quorum.
    pub fn verify(&self) -> Result<ManifestChain> {
        if self.versions.is_empty() {
            bail!("the manifest file has no versions");
        }
        let signed = self
            .versions
            .iter()
            .map(VersionEntry::signed)
            .collect::<Result<Vec<_>>>()?;
        ManifestChain::from_versions(&signed).map_err(|(i, e)| {
            anyhow::Error::new(e).context(format!(
                "manifest version {} (entry {i})",
                signed[i].manifest.version
            ))
        })
    }

    /// The file form of a verified chain.
    pub fn from_chain(chain: &ManifestChain) -> Self {
        Self {
            versions: chain
                .signed()
                .map(|s| VersionEntry {
                    manifest: s.manifest.clone(),
                    signatures: s
                        .signatures
                        .iter()
                        .map(|g| SignatureEntry {
                            member: g.member.clone(),
                            signature: B64.encode(g.signature),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Appends a proposed version (unsigned).
    pub fn propose(&mut self, manifest: Manifest) -> Result<()> {
        let expected = self.versions.last().map_or(1, |v| v.manifest.version + 1);
        if manifest.version != expected {
            bail!(
                "the proposed manifest has version {} but the next version is {expected}",
                manifest.version
            );
        }
        self.versions.push(VersionEntry {
            manifest,
            signatures: Vec::new(),
        });
        Ok(())
    }

    /// Adds `member`'s signature to the newest version.
    pub fn sign_last(&mut self, member: &str, key: &ed25519_dalek::SigningKey) -> Result<()> {
        let last = self
            .versions
            .last_mut()
            .ok_or_else(|| anyhow::anyhow!("nothing to sign: propose a version first"))?;
        let sig = lienthong_core::manifest::sign_manifest(&last.manifest, member, key);
        last.signatures.retain(|s| s.member != member);
        last.signatures.push(SignatureEntry {
            member: member.to_owned(),
            signature: B64.encode(sig.signature),
        });
        Ok(())
    }
}
