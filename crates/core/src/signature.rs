//! The one Ed25519 rule for entry signatures, for one entry or many.
//!
//! Receivers meet entries many at a time: a peer's delivery stream during
//! catch-up, an audit bundle. Checking a batch of them together costs about
//! half as much per signature as checking each alone (the bench's baselines
//! print both).
//!
//! RFC 8032 (section 5.1.7) allows two equations. The *cofactored* one is
//! `[8]([s]B − [k]A − R) = 0`; ed25519-dalek's single `verify` tests the
//! *cofactorless* `[s]B − [k]A = R`. They agree on every signature made as
//! RFC 8032 signs. They differ only on a signature whose `R` carries a
//! small-order component, which only the key's holder can make: the
//! cofactored equation accepts it, the cofactorless one refuses it.
//!
//! ed25519-dalek's batch check adds up the *cofactorless* equations
//! with random 128-bit weights. A small-order component survives that sum
//! unless its weight happens to be a multiple of its order, so a crafted
//! signature would pass such a batch by chance, depending on what else is
//! in the batch, and two peers, or a peer and an auditor, could disagree
//! about the same bytes. It also treats every signature's key as a point
//! of its own, although the signatures receivers meet in bulk (a feed, a
//! segment of a bundle) are nearly all by one key.
//!
//! So every entry signature is judged by the cofactored equation:
//! [`verify`] for one, and [`verify_all`] for many, which sums the
//! cofactored equations with random weights (see [`batch_holds`]) and
//! re-checks each signature of a failed batch with [`verify`] to find
//! which. A signature gets the same answer alone and in any batch (but
//! for the 2⁻¹²⁸ chance that random weights hide one that fails), and a
//! crafted one costs its batch nothing more. Every signature the
//! cofactorless check accepts is still accepted, so nothing stored before
//! becomes invalid.
//!
//! Neither equation protects against a small-order (weak) *key*, under
//! which anyone can sign anything: manifests refuse those
//! ([`crate::manifest::Manifest::problems`]).

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::RngCore as _;
use sha2::{Digest as _, Sha512};

/// Below this many signatures a batch check is not worth its set-up.
const BATCH_FROM: usize = 4;

/// One signature to check.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The key it must verify under.
    pub key: &'a VerifyingKey,
    /// The signed message (for an entry: the domain tag and the body).
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Whether `signature` is `key`'s signature of `message`, by the
/// cofactored equation (see the module documentation).
pub fn verify(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    let Some(Parts { s, r, k }) = parts(key, message, signature) else {
        return false;
    };
    let a = key.to_edwards();
    (EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &(-a), &s) - r)
        .mul_by_cofactor()
        .is_identity()
}

/// What both checks need of one signature.
struct Parts {
    /// The reduced scalar `s`.
    s: Scalar,
    /// The point `R`.
    r: EdwardsPoint,
    /// `k = SHA-512(R ‖ A ‖ message)`, of the encodings as given.
    k: Scalar,
}

/// [`Parts`] of `signature`, or `None` if it cannot be taken apart: `s`
/// must be reduced (RFC 8032, 5.1.7 step 1) and `R` a point.
fn parts(key: &VerifyingKey, message: &[u8], signature: &Signature) -> Option<Parts> {
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))?;
    let r = CompressedEdwardsY(*signature.r_bytes()).decompress()?;
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(signature.r_bytes())
            .chain_update(key.as_bytes())
            .chain_update(message),
    );
    Some(Parts { s, r, k })
}

