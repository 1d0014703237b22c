#!/usr/bin/env bash
# Liên Thông demo: the eleven northern provinces as eleven separate node
# processes on loopback. Each gets its own keys and certificates; together
# they sign a manifest (membership + the agreement in
# deploy/federation/agreement-bac-bo-11.toml); five provinces submit
# realistic alerts; each alert reaches exactly the provinces the agreement
# names, verified on arrival, with personal data opened only for the
# provinces allowed to see it, and signed receipts back to the author;
# every province cosigns the others' checkpoints as a witness; an auditor
# verifies a feed with nothing but its vkey, then all eleven provinces'
# audit bundles together, receipts cross-checked. Stops cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FED=lienthong.example/bac-bo-11

echo "== building lienthong (release)"
cargo build --release --locked -p lienthong
L="$ROOT/target/release/lienthong"

WORK=$(mktemp -d /tmp/lienthong-federation.XXXXXX)
declare -A NAME=([01]="Hà Nội" [04]="Cao Bằng" [15]="Lào Cai" [19]="Thái Nguyên" [20]="Lạng Sơn" [22]="Quảng Ninh"
                 [24]="Bắc Ninh" [25]="Phú Thọ" [31]="Hải Phòng" [33]="Hưng Yên" [37]="Ninh Bình")
CODES=(01 04 15 19 20 22 24 25 31 33 37)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "11 provinces: lienthong init (signing key, API CA and certificates, peer TLS key)"
printf 'federation = "%s"\nversion = 1\n\n' "$FED" > "$WORK/membership.toml"
for c in "${CODES[@]}"; do
    "$L" init --member "$c" --name "${NAME[$c]}" --dir "$WORK/$c" --listen "127.0.0.1:$(port)" >/dev/null
    fport=$(port)
    sed -i -e 's/^# \[federation\]/[federation]/' -e "s/^# listen = \"0.0.0.0:7501\"/listen = \"127.0.0.1:$fport\"/" \
        -e 's/^# tls_cert = /tls_cert = /' -e 's/^# tls_key = /tls_key = /' -e 's/^# manifest = /manifest = /' "$WORK/$c/lienthong.toml"
    "$L" federation member --config "$WORK/$c/lienthong.toml" --endpoint "127.0.0.1:$fport" >> "$WORK/membership.toml"
    echo >> "$WORK/membership.toml"
    printf '  %s %-12s vkey %s\n' "$c" "${NAME[$c]}" "$("$L" key show --config "$WORK/$c/lienthong.toml" | cut -c1-60)…"
done

step "the agreement (deploy/federation/agreement-bac-bo-11.toml)"
cp "$ROOT/deploy/federation/agreement-bac-bo-11.toml" "$WORK/agreement.toml"
grep -E '^name = ' "$WORK/agreement.toml" | sed 's/^name = /  rule /'

step "manifest version 1: proposed, then signed by every member (quorum: a majority)"
"$L" federation propose --toml "$WORK/membership.toml" --agreement "$WORK/agreement.toml" --file "$WORK/manifest.json" >/dev/null
for c in "${CODES[@]}"; do "$L" federation sign --config "$WORK/$c/lienthong.toml" --file "$WORK/manifest.json" >/dev/null; done
"$L" federation show --file "$WORK/manifest.json" | sed 's/^/  /'
for c in "${CODES[@]}"; do cp "$WORK/manifest.json" "$WORK/$c/manifest.json"; done

step "start the 11 nodes (each: local API with client certificates, Federation API with pinned mTLS)"
for c in "${CODES[@]}"; do
    "$L" run --config "$WORK/$c/lienthong.toml" --ready-file "$WORK/$c/ready" 2>>"$WORK/$c/node.log" &
    PIDS+=($!)
done
for c in "${CODES[@]}"; do
    for _ in $(seq 1 400); do [ -f "$WORK/$c/ready" ] && break; sleep 0.05; done
    [ -f "$WORK/$c/ready" ] || { cat "$WORK/$c/node.log"; echo "node $c did not start"; exit 1; }
done
echo "  all 11 serving"

