//! A bounded memory of checkpoints already verified, so a note seen again
//! costs a lookup instead of a signature check.
//!
//! A witness hears the same few notes over and over: every member gossips
//! the checkpoints it cosigned to every other member, and the witness
//! compares each with the one it holds. Checking both signatures each time
//! cost eleven members a quarter of their CPU between them at 10 alerts a
//! second (docs/benchmarks.md).
//!
//! What is remembered is exactly what was verified: the note's bytes, the
//! key name and the public key, compared in full on lookup (no digest that
//! could collide). Only successes are kept; a note that failed is checked
//! again each time it is shown, and stays refused. Which keys count is the
//! caller's decision at each call: the memory answers only for the exact
//! key asked about.
//!
//! The memory is bounded in bytes as well as in notes: a member may show
//! valid notes padded with signature lines of keys nobody knows, each
//! different bytes that still verify. Notes over [`MAX_REMEMBERED_NOTE`]
//! are checked every time, and each generation holds at most
//! [`GENERATION_BYTES`] of notes.

use std::collections::HashMap;
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;
use tlog_tiles::tlog::Hash;

use crate::checkpoint::{CheckpointError, VerifiedCheckpoint, verify_checkpoint_with_key};

/// Notes longer than this are never remembered. An honest checkpoint with
/// a cosignature from each of 34 members is about 5 KB.
pub const MAX_REMEMBERED_NOTE: usize = 16 * 1024;

/// Bytes of notes one generation holds at most (two are kept).
pub const GENERATION_BYTES: usize = 512 * 1024;

/// What a note was verified as: the note, its key name and key.
#[derive(PartialEq, Eq, Hash)]
struct Seen {
    name: Box<str>,
    key: [u8; 32],
    note: Box<str>,
}

/// What the check found, besides the note and name the [`Seen`] holds
/// (the origin is the key name: the check makes sure).
#[derive(Clone)]
struct Facts {
    size: u64,
    root: Hash,
    extension: Box<str>,
    body_len: usize,
    key_id: u32,
}

impl Facts {
    fn of(cp: &VerifiedCheckpoint) -> Self {
        Self {
            size: cp.size(),
            root: cp.root(),
            extension: cp.extension().into(),
            body_len: cp.body().len(),
            key_id: cp.signed_by_key_id(),
        }
    }

    fn checkpoint(&self, seen: &Seen) -> VerifiedCheckpoint {
        VerifiedCheckpoint {
            origin: seen.name.to_string(),
            size: self.size,
            root: self.root,
            extension: self.extension.to_string(),
            note: seen.note.to_string(),
            body_len: self.body_len,
            key_id: self.key_id,
        }
    }
}

#[derive(Default)]
struct Generation {
    notes: HashMap<Seen, Facts>,
    bytes: usize,
}

impl Generation {
    fn take(&mut self, seen: &Seen) -> Option<Facts> {
        let facts = self.notes.remove(seen)?;
        self.bytes -= seen.note.len();
        Some(facts)
    }
}

#[derive(Default)]
struct Generations {
    current: Generation,
    previous: Generation,
}

