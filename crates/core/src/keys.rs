//! Member signing keys: Ed25519 in PKCS#8 PEM (RFC 8410), the form every
//! TLS and crypto tool reads.

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding,
};

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not an Ed25519 private key in PKCS#8 PEM (\"-----BEGIN PRIVATE KEY-----\"): {0}")]
pub struct KeyError(String);

/// Parses a PKCS#8 PEM Ed25519 private key.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError(e.to_string()))
}

/// Encodes a private key as PKCS#8 PEM. Write it with 0600 permissions.
pub fn signing_key_to_pem(key: &SigningKey) -> Result<String, KeyError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|z| z.to_string())
        .map_err(|e| KeyError(e.to_string()))
}

/// Encodes the public half as SPKI PEM ("-----BEGIN PUBLIC KEY-----").
pub fn verifying_key_to_pem(key: &SigningKey) -> Result<String, KeyError> {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let k = SigningKey::generate(&mut rand_core::OsRng);
        let pem = signing_key_to_pem(&k).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(signing_key_from_pem(&pem).unwrap().to_bytes(), k.to_bytes());
        assert!(
            signing_key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
        assert!(
            verifying_key_to_pem(&k)
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
    }
}
