#!/usr/bin/env bash
# Crypto-shredding proof on a real deployment: a backup of the content
# database, restored after its content has expired, opens nothing past its
# expiry day with the live key store.
#
#   scripts/shred-proof.sh backup CONFIG OUT
#       Back up the content database named in CONFIG now (pg_dump -Fc for
#       PostgreSQL, an online copy for SQLite) to OUT.
#
#   scripts/shred-proof.sh check CONFIG BACKUP [ADMIN_URL]
#       Restore BACKUP into a scratch database (PostgreSQL: created through
#       ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres, and
#       dropped afterwards; SQLite: a temporary copy) and run
#       `custodian encryption-keys verify` on it with the live key store and KEK from
#       CONFIG. It prints how many bodies open, how many are expired, and
#       fails if any body whose content-expiry day has ended still opens.
#
#   scripts/shred-proof.sh erased CONFIG BACKUP TENANT [ADMIN_URL]
#       The same, after `custodian erase --tenant TENANT`: also fails if any
#       body of TENANT in the backup still opens (its tenant key is gone).
#
# Run `backup`, then `check` once the content in it has expired (30 days by
# default, plus the rest of that day and one sweep interval), or `erased`
# once the tenant is erased. Run `check` right after `backup` as a control:
# everything opens, nothing is past expiry.
#
# Needs: the custodian binary (CUSTODIAN, default `custodian` on PATH), the
# environment the gateway gets (the KEK variable, CUSTODIAN__* overrides),
# pg_dump/pg_restore/psql for PostgreSQL, sqlite3 for SQLite. Give database
# passwords through PGPASSWORD or ~/.pgpass rather than in the URLs, which
# the PostgreSQL tools show in the process list.
set -euo pipefail

CUSTODIAN=${CUSTODIAN:-custodian}

usage() {
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# The content database URL the gateway uses (the config, or its override).
database_url() {
    local config=$1
    if [[ -n ${CUSTODIAN__DATABASE__URL:-} ]]; then
        echo "$CUSTODIAN__DATABASE__URL"
        return
    fi
    # The [database] table's url key (a basic or literal TOML string).
    awk '/^[ \t]*\[/ { section = $0; gsub(/[ \t]/, "", section) }
         section == "[database]" && /^[ \t]*url[ \t]*=/ {
             sub(/^[^=]*=[ \t]*["\047]/, ""); sub(/["\047].*$/, ""); print; exit }' "$config"
}

backup() {
    local config=$1 out=$2 url
    url=$(database_url "$config")
    [[ -n $url ]] || { echo "no database.url in $config" >&2; exit 1; }
    case $url in
    postgres://* | postgresql://*)
        pg_dump -Fc -f "$out" "$url" ;;
    sqlite://*)
        local file=${url#sqlite://}
        file=${file%%\?*}
        sqlite3 "$file" ".backup '$out'" ;;
    *)
        echo "unsupported database URL" >&2; exit 1 ;;
    esac
    echo "backed up the content database to $out"
}

# ADMIN_URL with its database replaced by $2 (query parameters kept).
with_database() {
    local base=${1%%\?*} query=
    [[ $1 == *\?* ]] && query="?${1#*\?}"
    echo "${base%/*}/$2$query"
}

# check CONFIG BACKUP ADMIN_URL [verify flags…]
check() {
    local config=$1 backup=$2 admin=${3:-postgres://postgres@127.0.0.1:5432/postgres}
    shift 3
    local url scratch scratch_url
    url=$(database_url "$config")
    case $url in
    postgres://* | postgresql://*)
        scratch="custodian_shred_check_$$_$(date +%s)"
        scratch_url=$(with_database "$admin" "$scratch")
        psql -q "$admin" -c "CREATE DATABASE $scratch" >/dev/null
        # Expanded now: the locals are gone when the trap runs.
        trap "psql -q '$admin' -c 'DROP DATABASE IF EXISTS $scratch WITH (FORCE)' >/dev/null" EXIT
        pg_restore --no-owner --no-acl -d "$scratch_url" "$backup"
        CUSTODIAN__DATABASE__URL="$scratch_url" "$CUSTODIAN" --config "$config" encryption-keys verify "$@" ;;
    sqlite://*)
        scratch=$(mktemp -d)
        trap "rm -rf '$scratch'" EXIT
        cp "$backup" "$scratch/restored.db"
        CUSTODIAN__DATABASE__URL="sqlite://$scratch/restored.db" "$CUSTODIAN" --config "$config" encryption-keys verify "$@" ;;
    *)
        echo "unsupported database URL" >&2; exit 1 ;;
    esac
}

case ${1:-} in
backup) [[ $# -eq 3 ]] || usage; backup "$2" "$3" ;;
check) [[ $# -ge 3 && $# -le 4 ]] || usage; check "$2" "$3" "${4:-}" ;;
erased) [[ $# -ge 4 && $# -le 5 ]] || usage; check "$2" "$3" "${5:-}" --erased-tenant "$4" ;;
*) usage ;;
esac
