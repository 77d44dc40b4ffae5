#!/usr/bin/env bash
# 12_append_scaling.sh: how the cost of an append grows with the stream.
# For each size in BENCH_SIZES (events already in the table), against a bare
# INSERT into a table of the same shape and indexes at the same size
# (bench_twin, as in 15_append_modes.sh):
#   - one client appending single events for BENCH_SECONDS      target >= 0.85
#   - one INSERT ... SELECT of BENCH_BULK events                 target >= 0.85
#   - read() of 100 events after a random seq of the stream's shard, against
#     SELECT * FROM bench_stream WHERE shard = 0 AND seq > :o ORDER BY seq
#     LIMIT 100 on the same table (every row sent to the client), alternately
#     (read, plain, plain, read: half of BENCH_SECONDS each)   target >= 0.80
# Both tables grow to each size by INSERT ... SELECT (keys 'k-0'..'k-19999',
# one shard), then are measured: single events alternately (stream, plain,
# plain, stream: half of BENCH_SECONDS each), once for each value of
# synchronous_commit in BENCH_SYNC_COMMIT, then three bulk inserts each (with
# the first value; alternating which side goes first; medians compared).  The
# rows these add stay, so the next size starts from a little more.
#
# Environment: BENCH_SIZES (default "0 1000000 10000000", as issue 13 asks,
# about 25 minutes; "0 1000000" for a quick run), BENCH_SECONDS (default
# 10), BENCH_BULK (default 200000), BENCH_SYNC_COMMIT (default "off on"),
# BENCH_WARMUP (default 5: seconds of unmeasured appends and reads on each
# side before the measured rounds at every size but 0; 0 for none).  Before
# each measured part at every size but 0, both tables' heaps, indexes and
# visibility maps are read into the operating system's cache (warm()).
set -euo pipefail
shopt -s inherit_errexit

sizes=${BENCH_SIZES:-0 1000000 10000000}
secs=${BENCH_SECONDS:-10}
bulk=${BENCH_BULK:-200000}
syncs=${BENCH_SYNC_COMMIT:-off on}
sync_commit=${syncs%% *}
for v in $syncs; do
    if ! [[ $v =~ ^(on|off|local|remote_write|remote_apply)$ ]]; then
        echo "12_append_scaling: BENCH_SYNC_COMMIT takes values of synchronous_commit" >&2
        exit 2
    fi
done
warmup=${BENCH_WARMUP:-5}
for v in $sizes $secs $bulk $warmup; do
    if ! [[ $v =~ ^[0-9]+$ ]]; then
        echo "12_append_scaling: BENCH_SIZES, BENCH_SECONDS, BENCH_BULK and BENCH_WARMUP take integers" >&2
        exit 2
    fi
