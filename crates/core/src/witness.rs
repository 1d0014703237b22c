//! The witness's decisions, as pure functions (issue 6, items 1 and 2).
//!
//! A member cosigns another member's checkpoint only if it is consistent
//! with the last one it cosigned for that feed (C2SP tlog-witness): the
//! author names the size it believes the witness holds and proves
//! consistency from there. Two checkpoints of one feed that cannot both be
//! honest are evidence of equivocation:
//!
//! - same size, different roots: the two signed notes prove it alone;
//! - different sizes with no valid consistency proof between them: the
//!   notes plus the failed proof; the member could clear itself by
//!   producing a proof, which for an honest log always exists.

use lienthong_log::{Hash, VerifiedCheckpoint, verify_consistency};

/// What the witness answers to an add-checkpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddDecision {
    /// Consistent with what the witness holds: persist it, then cosign.
    Cosign,
    /// The author's `old_size` is not what the witness holds: tell it the
    /// witness's size so it retries with the right proof.
    SizeMismatch {
        /// The size the witness last cosigned.
        witness_size: u64,
    },
    /// Smaller than what the witness already cosigned: never cosign a
    /// rollback.
    Rollback {
        /// The size the witness last cosigned.
        witness_size: u64,
    },
    /// Cannot both be honest: keep both notes as evidence and refuse.
    Conflict(Conflict),
}

/// Two checkpoints of one feed that cannot both be honest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Same size, different roots.
    #[error("two checkpoints of size {size} with different roots")]
    SameSizeDifferentRoot {
        /// The tree size.
        size: u64,
    },
    /// The consistency proof offered between them does not verify.
    #[error("no valid consistency proof from size {old} to size {new}: {reason}")]
    NotConsistent {
        /// Smaller size.
        old: u64,
        /// Larger size.
        new: u64,
        /// Why the proof failed.
        reason: String,
    },
}

/// Decides an add-checkpoint request: `held` is the checkpoint the witness
/// last cosigned for this feed (already verified), `new` the offered one
/// (signature already verified), `old_size` and `proof` what the author
/// sent.
pub fn decide_add(
    held: Option<&VerifiedCheckpoint>,
    old_size: u64,
    proof: &[Hash],
    new: &VerifiedCheckpoint,
) -> AddDecision {
    let witness_size = held.map_or(0, VerifiedCheckpoint::size);
    if old_size != witness_size {
        return AddDecision::SizeMismatch { witness_size };
    }
    let Some(held) = held else {
        // First checkpoint seen of this feed: trust on first use.
        return AddDecision::Cosign;
    };
    if new.size() < held.size() {
        return AddDecision::Rollback { witness_size };
    }
    match compare(held, new, proof) {
        Ok(()) => AddDecision::Cosign,
        Err(c) => AddDecision::Conflict(c),
    }
}

/// Checks that two checkpoints of one feed can both be honest, with
/// `proof` the consistency proof from the smaller to the larger (ignored
/// when the sizes are equal).
pub fn compare(
    a: &VerifiedCheckpoint,
    b: &VerifiedCheckpoint,
    proof: &[Hash],
) -> Result<(), Conflict> {
    let (old, new) = if a.size() <= b.size() { (a, b) } else { (b, a) };
    if old.size() == new.size() {
        return if old.root() == new.root() {
            Ok(())
        } else {
            Err(Conflict::SameSizeDifferentRoot { size: old.size() })
        };
    }
    if old.size() == 0 {
        return Ok(());
    }
    verify_consistency(old.size(), old.root(), new.size(), new.root(), proof).map_err(|e| {
        Conflict::NotConsistent {
            old: old.size(),
            new: new.size(),
            reason: e.to_string(),
        }
    })
}
