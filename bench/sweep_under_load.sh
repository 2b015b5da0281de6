#!/usr/bin/env bash
# Latency of proxied requests while the retention sweeper works through a
# large backlog, against the same load without a sweep.
#
#   bench/sweep_under_load.sh <store-url> [seconds]
#
# The store should already hold expired records (examples/seed_records.rs
# with an `ended_days_ago` past the content retention). Needs wrk. Runs the
# release binary and the loopback mock (examples/mock_upstream.rs); every
# process stays on loopback and stops at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
URL=${1:?usage: sweep_under_load.sh <store-url> [seconds]}
SECONDS_PER_RUN=${2:-20}
BIN=$ROOT/target/release/custodian
OUT=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

cargo build --release --locked --bin custodian --example mock_upstream >&2
"$ROOT/target/release/examples/mock_upstream" 127.0.0.1:18000 2>"$OUT/mock.log" &
PIDS+=($!)
export CUSTODIAN_FINGERPRINT_KEY=bench-fingerprint-secret
export CUSTODIAN__DATABASE__URL=$URL
export CUSTODIAN__SWEEPER__ENABLED=false
"$BIN" -c "$ROOT/bench/custodian.bench.toml" serve 2>"$OUT/gateway.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -fs http://127.0.0.1:9090/readyz >/dev/null && break; sleep 0.1; done

cat >"$OUT/post.lua" <<LUA
wrk.method = "POST"
wrk.body = io.open("$ROOT/bench/bodies/chat.json"):read("a")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
LUA
load() { wrk -t2 -c16 -d"${SECONDS_PER_RUN}s" --latency -s "$OUT/post.lua" http://127.0.0.1:8080/v1/chat/completions; }

echo "== without a sweep"
load | grep -E "Requests/sec|^ +(50|90|99)%"
echo "== with a sweep running"
load >"$OUT/loaded.txt" &
LOAD=$!
sleep 2
start=$(date +%s.%N)
"$BIN" -c "$ROOT/bench/custodian.bench.toml" sweep >"$OUT/sweep.txt"
end=$(date +%s.%N)
wait $LOAD
grep -E "Requests/sec|^ +(50|90|99)%" "$OUT/loaded.txt"
echo "sweep wall time: $(echo "$end - $start" | bc) s"
cat "$OUT/sweep.txt"
