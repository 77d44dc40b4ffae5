#!/usr/bin/env bash
# 15_append_modes.sh: appends as users run them, in both commit modes
# (docs/streams.md, "Commit modes"), against a bare INSERT into a table of the
# same shape and indexes (bench_twin: primary key (shard, seq), unique
# (key, version) and (event_id), BRIN on recorded_at; seq and version from
# sequences), with synchronous_commit on and off:
#   - 8 clients appending single events to a 1-shard stream     target >= 0.80
#   - 4 clients, 4 shards, random keys (shared shards)          target >= 0.90
# Every path runs BENCH_ROUNDS times (default 4) for BENCH_SECONDS divided
# among them, in the order serial, grouped, plain, then plain, grouped,
# serial, and so on; each run starts after a CHECKPOINT with its table empty.
# A path's figure is the median of its rounds, and its ratio the median of
# its per-round ratios against the plain round of the same turn (this VM's
# rate drifts by tens of percent within a minute; two rounds next to each
# other drift together).  Run by test/bench/run.sh (`make bench`).
#
# Environment: BENCH_SECONDS (seconds per path, default 10), BENCH_ROUNDS
# (rounds per path, default 4), BENCH_SYNC (which synchronous_commit values,
# default "on off").
set -euo pipefail
shopt -s inherit_errexit

secs=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-4}
syncs=${BENCH_SYNC:-on off}
if ! [[ $secs =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ ]]; then
    echo "15_append_modes: BENCH_SECONDS and BENCH_ROUNDS must be positive integers" >&2
    exit 2
fi
round_secs=$(((secs + rounds - 1) / rounds))
admin_db=${PGDATABASE:-postgres}
db=event_log_bench_modes
work=$(mktemp -d /tmp/event_log_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"
fresh_db "$db"
sql -c "CREATE EXTENSION event_log"

payload="jsonb_build_object('sku', 'sku-' || :sku, 'qty', CAST(:qty AS int))"
for n in 1 4; do
    cat >"$work/stream_$n.sql" <<SCRIPT
\\set k random(1, 10000)
\\set sku random(1, 1000)
\\set qty random(1, 5)
INSERT INTO bench_stream (key, type, payload) VALUES ('cart-' || :k, 'ItemAdded', $payload);
SCRIPT
    cat >"$work/plain_$n.sql" <<SCRIPT
\\set k random(1, 10000)
\\set sku random(1, 1000)
\\set qty random(1, 5)
INSERT INTO bench_twin (shard, seq, key, version, type, payload)
VALUES (event_log.shard_for('cart-' || :k, $n), nextval('twin_seq'), 'cart-' || :k,
        nextval('twin_version'), 'ItemAdded', $payload);
SCRIPT
done

# fresh TABLE SHARDS MODE: the empty target of the next run.
fresh() {
    if [[ $1 == bench_stream ]]; then
        sql -c "SELECT event_log.drop_stream(stream) FROM event_log.streams
                WHERE stream = to_regclass('bench_stream')" \
            -c "SELECT event_log.create_stream('bench_stream', $2)" \
            -c "SELECT event_log.alter_stream('bench_stream', commit_mode => '$3')" >/dev/null
    else
        fresh_twin
    fi
}

# run PATH SCRIPT TABLE SHARDS MODE CLIENTS SYNC: one round; appends the tps
# to ROUNDS[PATH], after checking that every transaction appended one row.
declare -A ROUNDS=()
run() {
    local path=$1 script=$2 table=$3 shards=$4 mode=$5 clients=$6 sync=$7 out tps txns rows
    fresh "$table" "$shards" "$mode"
    sql -c CHECKPOINT
    if ! out=$(PGOPTIONS="-c synchronous_commit=$sync" pgbench -n -M prepared -f "$script" \
            -c "$clients" -j 2 -T "$round_secs" 2>&1); then
        echo "$out" >&2
        return 1
    fi
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    rows=$(sql -c "SELECT count(*) FROM $table")
    if [[ -z $tps ]] || ((rows < txns || rows > txns + clients)); then
        echo "$out" >&2
        echo "15_append_modes: $path: $txns transactions but $rows rows" >&2
        return 1
    fi
    ROUNDS[$path]+="$tps "
}

# section LABEL SHARDS CLIENTS SYNC TARGET
section() {
    local label=$1 shards=$2 clients=$3 sync=$4 target=$5
    local order=(serial grouped plain) r path
    ROUNDS=()
    for ((r = 1; r <= rounds; r++)); do
        for path in "${order[@]}"; do
            if [[ $path == plain ]]; then
                run plain "$work/plain_$shards.sql" bench_twin "$shards" - "$clients" "$sync"
            else
                run "$path" "$work/stream_$shards.sql" bench_stream "$shards" "$path" "$clients" "$sync"
            fi
        done
        reverse order
    done
    for path in serial grouped; do
        report "$label, sync $sync, $path" "$(median "${ROUNDS[$path]}")" \
            "$(median "${ROUNDS[plain]}")" tps "$target" \
            "rounds (tps): $path $(ints "${ROUNDS[$path]}"), plain $(ints "${ROUNDS[plain]}")" \
            "$(ratio_median "${ROUNDS[$path]}" "${ROUNDS[plain]}")"
    done
}

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, ${secs}s per path ($rounds rounds of ${round_secs}s;" \
    "figures are medians of rounds, ratios medians of per-round ratios)"
for sync in $syncs; do
    section "8 clients, 1 shard" 1 8 "$sync" 0.80
    section "4 clients, 4 shards, random keys" 4 4 "$sync" 0.90
done
print_summary "PostgreSQL $server, $(nproc) CPUs, BENCH_SECONDS=$secs, BENCH_ROUNDS=$rounds"
sql -d "$admin_db" -c "DROP DATABASE $db"
