#!/usr/bin/env bash
# Installs what tests/independent/c2sp-check needs, from Debian's own
# packages (no Go module proxy, nothing fetched from anywhere else):
#   golang-go               the Go toolchain (Debian 12: Go 1.19)
#   golang-golang-x-mod-dev golang.org/x/mod sources, whose sumdb/note and
#                           sumdb/tlog packages do the verifying
# Idempotent: does nothing when both are installed at the pinned versions.
# The e2e test tests/e2e/independent.rs builds the checker with them.
set -euo pipefail

# Pinned. golang-go is Debian's metapackage for the distribution's Go
# release; golang-golang-x-mod-dev is the code under test's verifier.
GOLANG_GO_VERSION='2:1.19~1'
X_MOD_VERSION='0.7.0-1'
PACKAGES=("golang-go=${GOLANG_GO_VERSION}" "golang-golang-x-mod-dev=${X_MOD_VERSION}")

installed_version() {
    dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null |
        awk '$1 == "install" && $3 == "installed" { print $4 }'
}

if [[ "$(installed_version golang-go)" == "$GOLANG_GO_VERSION" &&
    "$(installed_version golang-golang-x-mod-dev)" == "$X_MOD_VERSION" ]]; then
    echo "independent verifier: golang-go ${GOLANG_GO_VERSION} and golang-golang-x-mod-dev ${X_MOD_VERSION} already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "independent verifier: apt-get not found; install Debian 12's golang-go and golang-golang-x-mod-dev (${X_MOD_VERSION}) by hand" >&2
    exit 1
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "independent verifier: not root and no sudo; cannot apt-get install ${PACKAGES[*]}" >&2
        exit 1
    fi
fi

echo "independent verifier: apt-get install ${PACKAGES[*]}"
# The package lists may be missing or stale on a fresh machine.
if ! apt-cache show "golang-golang-x-mod-dev=${X_MOD_VERSION}" >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -q
fi
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
