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

echo "== building the lienthong binary the end-to-end tests run"
# cargo test builds a package's binaries only for that package's own
# integration tests; the e2e tests live in tests/, so build it explicitly.
cargo build --workspace --locked --bins

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

echo "== benchmark smoke run (bench --quick; figures are not measurements here)"
# Checks only that every scenario runs against real nodes; targets are
# measured by a release run (docs/benchmarks.md), never asserted in CI.
cargo run --locked -q -p lienthong-tests --bin bench -- --quick --json target/bench-quick.json

