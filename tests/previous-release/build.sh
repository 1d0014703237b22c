#!/usr/bin/env bash
# Builds `lienthong` of the previous release, for the mixed-version test
# (tests/e2e/mixed.rs): target/previous-release/lienthong-prev.
#
# The previous release is the commit that wrote
# tests/fixtures/old-federation.tar.gz (tests/fixtures/README.md). Its
# source comes from this repository's history (git archive), its
# dependencies from its own Cargo.lock. It is compiled into the shared
# target/ directory, so the dependencies both releases use at the same
# version and features are compiled once; its binary is renamed so that it
# never replaces target/debug/lienthong.
#
# Without that commit in the clone (a shallow clone), nothing is built and
# the mixed-version test says SKIPPED; `git fetch --unshallow` fixes that.
set -euo pipefail
cd "$(dirname "$0")/../.."

REV=348b470eedb837d43bed8072469298c2d35031d7
OUT=target/previous-release

if [ -x "$OUT/lienthong-prev" ] && [ "$(cat "$OUT/rev" 2>/dev/null)" = "$REV" ]; then
    echo "previous release $REV: $OUT/lienthong-prev is up to date"
    exit 0
fi
if ! git cat-file -e "$REV^{commit}" 2>/dev/null; then
    echo "WARNING: the previous release $REV is not in this clone's history (shallow clone?);"
    echo "         the mixed-version test will be SKIPPED. Run 'git fetch --unshallow' to get it."
    exit 0
fi
rm -rf "$OUT"
mkdir -p "$OUT/src"
# -m: files dated now, not at the commit: cargo judges freshness by
# modification time, and must not take the old sources for compiled ones.
git archive "$REV" | tar -x -m -C "$OUT/src"
# Same code, another binary name.
sed -i '/^\[\[bin\]\]/{n;s/^name = "lienthong"$/name = "lienthong-prev"/}' "$OUT/src/node/Cargo.toml"
grep -q '^name = "lienthong-prev"$' "$OUT/src/node/Cargo.toml"
# Same build settings as this release: the [profile.*] tables come last in
# both manifests; with the old ones, no dependency would be shared.
sed -i '/^\[profile\./,$d' "$OUT/src/Cargo.toml"
sed -n '/^\[profile\./,$p' Cargo.toml >> "$OUT/src/Cargo.toml"
grep -q '^\[profile\.dev\]' "$OUT/src/Cargo.toml"
cargo build --locked --manifest-path "$OUT/src/Cargo.toml" -p lienthong --bin lienthong-prev --target-dir target
cp target/debug/lienthong-prev "$OUT/lienthong-prev"
echo "$REV" > "$OUT/rev"
echo "previous release $REV: built $OUT/lienthong-prev ($("$OUT/lienthong-prev" --version))"