done
round_secs=$(((secs + 1) / 2))
admin_db=${PGDATABASE:-postgres}
db=event_log_bench_scaling
work=$(mktemp -d /tmp/event_log_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"
fresh_db "$db"
export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c synchronous_commit=$sync_commit"

sql -c "CREATE EXTENSION event_log" -c "CREATE EXTENSION pg_prewarm" -c "SELECT event_log.create_stream('bench_stream', 1)" >/dev/null
fresh_twin

cat >"$work/stream.sql" <<'SCRIPT'
\set k random(0, 19999)
INSERT INTO bench_stream (key, type, payload) VALUES ('k-' || :k, 'ItemAdded', jsonb_build_object('sku', 'sku-' || :k, 'qty', 2));
SCRIPT
cat >"$work/plain.sql" <<'SCRIPT'
\set k random(0, 19999)
INSERT INTO bench_twin (shard, seq, key, version, type, payload)
VALUES (0, nextval('twin_seq'), 'k-' || :k, nextval('twin_version'), 'ItemAdded', jsonb_build_object('sku', 'sku-' || :k, 'qty', 2));
SCRIPT

# grow TABLE N: add N events.
grow() {
    local n=$1
    ((n > 0)) || return 0
    sql -c "INSERT INTO bench_stream (key, type, payload)
            SELECT 'k-' || (i % 20000), 'ItemAdded', jsonb_build_object('sku', 'sku-' || i, 'qty', 2)
            FROM generate_series(1, $n) i"
    sql -c "INSERT INTO bench_twin (shard, seq, key, version, type, payload)
            SELECT 0, nextval('twin_seq'), 'k-' || (i % 20000), nextval('twin_version'), 'ItemAdded',
                   jsonb_build_object('sku', 'sku-' || i, 'qty', 2)
            FROM generate_series(1, $n) i"
    sql -c "VACUUM ANALYZE bench_stream" -c "VACUUM ANALYZE bench_twin" -c CHECKPOINT
}

# warm: read both tables' heaps, indexes and visibility maps into the
# operating system's cache (pg_prewarm, read mode), so that neither side
# starts cold.  The heaps too: read() fetches rows from all over the heap,
# and a cold heap made both sides of the 10M read() measure the disk.
# The stream is loaded before the twin, and on a VM whose host pages out
# memory not touched for a minute (DAMON's pageout scheme on the development
# VM), the stream's indexes were back on disk by the time it was measured:
# at 10M events its appends then ran at a twentieth of the twin's.
warm() {
    sql -c "SELECT sum(pg_prewarm(rel, 'read', fork))
            FROM (SELECT indexrelid, 'main' FROM pg_index
                  WHERE indrelid IN ('bench_stream'::regclass, 'bench_twin'::regclass)
                  UNION ALL
                  SELECT t, 'main' FROM unnest(ARRAY['bench_stream'::regclass, 'bench_twin'::regclass]) t
                  UNION ALL
                  SELECT t, 'vm' FROM unnest(ARRAY['bench_stream'::regclass, 'bench_twin'::regclass]) t
                 ) AS w (rel, fork)
            WHERE pg_relation_size(rel, fork) > 0" >/dev/null
}

# read_scripts: the two read scripts, over the seqs the shard has now.
read_scripts() {
    local last
    last=$(sql -c "SELECT coalesce(max(seq), 0) FROM bench_stream WHERE shard = 0")
    last=$((last > 100 ? last - 100 : 0))
    printf '%s\n' "\\set o random(0, $last)" \
        "SELECT * FROM event_log.read('bench_stream', 0, :o, 100);" >"$work/read.sql"
    printf '%s\n' "\\set o random(0, $last)" \
        "SELECT * FROM bench_stream WHERE shard = 0 AND seq > :o ORDER BY seq LIMIT 100;" \
        >"$work/read_plain.sql"
}

# bulk TABLE: seconds for one INSERT ... SELECT of $bulk events, commit included.
bulk_once() {
    local cols=$1 select=$2
    sql <<SQL
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
INSERT INTO $cols SELECT $select FROM generate_series(1, $bulk) i;
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
}

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, sizes $sizes, ${secs}s per path, bulk $bulk, synchronous_commit $syncs (bulk and reads: $sync_commit)"
have=0
for size in $sizes; do
    if ((size > have)); then
        grow $((size - have))
        have=$size
    fi
    sql -c CHECKPOINT
    ((size > 0)) && warm
    # Unmeasured rounds first: after a large load the first path measured
    # would otherwise pay for the cold cache alone.
    if ((warmup > 0 && size > 0)); then
        pgbench_tps "$work/stream.sql" "$warmup"
        pgbench_tps "$work/plain.sql" "$warmup"
    fi
    for sync in $syncs; do
        opts="${PGOPTIONS:+$PGOPTIONS }-c synchronous_commit=$sync"
        pgbench_tps "$work/stream.sql" "$round_secs" "$opts"; s1=$tps
        pgbench_tps "$work/plain.sql" "$round_secs" "$opts"; p1=$tps
        pgbench_tps "$work/plain.sql" "$round_secs" "$opts"; p2=$tps
        pgbench_tps "$work/stream.sql" "$round_secs" "$opts"; s2=$tps
        report "single events at $size, sync $sync" "$(mean "$s1 $s2")" "$(mean "$p1 $p2")" tps 0.85 \
            "rounds (tps): stream $(ints "$s1 $s2"), plain $(ints "$p1 $p2")"
    done
    ((size > 0)) && warm
    # Three bulk inserts each, in alternating order (stream first, twin
    # first, stream first): one run per side moved by 20-30% on the 2-core
    # development VM.  The medians are compared.
    sts="" pts=""
    for r in 1 2 3; do
        for side in $( ((r % 2)) && echo "stream twin" || echo "twin stream"); do
            if [[ $side == stream ]]; then
                sts+="$(bulk_once "bench_stream (key, type, payload)" \
                    "'k-' || (i % 20000), 'ItemAdded', jsonb_build_object('sku', 'sku-' || i, 'qty', 2)") "
            else
                pts+="$(bulk_once "bench_twin (shard, seq, key, version, type, payload)" \
                    "0, nextval('twin_seq'), 'k-' || (i % 20000), nextval('twin_version'), 'ItemAdded', jsonb_build_object('sku', 'sku-' || i, 'qty', 2)") "
            fi
        done
    done
    st=$(median3 "$sts")
    pt=$(median3 "$pts")
    report "bulk of $bulk at $size" "$(awk -v b="$bulk" -v t="$st" 'BEGIN { printf "%.1f", b / t }')" \
        "$(awk -v b="$bulk" -v t="$pt" 'BEGIN { printf "%.1f", b / t }')" ev/s 0.85 \
        "seconds (median of three): stream ${sts% }, plain ${pts% }"
    read_scripts
    ((size > 0)) && warm
    if ((warmup > 0 && size > 0)); then
        pgbench_tps "$work/read.sql" "$warmup"
        pgbench_tps "$work/read_plain.sql" "$warmup"
    fi
    pgbench_tps "$work/read.sql" "$round_secs"; s1=$tps
    pgbench_tps "$work/read_plain.sql" "$round_secs"; p1=$tps
    pgbench_tps "$work/read_plain.sql" "$round_secs"; p2=$tps
    pgbench_tps "$work/read.sql" "$round_secs"; s2=$tps
    report "read() of 100 at $size" "$(mean "$s1 $s2")" "$(mean "$p1 $p2")" calls/s 0.80 \
        "rounds (calls/s): read() $(ints "$s1 $s2"), plain $(ints "$p1 $p2")"
    have=$((have + 3 * bulk))
done
print_summary "PostgreSQL $server, $(nproc) CPUs, sizes $sizes, BENCH_SECONDS=$secs, BENCH_BULK=$bulk, synchronous_commit $syncs"
sql -d "$admin_db" -c "DROP DATABASE $db"
