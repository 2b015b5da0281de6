#!/usr/bin/env bash
# bench/bombs.sh: decompression bombs beside a normal load. Memory per
# request is bounded by configuration, never by what a body inflates to,
# and one tenant's bombs do not stall everyone else (see bench/README.md).
#
# Phase 1: NORMAL closed-loop clients send the 1 KiB chat body for SECONDS.
# Phase 2: the same, beside ATTACK clients sending a ~32 KiB gzip body that
# inflates to 32 MiB + 1 KiB of `[0,0,...]` (over the default body limit).
# A text rule is configured, so every body is read by the rules.
# Reports normal p50/p99 alone and beside the attack, the attack's answers
# (each must be 413/400/403, none a timeout), and the gateway's peak RSS.
#
# Knobs: SECONDS_PER_PHASE=20 NORMAL=8 ATTACK=64 STORE=sqlite|postgres PIN=1
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-20}
NORMAL=${NORMAL:-8}
ATTACK=${ATTACK:-64}
STORE=${STORE:-sqlite}
PIN=${PIN:-1}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
OUT=${OUT:-$ROOT/bench/results/bombs-$(date +%Y%m%d-%H%M%S)}
MOCK=127.0.0.1:18000
GATEWAY=127.0.0.1:8080
ADMIN=127.0.0.1:9090
DB=custodian_bombs_$$
mkdir -p "$OUT"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
    if [[ $STORE == postgres ]]; then
        psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
# Pinned with taskset, which execs: `$!` is then the process itself.
CPU0=() CPU1=()
if [[ $PIN == 1 ]]; then CPU0=(taskset -c 0) CPU1=(taskset -c 1); fi

echo "building (release)..." >&2
cargo build --release --locked --bin custodian --example mock_upstream --example bomb_load >&2
BIN=$ROOT/target/release/custodian

python3 - "$OUT/bomb.json.gz" <<'PY'
import gzip, sys
body = b"[" + b"0," * (16 * 1024 * 1024 + 512) + b"0]"
with open(sys.argv[1], "wb") as f:
    f.write(gzip.compress(body, 9))
print(f"bomb: {len(body)} bytes inflated", file=sys.stderr)
PY
echo "bomb: $(stat -c %s "$OUT/bomb.json.gz") bytes sent" >&2

CONFIG=$OUT/custodian.toml
cat "$ROOT/bench/custodian.bench.toml" - >"$CONFIG" <<'TOML'

[[rules]]
name = "weapons"
keywords = ["build a bomb"]
TOML

"${CPU0[@]}" "$ROOT/target/release/examples/mock_upstream" "$MOCK" 2>"$OUT/mock.log" &
PIDS+=($!)
if [[ $STORE == postgres ]]; then
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
    DB_URL=${PG_ADMIN_URL%/*}/$DB
else
    DB_URL=sqlite://$OUT/custodian.db
fi
CUSTODIAN__DATABASE__URL=$DB_URL CUSTODIAN_FINGERPRINT_KEY=bench-fingerprint-secret \
    "${CPU1[@]}" "$BIN" --config "$CONFIG" serve 2>"$OUT/gateway.log" &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 1 100); do curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
kill -0 "$GW_PID" 2>/dev/null || { echo "the gateway did not start:" >&2; cat "$OUT/gateway.log" >&2; exit 1; }
RSS_START_KB=$(awk '/VmRSS/{print $2}' "/proc/$GW_PID/status")

"${CPU0[@]}" timeout $((SECONDS_PER_PHASE * 2 + 150)) "$ROOT/target/release/examples/bomb_load" "http://$GATEWAY/v1/chat/completions" sk-bench \
    "$ROOT/bench/bodies/chat.json" "$OUT/bomb.json.gz" "$SECONDS_PER_PHASE" "$NORMAL" "$ATTACK" \
    | tee "$OUT/load.jsonl"

RSS_PEAK_KB=$(awk '/VmHWM/{print $2}' "/proc/$GW_PID/status")
kill -TERM "$GW_PID"; wait "$GW_PID" || true

jq -rs --argjson start "$RSS_START_KB" --argjson peak "$RSS_PEAK_KB" '
    .[0].normal as $a | .[1].normal as $b | .[1].attack as $x |
    "| normal p50 alone | normal p99 alone | normal p50 beside | normal p99 beside | p99 ratio | attack answers | attack max ms | RSS start MiB | RSS peak MiB |",
    "|---|---|---|---|---|---|---|---|---|",
    "| \($a.p50_ms) | \($a.p99_ms) | \($b.p50_ms) | \($b.p99_ms) | \(($b.p99_ms / $a.p99_ms * 100 | round) / 100) | \($x.statuses | to_entries | map("\(.key): \(.value)") | join(", ")) | \($x.max_ms) | \($start / 1024 | floor) | \($peak / 1024 | floor) |",
    "normal answers beside the attack: \($b.statuses | to_entries | map("\(.key): \(.value)") | join(", "))"
' "$OUT/load.jsonl" | tee "$OUT/results.md"

# Every attack request answered, and answered as refused.
jq -se '.[1].attack.statuses | keys | all(. == "413" or . == "400" or . == "403")' "$OUT/load.jsonl" >/dev/null \
    || { echo "an attack request was not refused (or not answered)" >&2; exit 1; }