/// Checkpoints verified before, at most `2 × per_generation` notes and
/// `2 × GENERATION_BYTES` of them: when the current generation is full it
/// becomes the previous one and the old previous one is dropped, so what
/// is still used survives (a hit in the previous generation moves to the
/// current one).
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
        let seen = match std::str::from_utf8(note) {
            Ok(text) if text.len() <= MAX_REMEMBERED_NOTE => Seen {
                name: name.into(),
                key: key.to_bytes(),
                note: text.into(),
            },
            // Too long to keep, or not text (which fails the check).
            _ => return verify_checkpoint_with_key(note, name, key),
        };
        {
            let mut g = self.lock();
            if let Some(facts) = g.current.notes.get(&seen) {
                return Ok(facts.checkpoint(&seen));
            }
            if let Some(facts) = g.previous.take(&seen) {
                let cp = facts.checkpoint(&seen);
                self.keep(&mut g, seen, facts);
                return Ok(cp);
            }
        }
        // Checked without the lock: other callers need not wait for it.
        let cp = verify_checkpoint_with_key(note, name, key)?;
        self.keep(&mut self.lock(), seen, Facts::of(&cp));
        Ok(cp)
    }

    /// How many notes are remembered now.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.current.notes.len() + g.previous.notes.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of notes remembered now.
    pub fn bytes(&self) -> usize {
        let g = self.lock();
        g.current.bytes + g.previous.bytes
    }

    fn keep(&self, g: &mut Generations, seen: Seen, facts: Facts) {
        if g.current.notes.contains_key(&seen) {
            // Two callers checked the same note at once.
            return;
        }
        let len = seen.note.len();
        if g.current.notes.len() >= self.per_generation || g.current.bytes + len > GENERATION_BYTES
        {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.bytes += len;
        g.current.notes.insert(seen, facts);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps hold only verified results, and every change to them
        // is made whole under the lock before it is released.
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{NoteSigner, TreeHead, sign_checkpoint};
    use ed25519_dalek::SigningKey;

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

    fn remembered(seen: &SeenCheckpoints, note: &str) -> (bool, bool) {
        let g = seen.lock();
        let has = |g: &Generation| g.notes.keys().any(|s| &*s.note == note);
        (has(&g.current), has(&g.previous))
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
        assert_eq!(seen.bytes(), note.len());
    }

    #[test]
    fn answers_come_from_memory() {
        // Facts planted for bytes that carry no valid signature: if the
        // memory were not consulted, the check would refuse them.
        let key = SigningKey::from_bytes(&[7; 32]);
        let note = signed(&key, 5);
        let seen = SeenCheckpoints::new(4);
        let real = seen
            .verify_with_key(note.as_bytes(), NAME, &key.verifying_key())
            .expect("verifies");
        let planted = Seen {
            name: NAME.into(),
            key: key.verifying_key().to_bytes(),
            note: "not a note".into(),
        };
        seen.keep(&mut seen.lock(), planted, Facts::of(&real));
        let got = seen
            .verify_with_key(b"not a note", NAME, &key.verifying_key())
            .expect("answered from memory");
        assert_eq!(got.size(), 5);
        assert_eq!(got.note_text(), "not a note");
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
        // One changed signature byte is a different note, checked afresh.
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
    fn a_hit_in_the_previous_generation_moves_to_the_current_one() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let seen = SeenCheckpoints::new(2);
        let [hot, a, b, c] = [1, 2, 3, 4].map(|size| signed(&key, size));
        for n in [&hot, &a, &b] {
            seen.verify_with_key(n.as_bytes(), NAME, &vk)
                .expect("verifies");
        }
        // current = {b}, previous = {hot, a}
        assert_eq!(remembered(&seen, &hot), (false, true));
        seen.verify_with_key(hot.as_bytes(), NAME, &vk)
            .expect("verifies");
        assert_eq!(remembered(&seen, &hot), (true, false));
        assert_eq!(seen.len(), 3);
        // The next note turns the generation over: `a`, which nobody asked
        // for again, is forgotten; `hot` survives in the previous one.
        seen.verify_with_key(c.as_bytes(), NAME, &vk)
            .expect("verifies");
        assert_eq!(remembered(&seen, &a), (false, false));
        assert_eq!(remembered(&seen, &hot), (false, true));
        assert_eq!(seen.bytes(), hot.len() + b.len() + c.len());
    }

    #[test]
    fn memory_is_bounded_in_notes_and_in_bytes() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let seen = SeenCheckpoints::new(3);
        for size in 1..40 {
            seen.verify_with_key(signed(&key, size).as_bytes(), NAME, &vk)
                .expect("verifies");
            assert!(seen.len() <= 6, "{} remembered", seen.len());
        }

        // Valid notes padded with signature lines of keys nobody knows
        // (signed_note takes at most 100 lines, of any length): each is
        // new bytes that verify. Too long ones are not kept, and
        // the rest are bounded by bytes long before the count.
        let seen = SeenCheckpoints::new(1_000_000);
        let pad = |note: &str, lines: usize, sig_len: usize, salt: u64| {
            let mut out = note.to_owned();
            for i in 0..lines {
                let sig = vec![(salt as u8) ^ (i as u8); sig_len];
                out.push_str(&format!(
                    "\u{2014} stranger.example/{salt}-{i} {}\n",
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sig)
                ));
            }
            out
        };
        let base = signed(&key, 9);
        let huge = pad(&base, 40, 600, 0);
        assert!(huge.len() > MAX_REMEMBERED_NOTE);
        seen.verify_with_key(huge.as_bytes(), NAME, &vk)
            .expect("padding does not make it invalid");
        assert!(seen.is_empty(), "a note over the limit was kept");
        let mut kept = 0;
        for salt in 1..400 {
            let padded = pad(&base, 30, 68, salt);
            assert!(padded.len() <= MAX_REMEMBERED_NOTE);
            seen.verify_with_key(padded.as_bytes(), NAME, &vk)
                .expect("verifies");
            kept += padded.len();
            assert!(
                seen.bytes() <= 2 * GENERATION_BYTES,
                "{} bytes",
                seen.bytes()
            );
        }
        assert!(
            kept > 2 * GENERATION_BYTES,
            "the test did not reach the bound"
        );
    }
}
