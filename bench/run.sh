#!/usr/bin/env bash
# bench/run.sh: what the gateway adds to a request, measured on loopback with
# nothing from outside this repository (see bench/README.md).
#
# Builds the release binary and the mock upstream (examples/mock_upstream.rs),
# runs the same closed-loop load with oha against the mock directly (the
# floor) and through the gateway, and reports added latency, throughput ratio,
# gateway CPU per request, PostgreSQL CPU per 1,000 records, peak RSS, and
# records stored vs requests answered.
#
# Knobs: DURATION=10 (s per step) CONCURRENCY="32 256" MODES="json sse"
#        STORE=postgres|sqlite PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres
#        PIN=1 (gateway on cpu1, load+mock on cpu0) PG_PIN=1 (PostgreSQL on the gateway's core)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-"32 256"}
MODES=${MODES:-"json sse"}
STORE=${STORE:-postgres}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PIN=${PIN:-1}
PG_PIN=${PG_PIN:-1}
OUT=${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}
MOCK=127.0.0.1:18000
GATEWAY=127.0.0.1:8080
ADMIN=127.0.0.1:9090
DB=custodian_bench_$$
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$OUT"

command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked --version 1.16.0" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is needed: apt-get install -y jq" >&2; exit 1; }

PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
    if [[ $STORE == postgres ]]; then
        psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ -n ${PG_PID:-} ]]; then taskset -a -pc 0-$(($(nproc --all) - 1)) "$PG_PID" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

pin() { [[ $PIN == 1 ]] && taskset -a -pc "$1" "$2" >/dev/null; return 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_ticks() { # all PostgreSQL processes: the server and its backends
    local total=0 pid
    for pid in $(pgrep -f '^postgres|postgres:'); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

echo "building (release)..." >&2
cargo build --release --locked --bin custodian --example mock_upstream >&2
BIN=$ROOT/target/release/custodian

taskset -c 0 "$ROOT/target/release/examples/mock_upstream" "$MOCK" 2>"$OUT/mock.log" &
PIDS+=($!)

if [[ $STORE == postgres ]]; then
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
    DB_URL=${PG_ADMIN_URL%/*}/$DB
    PG_PID=$(head -1 /var/run/postgresql/*-main.pid 2>/dev/null || true)
    if [[ $PG_PIN == 1 && -n $PG_PID ]]; then
        for pid in $(pgrep -f '^postgres|postgres:'); do taskset -pc 1 "$pid" >/dev/null 2>&1 || true; done
    fi
else
    DB_URL=sqlite://$OUT/custodian.db
fi

CUSTODIAN__DATABASE__URL=$DB_URL CUSTODIAN_FINGERPRINT_KEY=bench-fingerprint-secret \
    "$BIN" --config "$ROOT/bench/custodian.bench.toml" serve 2>"$OUT/gateway.log" &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 1 100); do curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
pin 1 "$GW_PID"

body() { [[ $1 == sse ]] && echo "$ROOT/bench/bodies/chat-stream.json" || echo "$ROOT/bench/bodies/chat.json"; }

# oha: closed loop, -z bounded, every request timed out after 30 s.
load() { # url mode conc out.json
    taskset -c 0 oha --no-tui --output-format json -z "${DURATION}s" -c "$3" -t 30s -w -m POST \
        -H "Authorization: Bearer sk-bench" -T application/json -D "$(body "$2")" "$1" >"$4" 2>/dev/null
}

ANSWERED=0
printf '| target | mode | conc | RPS | p50 ms | p99 ms | +p50 ms | +p99 ms | RPS/floor | gw CPU ms/req | pg CPU ms/1k rec | errors |\n' | tee "$OUT/results.md"
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n' | tee -a "$OUT/results.md"
for mode in $MODES; do
    for conc in $CONCURRENCY; do
        # warm-up, unmeasured
        DURATION=2 load "http://$MOCK/v1/chat/completions" "$mode" "$conc" /dev/null
        load "http://$MOCK/v1/chat/completions" "$mode" "$conc" "$OUT/direct-$mode-$conc.json"
        DURATION=2 load "http://$GATEWAY/v1/chat/completions" "$mode" "$conc" "$OUT/warm.json"
        ANSWERED=$((ANSWERED + $(jq '[.statusCodeDistribution["200"] // 0] | add' "$OUT/warm.json")))
        gw0=$(cpu_ticks "$GW_PID"); pg0=$(pg_ticks)
        load "http://$GATEWAY/v1/chat/completions" "$mode" "$conc" "$OUT/gateway-$mode-$conc.json"
        sleep 1 # let the writer drain this step's records into PostgreSQL's CPU count
        gw1=$(cpu_ticks "$GW_PID"); pg1=$(pg_ticks)
        f=$OUT/direct-$mode-$conc.json g=$OUT/gateway-$mode-$conc.json
        ok=$(jq '.statusCodeDistribution["200"] // 0' "$g")
        ANSWERED=$((ANSWERED + ok))
        jq -r --arg mode "$mode" --arg conc "$conc" --argjson ok "$ok" \
            --argjson gw "$(( (gw1 - gw0) ))" --argjson pg "$(( (pg1 - pg0) ))" --argjson tck "$CLK_TCK" \
            --slurpfile d "$f" '
            def ms(x): (x * 1000 * 1000 | round) / 1000;
            . as $g | $d[0] as $d |
            ["direct", $mode, $conc, ($d.summary.requestsPerSec|round), ms($d.latencyPercentiles.p50), ms($d.latencyPercentiles.p99), "floor", "floor", 1, "-", "-", (($d.errorDistribution // {}) | length)],
            ["custodian", $mode, $conc, ($g.summary.requestsPerSec|round), ms($g.latencyPercentiles.p50), ms($g.latencyPercentiles.p99),
             ms($g.latencyPercentiles.p50 - $d.latencyPercentiles.p50), ms($g.latencyPercentiles.p99 - $d.latencyPercentiles.p99),
             (($g.summary.requestsPerSec / $d.summary.requestsPerSec * 100 | round) / 100),
             ((($gw / $tck * 1000) / ([$ok,1]|max)) * 1000 | round / 1000),
             ((($pg / $tck * 1000) / ([$ok,1]|max) * 1000) * 10 | round / 10),
             (($g.errorDistribution // {}) | length)]
            | "| " + (map(tostring) | join(" | ")) + " |"' "$g" | tee -a "$OUT/results.md"
    done
done

RSS_KB=$(awk '/VmHWM/{print $2}' "/proc/$GW_PID/status")
kill -TERM "$GW_PID"
wait "$GW_PID" || true
if [[ $STORE == postgres ]]; then
    STORED=$(psql "$DB_URL" -Atc 'SELECT count(*) FROM record_meta')
else
    STORED=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from record_meta').fetchone()[0])" "$OUT/custodian.db")
fi
{
    echo
    echo "store: $STORE; gateway peak RSS: $((RSS_KB / 1024)) MiB"
    echo "requests answered 200 through the gateway: $ANSWERED; records stored: $STORED"
    DROPPED=$(grep -c 'record not stored' "$OUT/gateway.log" || true)
    echo "records dropped (logged): $DROPPED"
} | tee -a "$OUT/results.md"
[[ $ANSWERED == "$STORED" ]] || { echo "MISMATCH: answered $ANSWERED, stored $STORED" >&2; exit 1; }
