//! The audit bundle and its verifier, end to end with real signatures:
//! bundles built from a simulated federation (`fed`), verified whole
//! (`happy`), tampered with (`tamper`), at random (`props`) and at scale
//! (`scale`).

mod fed;
mod happy;
mod props;
mod scale;
mod tamper;

use std::io::Cursor;

use lienthong_audit::{BundleInput, Check, Report, TrustAnchor, VerifyOptions, verify};

/// Verifies in-memory bundles.
pub fn check<B: AsRef<[u8]>>(bundles: &[(&str, B)], anchors: &[TrustAnchor]) -> Report {
    check_with(bundles, anchors, &VerifyOptions::default())
}

pub fn check_with<B: AsRef<[u8]>>(
    bundles: &[(&str, B)],
    anchors: &[TrustAnchor],
    options: &VerifyOptions,
) -> Report {
    let inputs = bundles
        .iter()
        .map(|(name, bytes)| BundleInput {
            name: (*name).to_owned(),
            reader: Cursor::new(bytes.as_ref().to_vec()),
        })
        .collect();
    verify(inputs, anchors, options, &mut |_| {})
}

/// Fails with the whole report unless it passed.
#[track_caller]
pub fn assert_pass(r: &Report) {
    assert!(r.passed(), "expected a pass:\n{r}");
}

/// Fails with the whole report unless `check` failed, and returns the
/// listed failures of that check.
#[track_caller]
pub fn assert_fails(r: &Report, check: Check) -> Vec<&lienthong_audit::Failure> {
    assert!(!r.passed(), "expected a failure of {check}:\n{r}");
    let listed: Vec<_> = r.failures_of(check).collect();
    assert!(!listed.is_empty(), "expected a failure of {check}:\n{r}");
    listed
}

/// The checks that failed.
pub fn failed_checks(r: &Report) -> Vec<Check> {
    r.checks
        .iter()
        .filter(|c| c.failed > 0)
        .map(|c| c.check)
        .collect()
}
