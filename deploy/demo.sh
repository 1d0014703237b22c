#!/usr/bin/env bash
# Liên Thông demo: the eleven northern provinces as eleven separate node
# processes on loopback. Each gets its own keys and certificates; together
# they sign a manifest (membership + the agreement in
# deploy/federation/agreement-bac-bo-11.toml); five provinces submit
# realistic alerts; each alert reaches exactly the provinces the agreement
# names, verified on arrival, with personal data opened only for the
# provinces allowed to see it, and signed receipts back to the author;
# a case is handled jointly from alert to closure (Lạng Sơn → Bắc Ninh →
# Hà Nội) with an assistance request answered late and escalated;
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

step "a complex case across provinces: counterfeit cosmetics Lạng Sơn → Bắc Ninh → Hà Nội (deploy/federation/case/)"
CASE_DIR="$ROOT/deploy/federation/case"
cfg() { echo "$WORK/$1/lienthong.toml"; }
idhex() { python3 -c 'import base64, json, sys; d = json.load(sys.stdin); [d := d[k] for k in sys.argv[1].split(".")]; print(base64.b64decode(d).hex())' "$1"; }
filled() { sed "s/INSPECTED_MS/$(( $(date +%s) * 1000 - 7200000 ))/" "$CASE_DIR/$1" > "$WORK/$1"; echo "$WORK/$1"; }
until_ok() { for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; "$@"; }
ALERT=$("$L" alert get --config "$(cfg 20)" --reference ls-2026-0417 --json | idhex entryId)
python3 - "$CASE_DIR/1-open.json" "$ALERT" > "$WORK/1-open.json" <<'PY'
import base64, json, sys
e = json.load(open(sys.argv[1], encoding="utf-8"))
e["opened"]["alertIds"] = [base64.b64encode(bytes.fromhex(sys.argv[2])).decode()]
print(json.dumps(e, ensure_ascii=False))
PY
CASE=$("$L" case record --config "$(cfg 20)" -f "$WORK/1-open.json" --json | idhex written.entryId)
echo "  20 Lạng Sơn opens case ${CASE:0:16}… from its alert and invites 24 Bắc Ninh"
until_ok "$L" case show --config "$(cfg 24)" "$CASE"
"$L" case record --config "$(cfg 24)" --case "$CASE" -f "$CASE_DIR/2-join.json" >/dev/null
echo "  24 Bắc Ninh accepts; inspects the warehouse in Từ Sơn and seizes 120 cartons"
until_ok "$L" case record --config "$(cfg 24)" --case "$CASE" -f "$(filled 3-inspection.json)"
"$L" case record --config "$(cfg 24)" --case "$CASE" -f "$(filled 4-seizure.json)" >/dev/null
REQ=$("$L" assist request --config "$(cfg 20)" --case "$CASE" -f "$CASE_DIR/5-request.json" --due-in-seconds 4 --json | idhex entryId)
echo "  20 asks 24 to verify the consignee company (due in 4 s, for the demo; the agreement allows 72 h)"
sleep 6
"$L" assist list --config "$(cfg 20)" --direction sent | sed 's/^/    at 20: /'
"$L" assist list --config "$(cfg 24)" --direction received | sed 's/^/    at 24: /'
"$L" alert list --config "$(cfg 01)" --json | python3 -c '
import json, sys
for line in sys.stdin:
    b = json.loads(line)["body"]
    if "escalation" in b:
        print("    at 01 (escalation member): signed escalation from %s: request overdue at %s" % (b["author"], b["escalation"]["overdueMember"]))'
"$L" assist answer --config "$(cfg 24)" --request "$REQ" -f "$CASE_DIR/6-answer.json" >/dev/null
echo "  24 answers late:"
until_ok bash -c "'$L' assist list --config '$(cfg 20)' --direction sent | grep -q answered-late"
"$L" assist list --config "$(cfg 20)" --direction sent | sed 's/^/    at 20: /'
until_ok bash -c "'$L' case show --config '$(cfg 20)' '$CASE' | grep -q seizure"
"$L" case record --config "$(cfg 20)" --case "$CASE" -f "$CASE_DIR/7-handover.json" >/dev/null
echo "  20 hands the case over to 01 Hà Nội, which was not in it: the handover carries the signed history"
until_ok "$L" case record --config "$(cfg 01)" --case "$CASE" -f "$CASE_DIR/8-accept.json"
"$L" case record --config "$(cfg 01)" --case "$CASE" -f "$(filled 9-decision.json)" >/dev/null
"$L" case record --config "$(cfg 01)" --case "$CASE" -f "$CASE_DIR/10-close.json" >/dev/null
echo "  01 accepts, fines the company 180,000,000 đ and closes the case; each province folds the same state:"
sleep 1
for c in 01 24 20; do
    "$L" case show --config "$(cfg $c)" "$CASE" --json | python3 -c '
import hashlib, json, sys
s = json.load(sys.stdin)
steps = [(x["entryId"], x.get("applied", False)) for x in s.get("steps", [])]
print("    at %s: %s, lead %s, members %s, seized %s đ, fines %s đ, %d events, state digest %s" % (sys.argv[1],
      s["status"].replace("CASE_STATUS_", "").lower(), s["lead"], " ".join(s.get("members", [])), s.get("seizedValueVnd", "0"), s.get("finesVnd", "0"),
      len(steps), hashlib.sha256(json.dumps([steps, s.get("heads")]).encode()).hexdigest()[:16]))' "$c"
done
"$L" case show --config "$(cfg 01)" "$CASE" | sed 's/^/    /'
echo "  statistics for today, as Bắc Ninh's node computes them from the entries it holds (also --csv):"
"$L" report --config "$(cfg 24)" --from "$(date -u +%Y-%m-%d)" --to "$(date -u -d tomorrow +%Y-%m-%d)" | sed 's/^/    /'

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
