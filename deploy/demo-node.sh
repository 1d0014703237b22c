#!/usr/bin/env bash
# Liên Thông single-node demo: one province node (Lạng Sơn, 20) on loopback.
# Builds the node, creates keys and certificates, starts it, submits real-
# looking Vietnamese alerts, searches them with and without diacritics,
# shows a refused alert, then verifies the signed feed as an auditor would
# (checkpoint signature, every entry signature, inclusion and consistency
# proofs) across a restart. Stops cleanly and leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

echo "== building lienthong (release)"
cargo build --release --locked -p lienthong
L="$ROOT/target/release/lienthong"

WORK=$(mktemp -d /tmp/lienthong-demo.XXXXXX)
NODE="$WORK/lang-son"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

start() {
    rm -f "$NODE/ready"
    "$L" run --config "$NODE/lienthong.toml" --ready-file "$NODE/ready" 2>>"$NODE/node.log" &
    PID=$!
    for _ in $(seq 1 300); do [ -f "$NODE/ready" ] && break; sleep 0.05; done
    [ -f "$NODE/ready" ] || { cat "$NODE/node.log"; echo "node did not start"; exit 1; }
    echo "node 20 (Lạng Sơn) serving on $(cat "$NODE/ready") with TLS and client certificates (pid $PID)"
}

step "lienthong init: signing key, local CA, API and admin client certificates (private keys 0600)"
"$L" init --member 20 --name "Lạng Sơn" --dir "$NODE" --listen "127.0.0.1:$PORT"
ls -l "$NODE/keys" "$NODE/tls" "$NODE/clients" | sed 's/^/  /'

step "the member's verifier key (C2SP vkey form, what auditors and peers pin)"
VKEY=$("$L" key show --config "$NODE/lienthong.toml")
echo "$VKEY"

step "start the node"
start

step "submit three alerts from an inspection app (deploy/examples/alerts-lang-son.json)"
"$L" alert submit --config "$NODE/lienthong.toml" --file deploy/examples/alerts-lang-son.json

step "submit them again: same references, no duplicates"
"$L" alert submit --config "$NODE/lienthong.toml" --file deploy/examples/alerts-lang-son.json

step "a malformed alert is refused, every bad field named, nothing stored"
"$L" alert submit --config "$NODE/lienthong.toml" --file deploy/examples/bad-alert.json || true

step "search: --kind counterfeit --text \"hang gia\" (no diacritics)"
"$L" alert list --config "$NODE/lienthong.toml" --kind counterfeit --text "hang gia"
step "search: --text \"hàng giả\" (with diacritics) finds the same"
"$L" alert list --config "$NODE/lienthong.toml" --text "hàng giả"
step "search by plate 12C-045.67 written differently: 12c 04567"
"$L" alert list --config "$NODE/lienthong.toml" --subject "12c 04567"
step "search by a Chinese plate and by a tax code"
"$L" alert list --config "$NODE/lienthong.toml" --subject "桂A3B271"
"$L" alert list --config "$NODE/lienthong.toml" --subject "4900123456"

sleep 0.7
step "audit: verify the feed with nothing but the vkey, save the checkpoint"
"$L" feed verify --config "$NODE/lienthong.toml" --vkey "$VKEY" --save "$WORK/checkpoint-1.txt"
echo "--- the signed checkpoint (C2SP tlog-checkpoint in a signed note):"
sed 's/^/  /' "$WORK/checkpoint-1.txt"

step "stop the node (SIGTERM), restart it: the store is checked against its last signed checkpoint"
kill -TERM "$PID"; wait "$PID" || true; PID=""
start

step "one more alert after the restart"
cat > "$WORK/more.json" <<JSON
{"reference": "ls-hotline-2026-7781", "category": "CATEGORY_PROHIBITED_GOODS", "severity": "SEVERITY_HIGH",
 "title": "Pháo nổ nhập lậu cất giấu trong xe khách", "location": {"province": "20", "commune": "Phường Tam Thanh"},
 "observedUnixMs": "$(($(date +%s) * 1000 - 600000))", "concernedProvinces": ["19", "01"],
 "subjects": [{"vehicle": {"plate": "20B-012.34", "description": "xe khách 29 chỗ"}}]}
JSON
"$L" alert submit --config "$NODE/lienthong.toml" --file "$WORK/more.json"
sleep 0.7

step "audit again: the new checkpoint is consistent with the saved one (the feed only grew)"
"$L" feed verify --config "$NODE/lienthong.toml" --vkey "$VKEY" --previous "$WORK/checkpoint-1.txt"

step "all alerts on this node"
"$L" alert list --config "$NODE/lienthong.toml"

cleanup; PID=""
echo
echo "demo finished; node files left in $WORK (delete when done)"