/// [`verify`] of each of `checks`, as one batch where there are enough of
/// them; a batch that fails is checked one by one to find which.
pub fn verify_all(checks: &[Check<'_>]) -> Vec<bool> {
    if checks.len() >= BATCH_FROM && batch_holds(checks) {
        return vec![true; checks.len()];
    }
    checks
        .iter()
        .map(|c| verify(c.key, c.message, c.signature))
        .collect()
}

/// Whether every one of `checks` holds, by one check of their cofactored
/// equations summed with random weights:
///
/// `[8]( Σᵢ [zᵢ]Rᵢ + Σ_A [Σ_{i by A} zᵢkᵢ]A − [Σᵢ zᵢsᵢ]B ) = 0`
///
/// If each signature holds, each term `[zᵢ](Rᵢ + [kᵢ]Aᵢ − [sᵢ]B)` is of
/// small order and the cofactor clears the sum. If one does not, its
/// term has a component in the prime-order group which the others cancel
/// only if they were chosen knowing `zᵢ`: the weights are 128 bits drawn
/// from the operating system's generator for each batch, after the
/// signatures are fixed, so that happens one time in 2¹²⁸.
///
/// Signatures by the same key share one term for that key, so a batch of
/// one author's entries is one multi-scalar multiplication over its `R`
/// points, the key and the base point: about 1.6 times as many signatures
/// a second as ed25519-dalek's batch, which gives each signature its own
/// key term (the bench prints both).
///
/// `false` also when a signature cannot be taken apart (an unreduced `s`,
/// an `R` that is no point) or the generator fails: the caller then
/// checks one by one.
fn batch_holds(checks: &[Check<'_>]) -> bool {
    let mut seed = [0u8; 32];
    if rand_core::OsRng.try_fill_bytes(&mut seed).is_err() {
        return false;
    }
    // Four weights from each SHA-512 of the seed and a block counter.
    let mut block = [0u8; 64];
    let mut scalars = Vec::with_capacity(checks.len() + 2);
    let mut points = Vec::with_capacity(checks.len() + 2);
    let mut base = Scalar::ZERO;
    // Per distinct key: where its term is in `scalars`/`points`.
    let mut key_terms: HashMap<[u8; 32], usize> = HashMap::new();
    let mut key_sums: Vec<(Scalar, EdwardsPoint)> = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        let Some(Parts { s, r, k }) = parts(c.key, c.message, c.signature) else {
            return false;
        };
        if i % 4 == 0 {
            block.copy_from_slice(
                &Sha512::new()
                    .chain_update(b"lienthong batch weights")
                    .chain_update(seed)
                    .chain_update((i as u64).to_le_bytes())
                    .finalize(),
            );
        }
        let mut weight = [0u8; 32];
        weight[..16].copy_from_slice(&block[(i % 4) * 16..(i % 4 + 1) * 16]);
        let z = Scalar::from_bytes_mod_order(weight);
        base += z * s;
        let at = *key_terms.entry(*c.key.as_bytes()).or_insert_with(|| {
            key_sums.push((Scalar::ZERO, c.key.to_edwards()));
            key_sums.len() - 1
        });
        key_sums[at].0 += z * k;
        scalars.push(z);
        points.push(r);
    }
    scalars.push(-base);
    points.push(ED25519_BASEPOINT_POINT);
    for (scalar, point) in key_sums {
        scalars.push(scalar);
        points.push(point);
    }
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// A signature made by the holder of the secret scalar `a` whose `R`
    /// has the small-order component `torsion`: valid by the cofactored
    /// equation only (unless `torsion` is the identity).
    fn crafted(a: Scalar, message: &[u8], torsion: EdwardsPoint) -> (VerifyingKey, Signature) {
        let key_point = ED25519_BASEPOINT_POINT * a;
        let key = VerifyingKey::from_bytes(&key_point.compress().to_bytes()).expect("a point");
        let nonce = Scalar::from_bytes_mod_order([42; 32]);
        let r = (ED25519_BASEPOINT_POINT * nonce + torsion).compress();
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r.as_bytes())
                .chain_update(key.as_bytes())
                .chain_update(message),
        );
        let s = nonce + k * a;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(r.as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        (key, Signature::from_bytes(&bytes))
    }

    /// `sig` with `by` added to its `s`: still a reduced scalar and a
    /// valid `R`, so it reaches the batch's equation and fails there.
    fn shift(sig: &Signature, by: Scalar) -> Signature {
        let s = Scalar::from_canonical_bytes(*sig.s_bytes()).expect("reduced") + by;
        let mut bytes = sig.to_bytes();
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature::from_bytes(&bytes)
    }

    #[test]
    fn honest_signatures_verify_alone_and_in_batches_and_tampered_ones_do_not() {
        let keys: Vec<SigningKey> = (1..=3).map(key).collect();
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let signed: Vec<(VerifyingKey, Signature)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let k = &keys[i % 3];
                (k.verifying_key(), k.sign(m))
            })
            .collect();
        for ((k, s), m) in signed.iter().zip(&messages) {
            assert!(verify(k, m, s));
            assert!(k.verify(m, s).is_ok(), "the cofactorless check agrees");
        }
        let checks: Vec<Check<'_>> = signed
            .iter()
            .zip(&messages)
            .map(|((key, signature), message)| Check {
                key,
                message,
                signature,
            })
            .collect();
        assert!(batch_holds(&checks), "one batch, no re-check");
        assert_eq!(verify_all(&checks), vec![true; 40]);

        // One altered message, one signature under the wrong key, one
        // altered `s`, one `R` that is no point: the batch fails and
        // exactly those are found.
        let altered = b"altered".to_vec();
        let other = keys[0].verifying_key();
        let shifted = shift(&signed[30].1, Scalar::ONE);
        let mut bytes = signed[33].1.to_bytes();
        bytes[5] ^= 1;
        let not_a_point = Signature::from_bytes(&bytes);
        assert!(
            CompressedEdwardsY(*not_a_point.r_bytes())
                .decompress()
                .is_none()
        );
        let mut bad = checks.clone();
        bad[3].message = &altered;
        bad[17].key = &other; // signed by keys[2]
        bad[30].signature = &shifted;
        bad[33].signature = &not_a_point;
        let result = verify_all(&bad);
        for (i, ok) in result.iter().enumerate() {
            assert_eq!(*ok, ![3, 17, 30, 33].contains(&i), "signature {i}");
        }
        for wrong in [3, 17, 30, 33] {
            let mut one = checks.clone();
            one[wrong] = bad[wrong];
            assert!(!batch_holds(&one), "the batch fails for {wrong} alone");
        }
        for small in 1..BATCH_FROM {
            assert_eq!(verify_all(&bad[..small]), vec![true; small]);
            assert!(!verify_all(&bad[3..3 + small])[0]);
        }
        assert!(verify_all(&[]).is_empty());
    }

    /// Two signatures by one key whose errors cancel when the equations are
    /// added without weights (`s + 1` and `s − 1`): only random weights
    /// find them, in every batch. They are four apart, so weights that
    /// repeated from one hash to the next would miss them too.
    #[test]
    fn errors_that_cancel_in_a_plain_sum_fail_the_weighted_batch() {
        let k = key(11);
        let vk = k.verifying_key();
        let messages: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 50]).collect();
        let mut sigs: Vec<Signature> = messages.iter().map(|m| k.sign(m)).collect();
        sigs[1] = shift(&sigs[1], Scalar::ONE);
        sigs[5] = shift(&sigs[5], -Scalar::ONE);
        let checks: Vec<Check<'_>> = messages
            .iter()
            .zip(&sigs)
            .map(|(message, signature)| Check {
                key: &vk,
                message,
                signature,
            })
            .collect();
        for _ in 0..20 {
            assert!(!batch_holds(&checks));
        }
        let result = verify_all(&checks);
        for (i, ok) in result.iter().enumerate() {
            assert_eq!(*ok, i != 1 && i != 5, "signature {i}");
        }
    }

    #[test]
    fn a_non_reduced_s_is_refused() {
        let k = key(5);
        let m = b"message";
        let sig = k.sign(m);
        // s + l: the same point equation, but not a reduced scalar.
        let mut bytes = sig.to_bytes();
        // l, the order of the base point, little-endian.
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&0x14de_f9de_a2f7_9cd6_5812_631a_5cf5_d3ed_u128.to_le_bytes());
        l[31] = 0x10;
        let mut carry = 0u16;
        for (b, lb) in bytes[32..].iter_mut().zip(&l) {
            let sum = u16::from(*b) + u16::from(*lb) + carry;
            *b = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "s + l fits in 32 bytes");
        let unreduced = Signature::from_bytes(&bytes);
        let vk = k.verifying_key();
        assert!(!verify(&vk, m, &unreduced));
        let checks = vec![
            Check {
                key: &vk,
                message: m,
                signature: &unreduced,
            };
            BATCH_FROM
        ];
        assert_eq!(verify_all(&checks), vec![false; BATCH_FROM]);
    }

    /// The point of one rule: a signature with a small-order component in
    /// `R` is accepted alone and in any batch, so what is stored does not
    /// depend on what arrived with it, and the batch itself passes it (no
    /// re-check one by one). ed25519-dalek's cofactorless `verify` refuses
    /// it.
    #[test]
    fn a_signature_with_a_small_order_nonce_component_gets_the_same_answer_alone_and_batched() {
        let a = Scalar::from_bytes_mod_order([9; 32]);
        let m = b"crafted by the key holder";
        let honest = key(7);
        let hk = honest.verifying_key();
        for t in EIGHT_TORSION.iter().skip(1) {
            let (k, s) = crafted(a, m, *t);
            assert!(k.verify(m, &s).is_err(), "cofactorless refuses it");
            assert!(verify(&k, m, &s), "cofactored accepts it");
            for round in 0..8u8 {
                let hs: Vec<(Vec<u8>, Signature)> = (0..6u8)
                    .map(|i| {
                        let msg = vec![i, round];
                        let sig = honest.sign(&msg);
                        (msg, sig)
                    })
                    .collect();
                let mut checks: Vec<Check<'_>> = hs
                    .iter()
                    .map(|(message, signature)| Check {
                        key: &hk,
                        message,
                        signature,
                    })
                    .collect();
                checks.insert(
                    usize::from(round) % 7,
                    Check {
                        key: &k,
                        message: m,
                        signature: &s,
                    },
                );
                assert!(batch_holds(&checks), "the batch passes as it is");
                assert_eq!(verify_all(&checks), vec![true; 7]);
            }
        }
        // Without the torsion it is an ordinary signature.
        let (k, s) = crafted(a, m, EdwardsPoint::default());
        assert!(k.verify(m, &s).is_ok() && verify(&k, m, &s));
    }
}
