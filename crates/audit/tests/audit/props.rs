//! Property tests: any honest exchange verifies with every delivery
//! counted, and any single flipped bit in any bundle is detected.

use std::sync::OnceLock;

use proptest::prelude::*;

use crate::check;
use crate::fed::{Sim, anchor};

const CODES: [&str; 3] = ["01", "20", "24"];

fn bundles(s: &Sim) -> Vec<(&'static str, Vec<u8>)> {
    CODES.iter().map(|c| (*c, s.bundle(c))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whoever sends what to whom, with a key rotation anywhere, once every
    /// delivery is made the three bundles verify together and the
    /// cross-check counts each (entry, recipient) pair as delivered.
    #[test]
    fn any_honest_exchange_verifies(
        ops in prop::collection::vec((0usize..3, 0u8..8), 1..20),
        rotate_at in prop::option::of(0usize..20),
    ) {
        let mut s = Sim::new(&CODES);
        let mut expected = 0u64;
        for (k, (author, mask)) in ops.iter().enumerate() {
            if rotate_at == Some(k) {
                s.settle();
                s.rotate(CODES[k % 3]);
            }
            let audience: Vec<&str> = CODES
                .iter()
                .enumerate()
                .filter(|(i, c)| mask & (1 << i) != 0 && **c != CODES[*author])
                .map(|(_, c)| *c)
                .collect();
            expected += audience.len() as u64;
            s.alert(CODES[*author], &audience);
            if k % 4 == 3 {
                s.settle();
            }
        }
        s.settle();
        let b = bundles(&s);
        let r = check(&b, &[anchor("01", 0)]);
        prop_assert!(r.passed(), "{}", r);
        prop_assert_eq!(r.deliveries.expected, expected);
        prop_assert_eq!(r.deliveries.delivered, expected);
    }

    /// One flipped bit anywhere in any of three bundles fails the audit.
    #[test]
    fn any_flipped_bit_is_detected(which in 0usize..3, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        static BUNDLES: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
        let original = BUNDLES.get_or_init(|| bundles(&Sim::exchange()));
        let mut b = original.clone();
        let i = pos.index(b[which].1.len());
        b[which].1[i] ^= 1 << bit;
        let r = check(&b, &[anchor("01", 0)]);
        prop_assert!(!r.passed(), "bit {} of byte {} of {} went unnoticed:\n{}", bit, i, b[which].0, r);
    }
}
