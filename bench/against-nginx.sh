#!/usr/bin/env bash
# bench/against-nginx.sh [BINARY...]: each gateway binary measured by the
# team's yardstick (../shared/bench/run.sh) beside nginx and a direct call,
# in one invocation per binary: a fresh PostgreSQL database, the gateway
# pinned to cpu1 with PostgreSQL (PG_PIN=1), oha and the mock on cpu0, every
# record stored. After each run the gateway is stopped (SIGTERM: drain,
# flush) and the records stored are compared with the requests answered 200
# (warm-ups and smoke requests included); a mismatch fails the script.
#
# Knobs: the yardstick's own (DURATION, CONCURRENCY, MODES, PEERS=nginx, ...),
# CONFIG=bench/custodian.bench.toml, SHARED=../shared/bench,
# PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres.
# Needs oha, nginx and the yardstick's mock (../shared/bench/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$ROOT/../shared/bench}
CONFIG=${CONFIG:-$ROOT/bench/custodian.bench.toml}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_ROOT=${OUT_ROOT:-$ROOT/bench/results/nginx-$STAMP}
export PEERS=${PEERS-nginx} PG_PIN=${PG_PIN:-1}
mkdir -p "$OUT_ROOT"
if [[ $# -eq 0 ]]; then
    cargo build --release --locked >&2
    set -- "$ROOT/target/release/custodian"
fi

# The yardstick is read-only where it is shared: run a scratch copy.
SCRATCH=$(mktemp -d)
cp -r "$SHARED/." "$SCRATCH/"
GW=
DB=
cleanup() {
    [[ -n $GW ]] && kill "$GW" 2>/dev/null
    [[ -n $DB ]] && psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$SCRATCH"
    return 0
}
trap cleanup EXIT
[[ -x $SCRATCH/mock-upstream/target/release/mock-upstream ]] ||
    (cd "$SCRATCH/mock-upstream" && cargo build --release >&2)

n=0
for bin in "$@"; do
    n=$((n + 1))
    DB=custodian_nginx_$$_$n
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
    psql "${PG_ADMIN_URL%/*}/$DB" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null 2>&1 || true
    CUSTODIAN__DATABASE__URL=${PG_ADMIN_URL%/*}/$DB CUSTODIAN_FINGERPRINT_KEY=bench-fingerprint-secret \
        taskset -c 1 "$bin" --config "$CONFIG" serve 2>"$OUT_ROOT/gateway-$n.log" &
    GW=$!
    for _ in $(seq 1 100); do curl -fs http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break; sleep 0.1; done
    out=$OUT_ROOT/run-$n
    CANDIDATE_PIDS=$GW OUT=$out bash "$SCRATCH/run.sh" http://127.0.0.1:8080 >&2
    metrics=$(curl -fs http://127.0.0.1:9090/metrics)
    kill -TERM "$GW"
    wait "$GW" || true
    GW=
    stored=$(psql "${PG_ADMIN_URL%/*}/$DB" -tAc "SELECT count(*) FROM record_meta")
    at_rest=$(psql "${PG_ADMIN_URL%/*}/$DB" -tAc \
        "SELECT coalesce(round(avg(octet_length(request_body) + octet_length(response_body))), 0) FROM record_content")
    # Every request the gateway answered, warm-ups and smoke requests included.
    answered=$(awk '/^custodian_requests_total\{/ { n += $NF } END { print n + 0 }' <<<"$metrics")
    dropped=$(awk '/^custodian_records_dropped_total/ { n += $NF } END { print n + 0 }' <<<"$metrics")
    {
        echo "## $bin"
        echo
        cat "$out/results.md"
        echo
        echo "requests answered: $answered; records stored: $stored; dropped: $dropped; body bytes at rest per record: $at_rest"
        echo
    } | tee -a "$OUT_ROOT/results.md"
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    DB=
    [[ $answered == "$stored" && $dropped == 0 ]] || { echo "records lost: $answered answered, $stored stored" >&2; exit 1; }
done
echo "results: $OUT_ROOT/results.md" >&2
