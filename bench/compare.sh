#!/usr/bin/env bash
# bench/compare.sh BEFORE AFTER: two gateway binaries under the same load, in
# one run, alternating (before, after, before, after) so drift hits both.
# Each round: a fresh PostgreSQL database, the gateway pinned to cpu1 and the
# load (examples/bomb_load, normal phase only) and the mock on cpu0, NORMAL
# closed-loop clients for SECONDS. Prints p50/p99 latency, requests per
# second, gateway CPU per request, and records stored vs answered.
#
# Knobs: SECONDS=10 NORMAL=16 ROUNDS=2 PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BEFORE=${1:?usage: bench/compare.sh BEFORE_BINARY AFTER_BINARY}
AFTER=${2:?usage: bench/compare.sh BEFORE_BINARY AFTER_BINARY}
SECONDS_PER_ROUND=${SECONDS:-10}
NORMAL=${NORMAL:-16}
ROUNDS=${ROUNDS:-2}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
OUT=${OUT:-$ROOT/bench/results/compare-$(date +%Y%m%d-%H%M%S)}
MOCK=127.0.0.1:18000
ADMIN=127.0.0.1:9090
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$OUT"

cargo build --release --locked --example mock_upstream --example bomb_load >&2
PIDS=()
DBS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
    for db in "${DBS[@]:-}"; do
        [[ -n $db ]] && psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
    done
    return 0
}
trap cleanup EXIT

taskset -c 0 "$ROOT/target/release/examples/mock_upstream" "$MOCK" 2>"$OUT/mock.log" &
PIDS+=($!)
: >"$OUT/empty"

round() { # NAME BINARY N
    local name=$1 bin=$2 n=$3 db=custodian_compare_$$_$3
    DBS+=("$db")
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null
    CUSTODIAN__DATABASE__URL=${PG_ADMIN_URL%/*}/$db CUSTODIAN_FINGERPRINT_KEY=bench-fingerprint-secret \
        taskset -c 1 "$bin" --config "$ROOT/bench/custodian.bench.toml" serve 2>"$OUT/$name-$n.log" &
    local gw=$!
    for _ in $(seq 1 100); do curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    local t0 ticks0 ticks1
    ticks0=$(awk '{print $14 + $15}' "/proc/$gw/stat")
    t0=$(date +%s.%N)
    taskset -c 0 timeout $((SECONDS_PER_ROUND * 2 + 60)) "$ROOT/target/release/examples/bomb_load" \
        "http://127.0.0.1:8080/v1/chat/completions" sk-bench "$ROOT/bench/bodies/chat.json" "$OUT/empty" \
        "$SECONDS_PER_ROUND" "$NORMAL" 0 >"$OUT/$name-$n.json"
    ticks1=$(awk '{print $14 + $15}' "/proc/$gw/stat")
    kill -TERM "$gw"; wait "$gw" || true
    local stored
    stored=$(psql "${PG_ADMIN_URL%/*}/$db" -tAc "SELECT count(*) FROM record_meta")
    # Both phases of the load are normal clients: latency from the first,
    # throughput and CPU over both.
    jq -rs --arg name "$name" --argjson ticks $((ticks1 - ticks0)) --argjson hz "$CLK_TCK" \
        --argjson secs $((SECONDS_PER_ROUND * 2)) --argjson stored "$stored" '
        .[0].normal as $n | (map(.normal.statuses | to_entries | map(.value) | add) | add) as $answered |
        "| \($name) | \($n.p50_ms) | \($n.p99_ms) | \(($answered / $secs) | floor) | \((($ticks / $hz * 1000 / $answered) * 1000 | round) / 1000) | \($answered) | \($stored) |"
    ' "$OUT/$name-$n.json" | tee -a "$OUT/results.md"
}

echo "| binary | p50 ms | p99 ms | RPS | gateway CPU ms/req | answered | stored |" | tee "$OUT/results.md"
echo "|---|---|---|---|---|---|---|" | tee -a "$OUT/results.md"
for n in $(seq 1 "$ROUNDS"); do
    round before "$BEFORE" "b$n"
    round after "$AFTER" "a$n"
done