step "five provinces submit alerts (deploy/federation/demo-alerts.json)"
NOW_MS=$(( $(date +%s) * 1000 - 3600000 ))
for c in 20 22 15 31 01; do
    python3 - "$ROOT/deploy/federation/demo-alerts.json" "$c" "$NOW_MS" > "$WORK/$c/alerts.json" <<'PY'
import json, sys
alerts = json.load(open(sys.argv[1], encoding="utf-8"))[sys.argv[2]]
for a in alerts:
    a["observedUnixMs"] = sys.argv[3]
print(json.dumps(alerts, ensure_ascii=False))
PY
    printf '  %s %s: ' "$c" "${NAME[$c]}"
    "$L" alert submit --config "$WORK/$c/lienthong.toml" --file "$WORK/$c/alerts.json"
done
sleep 2

step "who received what (verified on arrival: signature, author, audience, inclusion in the author's checkpoint)"
for c in "${CODES[@]}"; do
    got=$("$L" alert list --config "$WORK/$c/lienthong.toml" --json 2>/dev/null | python3 -c '
import json, sys
me = sys.argv[1]
for line in sys.stdin:
    e = json.loads(line); b = e["body"]
    if b["author"] != me and "alert" in b:
        t = b["alert"]["title"]; print("    from %s: %s" % (b["author"], t if len(t) <= 80 else t[:79] + "…"))
        for c in b["alert"].get("redacted", []):
            opened = [o["value"] for o in e.get("openings", []) if o["field"] == c["field"]]
            print("      %s: %s" % (c["field"], ("opened for this province: " + opened[0]) if opened else "withheld by the agreement (commitment only)"))
' "$c")
    printf '  %s %s\n%s\n' "$c" "${NAME[$c]}" "${got:-    (nothing: the agreement sent it no alert)}"
done

step "what the agreement withheld, and the receipts each author got back"
for c in 20 22 15 31 01; do
    "$L" alert list --config "$WORK/$c/lienthong.toml" --json 2>/dev/null | python3 -c '
import json, sys
me, name, codes = sys.argv[1], sys.argv[2], sys.argv[3].split()
own, receipts = None, []
for line in sys.stdin:
    e = json.loads(line); b = e["body"]
    if b["author"] == me and "alert" in b: own = b
    if b["author"] != me and "receipt" in b: receipts.append(b["author"])
aud = [m for m in own.get("audience", []) if m != me]
print("  %s %s: rule audience %s; withheld from %s; receipts from %s" % (me, name, " ".join(aud) or "-",
      " ".join(c for c in codes if c not in own.get("audience", [])) or "-", " ".join(sorted(receipts)) or "-"))
' "$c" "${NAME[$c]}" "${CODES[*]}"
done

step "members witness each other: each checkpoint gathers the others' cosignatures (C2SP tlog-cosignature/v1)"
sleep 1
for c in "${CODES[@]}"; do
    "$L" audit status --config "$WORK/$c/lienthong.toml" | python3 -c '
import sys
lines = sys.stdin.read().splitlines()
feed = next((l for l in lines if l.startswith("feed:")), "?")
ev = next((l for l in lines if l.startswith("evidence:")), "?")
print("  %s %-12s %s; %s" % (sys.argv[1], sys.argv[2], feed, ev))
' "$c" "${NAME[$c]}"
done

step "an auditor verifies Lạng Sơn's feed with nothing but its vkey"
"$L" feed verify --config "$WORK/20/lienthong.toml" --vkey "$("$L" key show --config "$WORK/20/lienthong.toml")" | sed 's/^/  /'

step "each province exports its audit bundle; an auditor verifies all eleven with only Hà Nội's vkey"
for c in "${CODES[@]}"; do
    "$L" audit export --config "$WORK/$c/lienthong.toml" --out "$WORK/audit-$c.ltb" 2>/dev/null
done
"$L" audit verify "$WORK"/audit-*.ltb --vkey "$("$L" key show --config "$WORK/01/lienthong.toml")" \
    --json "$WORK/audit-report.json" | sed 's/^/  /'
echo "  (full report: $WORK/audit-report.json; format: docs/audit-format.md)"

step "stopping the 11 nodes"
cleanup; PIDS=()
echo "  done; files left in $WORK (delete when done)"
