//! A bounded memory of checkpoints already verified, so a note seen again
//! costs a lookup instead of a signature check.
//!
//! A witness hears the same few notes over and over: every member gossips
//! the checkpoints it cosigned to every other member, and the witness
//! compares each with the one it holds. Checking both signatures each time
//! cost eleven members a third of their CPU between them while the
//! federation was otherwise idle (docs/benchmarks.md).
//!
//! What is remembered is exactly what was verified: the note's bytes, the
//! key name and the public key, compared in full on lookup (no digest that
//! could collide). Only successes are kept; a note that failed is checked
//! again each time it is shown, and stays refused. A key that leaves the
//! manifest is simply never asked for again.

use std::collections::HashMap;
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{CheckpointError, VerifiedCheckpoint, verify_checkpoint_with_key};

#[derive(PartialEq, Eq, Hash)]
struct Seen {
    name: String,
    key: [u8; 32],
    note: Box<[u8]>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<Seen, VerifiedCheckpoint>,
    previous: HashMap<Seen, VerifiedCheckpoint>,
}

/// Checkpoints verified before, at most `2 × per_generation` of them: when
/// the current generation is full it becomes the previous one and the old
/// previous one is dropped, so what is still used survives (a hit in the
/// previous generation moves to the current one).
pub struct SeenCheckpoints {
    per_generation: usize,
    generations: Mutex<Generations>,
}

impl SeenCheckpoints {
    /// A memory of at most `2 × per_generation` notes (at least 2).
    pub fn new(per_generation: usize) -> Self {
        Self {
            per_generation: per_generation.max(1),
            generations: Mutex::new(Generations::default()),
        }
    }

    /// [`verify_checkpoint_with_key`], answered from memory when these
    /// exact bytes were verified under this exact name and key before.
    pub fn verify_with_key(
        &self,
        note: &[u8],
        name: &str,
        key: &VerifyingKey,
    ) -> Result<VerifiedCheckpoint, CheckpointError> {
        let seen = Seen {
            name: name.to_owned(),
            key: key.to_bytes(),
            note: note.into(),
        };
        {
            let mut g = self.lock();
            if let Some(cp) = g.current.get(&seen) {
                return Ok(cp.clone());
            }
            if let Some(cp) = g.previous.remove(&seen) {
                self.keep(&mut g, seen, cp.clone());
                return Ok(cp);
            }
        }
        // Checked without the lock: other callers need not wait for it.
        let cp = verify_checkpoint_with_key(note, name, key)?;
        self.keep(&mut self.lock(), seen, cp.clone());
        Ok(cp)
    }

    /// How many notes are remembered now.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.current.len() + g.previous.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keep(&self, g: &mut Generations, seen: Seen, cp: VerifiedCheckpoint) {
        if g.current.len() >= self.per_generation && !g.current.contains_key(&seen) {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.insert(seen, cp);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps hold only verified results; a panic elsewhere cannot
        // leave one half-written.
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{NoteSigner, TreeHead, sign_checkpoint};
    use ed25519_dalek::SigningKey;
    use tlog_tiles::tlog::Hash;

    const NAME: &str = "example.org/feed";

    fn signed(key: &SigningKey, size: u64) -> String {
        let signer = NoteSigner::new(NAME, key.clone()).expect("signer");
        let head = TreeHead {
            origin: NAME.to_owned(),
            size,
            root: Hash([size as u8; 32]),
        };
        sign_checkpoint(&head, &signer).expect("sign")
    }

    #[test]
    fn a_remembered_note_gives_what_a_fresh_check_gives() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let note = signed(&key, 5);
        let seen = SeenCheckpoints::new(4);
        let fresh = verify_checkpoint_with_key(note.as_bytes(), NAME, &key.verifying_key())
            .expect("verifies");
        for _ in 0..3 {
            let got = seen
                .verify_with_key(note.as_bytes(), NAME, &key.verifying_key())
                .expect("verifies");
            assert_eq!(got, fresh);
        }
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn a_note_that_fails_is_never_remembered_and_fails_every_time() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let note = signed(&key, 5);
        let seen = SeenCheckpoints::new(4);
        // Verified under the right key first: the wrong key must not hit.
        seen.verify_with_key(note.as_bytes(), NAME, &key.verifying_key())
            .expect("verifies");
        for _ in 0..2 {
            let err = seen
                .verify_with_key(note.as_bytes(), NAME, &other.verifying_key())
                .expect_err("another key did not sign it");
            assert!(matches!(err, CheckpointError::NotSignedBy { .. }), "{err}");
        }
        // The same bytes under another name are another question too.
        let err = seen
            .verify_with_key(note.as_bytes(), "example.org/other", &key.verifying_key())
            .expect_err("the name is part of the key");
        assert!(matches!(err, CheckpointError::NotSignedBy { .. }), "{err}");
        // One flipped signature byte is a different note, checked afresh.
        let mut forged = note.clone().into_bytes();
        let at = forged.len() - 3;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        assert!(
            seen.verify_with_key(&forged, NAME, &key.verifying_key())
                .is_err()
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn memory_is_bounded_and_keeps_what_is_used() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let seen = SeenCheckpoints::new(3);
        let hot = signed(&key, 1);
        for size in 2..40 {
            seen.verify_with_key(signed(&key, size).as_bytes(), NAME, &vk)
                .expect("verifies");
            seen.verify_with_key(hot.as_bytes(), NAME, &vk)
                .expect("verifies");
            assert!(seen.len() <= 6, "{} remembered", seen.len());
        }
        // The note used all along is still remembered.
        let g = seen.lock();
        assert!(
            g.current
                .keys()
                .chain(g.previous.keys())
                .any(|s| *s.note == *hot.as_bytes())
        );
    }
}
