#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and property tests, and the
# end-to-end tests that start real `lienthong` processes on loopback.
# CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing the outside-client test's Python packages (tests/python/requirements.txt)"
python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

echo "== installing the independent C2SP verifier's Debian packages (tests/independent/install.sh)"
bash tests/independent/install.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== doc tests"
cargo test --workspace --locked --doc

echo "== building the previous release's binary for the mixed-version test (tests/previous-release/build.sh)"
bash tests/previous-release/build.sh

echo "== building the binaries and the tests"
# cargo test builds a package's binaries only for that package's own
# integration tests; the e2e tests live in tests/, so build them
# explicitly. With --tests, in one go with the test binaries: the same
# dependency features as the tests, so nothing is compiled twice.
cargo build --workspace --locked --bins --tests

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

echo "== benchmark smoke run (bench --quick; figures are not measurements here)"
# Checks only that every scenario runs against real nodes; targets are
# measured by a release run (docs/benchmarks.md), never asserted in CI.
# The bench built above (cargo run -p would resolve other features and
# compile it again).
target/debug/bench --quick --json target/bench-quick.json

# The replication scenario's other shape: one peer (--replication-peers).
target/debug/bench --quick --scenario replication --replication-peers 1 --json target/bench-quick-one-peer.json
