#!/usr/bin/env bash
# bench/slow_streams.sh [BINARY]: the gateway's memory with many slow streams
# open at once. STREAMS (1,000) clients each open a streamed chat completion
# at the same time; the yardstick's mock sends CHUNKS (50) SSE events
# DELAY_MS (200) apart, so every stream stays open ~10 s and all of them
# overlap. The gateway runs on cpu1, the mock and the load on cpu0, as in
# the other steps. Reports the gateway's peak RSS (VmHWM) against its RSS at rest,
# and records stored against streams answered after a SIGTERM flush (a
# mismatch fails the script). Every record is stored, in a fresh PostgreSQL
# database dropped afterwards.
#
# Knobs: STREAMS=1000 CHUNKS=50 DELAY_MS=200 CONFIG=bench/custodian.bench.toml
# SHARED=../shared/bench PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres
# Needs oha (../shared/bench/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STREAMS=${STREAMS:-1000}
CHUNKS=${CHUNKS:-50}
DELAY_MS=${DELAY_MS:-200}
SHARED=${SHARED:-$ROOT/../shared/bench}
CONFIG=${CONFIG:-$ROOT/bench/custodian.bench.toml}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
OUT=${OUT:-$ROOT/bench/results/slow-streams-$(date +%Y%m%d-%H%M%S)}
BIN=${1:-}
mkdir -p "$OUT"
if [[ -z $BIN ]]; then
    cargo build --release --locked >&2
    BIN=$ROOT/target/release/custodian
fi
# The yardstick's mock, built apart (its folder may be read-only).
cargo build --release --manifest-path "$SHARED/mock-upstream/Cargo.toml" \
    --target-dir "$ROOT/target/yardstick-mock" >&2
MOCK=$ROOT/target/yardstick-mock/release/mock-upstream
if curl -s -o /dev/null -m 1 http://127.0.0.1:18000/; then
    echo "127.0.0.1:18000 is taken: this step starts its own slow mock there" >&2
    exit 1
fi
# Each stream holds a client and an upstream connection.
ulimit -n $((STREAMS * 2 + 1024))

PIDS=()
DB=custodian_slow_$$
cleanup() {
    for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    return 0
}
trap cleanup EXIT

taskset -c 0 "$MOCK" --addr 127.0.0.1:18000 --chunks "$CHUNKS" --chunk-delay-ms "$DELAY_MS" 2>"$OUT/mock.log" &
PIDS+=($!)
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
CUSTODIAN__DATABASE__URL=${PG_ADMIN_URL%/*}/$DB CUSTODIAN_FINGERPRINT_KEY=bench-fingerprint-secret \
    taskset -c 1 "$BIN" --config "$CONFIG" serve 2>"$OUT/gateway.log" &
GW=$!
PIDS+=("$GW")
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk -v k="$1:" '$1 == k { print int($2 / 1024) }' "/proc/$GW/status"; }
at_rest=$(rss VmRSS)

# Sample RSS while the streams are open: VmHWM is the peak, the samples
# show when it came.
( while kill -0 "$GW" 2>/dev/null; do echo "$(date +%s.%N) $(rss VmRSS)"; sleep 0.5; done ) >"$OUT/rss.log" 2>/dev/null &
SAMPLER=$!
PIDS+=("$SAMPLER")
timeout $((CHUNKS * DELAY_MS / 1000 + 120)) taskset -c 0 oha --no-tui --output-format json -n "$STREAMS" -c "$STREAMS" \
    -t 60s -m POST -T application/json -H "Authorization: Bearer sk-bench" \
    -D "$SHARED/bodies/chat-stream.json" http://127.0.0.1:8080/v1/chat/completions >"$OUT/oha.json"
peak=$(rss VmHWM)
kill "$SAMPLER" 2>/dev/null || true
answered=$(curl -fs http://127.0.0.1:9090/metrics | awk '/^custodian_requests_total\{/ { n += $NF } END { print n + 0 }')
kill -TERM "$GW"
wait "$GW" || true
stored=$(psql "${PG_ADMIN_URL%/*}/$DB" -tAc "SELECT count(*) FROM record_meta")
ok=$(jq '.statusCodeDistribution["200"] // 0' "$OUT/oha.json")
slowest=$(jq '.summary.slowest' "$OUT/oha.json")
{
    echo "| streams | events x gap | answered 200 | slowest s | RSS at rest MiB | peak RSS MiB | records stored / requests answered |"
    echo "|---|---|---|---|---|---|---|"
    echo "| $STREAMS | $CHUNKS x ${DELAY_MS} ms | $ok | $slowest | $at_rest | $peak | $stored / $answered |"
} | tee "$OUT/results.md"
[[ $ok == "$STREAMS" ]] || { echo "not every stream was answered 200" >&2; exit 1; }
[[ $stored == "$answered" ]] || { echo "records lost: $answered answered, $stored stored" >&2; exit 1; }
