#!/usr/bin/env bash
# The gateway under a bounded closed-loop load (wrk), on PostgreSQL:
#   steady      : the load alone;
#   outage      : the same load with PostgreSQL stopped (pg_ctlcluster) for
#                 OUTAGE seconds in the middle, and how long the spool takes
#                 to drain once it is back;
#   journal on  : the cost of spool.journal on the proxy path (against steady);
#   encrypted   : the cost of [encryption] (AES-256-GCM per body), and the
#                 bytes stored per record with and without;
#   encrypted-pg: the same with the keys in a PostgreSQL key store
#                 (encryption.key_store_url, a database of its own).
# For each: throughput, p50/p99/p99.9, errors, peak RSS, records stored vs
# requests answered.
#
#   bench/outage.sh [seconds=60] [connections=256] [outage=20] [mode=json|sse]
#   RUNS="journal steady" bench/outage.sh …   # choose and order the runs
#
# Stops and starts the machine's PostgreSQL: run it on a bench machine, not
# beside the tests. Needs wrk, psql, pg_ctlcluster. Everything on loopback;
# every process stops at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${1:-60}
CONNECTIONS=${2:-256}
OUTAGE=${3:-20}
MODE=${4:-json}
BIN=$ROOT/target/release/custodian
OUT=$(mktemp -d)
PG_VERSION=$(ls /etc/postgresql)
DB=custodian_bench_outage
KEYS_DB=custodian_bench_keys
ADMIN="postgres://postgres@127.0.0.1:5432/postgres"
PIDS=()
pg() { pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main "$1"; }
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  pg_isready -q -h 127.0.0.1 || pg start
  psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS $KEYS_DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

cargo build --release --locked --bin custodian --example mock_upstream >&2
"$ROOT/target/release/examples/mock_upstream" 127.0.0.1:18000 2>"$OUT/mock.log" &
PIDS+=($!)

BODY=$ROOT/bench/bodies/chat.json
[ "$MODE" = sse ] && BODY=$ROOT/bench/bodies/chat-stream.json
cat >"$OUT/load.lua" <<LUA
wrk.method = "POST"
wrk.body = io.open("$BODY"):read("a")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("answered=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f non2xx=%d socket_errors=%d\n",
    summary.requests - e.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUA

export CUSTODIAN_FINGERPRINT_KEY=bench-fingerprint-secret
export CUSTODIAN__DATABASE__URL="postgres://postgres@127.0.0.1:5432/$DB"
export CUSTODIAN__SWEEPER__ENABLED=false
export CUSTODIAN__WRITER__STORE_TIMEOUT=2s

metric() { curl -fs http://127.0.0.1:9090/metrics | awk -v m="$1" '$1 == m { print $2 }'; }

# run NAME JOURNAL OUTAGE_SECONDS [KEYS=none|dir|postgres]
run() {
  local name=$1 journal=$2 outage=$3 keys=${4:-none}
  psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" \
    -c "DROP DATABASE IF EXISTS $KEYS_DB WITH (FORCE)" -c "CREATE DATABASE $KEYS_DB" >/dev/null
  rm -rf "$OUT/spool" "$OUT/keys"
  local encrypted=true
  [ "$keys" = none ] && encrypted=false
  if [ "$keys" = postgres ]; then
    export CUSTODIAN__ENCRYPTION__KEY_STORE_URL="postgres://postgres@127.0.0.1:5432/$KEYS_DB"
  else
    unset CUSTODIAN__ENCRYPTION__KEY_STORE_URL
  fi
  BENCH_KEK=$(openssl rand -hex 32) CUSTODIAN__ENCRYPTION__ENABLED=$encrypted \
    CUSTODIAN__ENCRYPTION__KEY_DIR="$OUT/keys" CUSTODIAN__ENCRYPTION__KEK__ENV=BENCH_KEK \
    CUSTODIAN__SPOOL__DIR="$OUT/spool" CUSTODIAN__SPOOL__JOURNAL=$journal \
    "$BIN" -c "$ROOT/bench/custodian.bench.toml" serve 2>"$OUT/$name.gateway.log" &
  local gw=$!
  PIDS+=($gw)
  for _ in $(seq 100); do curl -fs http://127.0.0.1:9090/readyz >/dev/null && break; sleep 0.1; done
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s -s "$OUT/load.lua" \
    http://127.0.0.1:8080/v1/chat/completions >"$OUT/$name.wrk" &
  local load=$! drain="–"
  if [ "$outage" -gt 0 ]; then
    sleep $(( (DURATION - outage) / 2 ))
    pg stop
    sleep "$outage"
    local spooled
    spooled=$(metric custodian_spool_bytes)
    pg start
    local back
    back=$(date +%s.%N)
    for _ in $(seq 1200); do
      [ "$(metric custodian_spool_bytes)" = "0" ] && break
      sleep 0.1
    done
    drain="$(echo "$(date +%s.%N) - $back" | bc | xargs printf '%.1f') s (${spooled:-0} bytes spooled)"
  fi
  wait $load
  local rss
  rss=$(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' /proc/$gw/status)
  kill -TERM $gw
  wait $gw || true
  local stored
  stored=$(psql -tA "postgres://postgres@127.0.0.1:5432/$DB" -c \
    "SELECT count(*) FILTER (WHERE status = 200 AND outcome = 'completed') || ' completed, ' || count(*) || ' in all' FROM record_meta")
  local body_bytes
  body_bytes=$(psql -tA "postgres://postgres@127.0.0.1:5432/$DB" -c \
    "SELECT round(avg(octet_length(request_body) + octet_length(response_body))) FROM record_content")
  echo "| $name | $(grep -o 'answered=.*' "$OUT/$name.wrk" | tr ' ' '\n' | cut -d= -f2 | paste -sd'|' | sed 's/|/ | /g') | $rss | $stored | $body_bytes | $drain |"
}

echo "mode=$MODE duration=${DURATION}s connections=$CONNECTIONS outage=${OUTAGE}s"
echo
echo "| run | answered | RPS | p50 ms | p99 ms | p99.9 ms | non-2xx | socket errors | peak RSS | records (200 completed / all) | body bytes per record | spool drain after PostgreSQL is back |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for r in ${RUNS:-steady outage journal}; do
  case $r in
    steady) run steady false 0 ;;
    outage) run "outage ${OUTAGE}s" false "$OUTAGE" ;;
    journal) run "journal on" true 0 ;;
    encrypted) run encrypted false 0 dir ;;
    encrypted-pg) run "encrypted, PostgreSQL key store" false 0 postgres ;;
  esac
done
echo
echo "logs: $OUT"
