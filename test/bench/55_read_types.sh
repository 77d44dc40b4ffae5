#!/usr/bin/env bash
# 55_read_types.sh: read(types => ...) against read() without a filter
# (issue 19: a read by type that returns 1% of a 1-million-event stream
# costs at most 5x a read of the same number of events without a filter).
#
# Run by test/bench/run.sh (`make bench`).  One stream of BENCH_EVENTS events
# in one shard, 1% of them of type 'Rare', spread evenly.  Each measurement is
# BENCH_READS reads of 1000 events from random after_seq positions, in one
# session (plpgsql loop, clock_timestamp()), as reads per second:
#   1. read() without a filter: the limit
#   2. read(types => ARRAY['Rare']) without an index on (shard, type, seq)
#      (reported, no target: it walks ~100 events per event returned)
#   3. the same with that index                                  target >= 0.20
#   4. the cost of that index to appends: one INSERT ... SELECT of
#      BENCH_BATCH events into a stream with the index against one without
#      (median of 3)                                              (reported)
#
# Environment: BENCH_EVENTS (default 1000000), BENCH_READS (default 200),
# BENCH_BATCH (default 200000).  Exits non-zero only if something fails.
set -euo pipefail
shopt -s inherit_errexit
BENCH_NAME=55_read_types
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

events=${BENCH_EVENTS:-1000000}
reads=${BENCH_READS:-200}
batch=${BENCH_BATCH:-200000}

sql -c "DROP DATABASE IF EXISTS bench_types" -c "CREATE DATABASE bench_types"
export PGDATABASE=bench_types
sql -c "CREATE EXTENSION event_log" \
    -c "SELECT event_log.create_stream('rt', 1)" \
    -c "INSERT INTO rt (key, type, payload)
        SELECT 'k' || (i % 1000), CASE WHEN i % 100 = 0 THEN 'Rare' ELSE 'Common' END,
               jsonb_build_object('n', i)
        FROM generate_series(1, $events) i" \
    -c "VACUUM ANALYZE rt"

# reads per second of READ_SQL (a query with :a for the after_seq)
rate() {
    sql -c "SELECT setseed(0.5)" -c "DO \$\$
        DECLARE t0 timestamptz; n bigint := 0; a bigint;
        BEGIN
            -- one untimed round to warm the plan and the cache
            PERFORM count(*) FROM $(sed 's/:a/0/' <<<"$1");
            t0 := clock_timestamp();
            FOR i IN 1..$reads LOOP
                a := (random() * ($events / 2))::bigint;
                n := n + (SELECT count(*) FROM $(sed 's/:a/a/' <<<"$1"));
            END LOOP;
            RAISE NOTICE 'rate % rows %', $reads / extract(epoch FROM clock_timestamp() - t0), n;
        END \$\$" 2>&1 | awk '/rate/ { print $(NF-2) }'
}

plain=$(rate "event_log.read('rt', 0, :a, 1000)")
noindex=$(rate "event_log.read('rt', 0, :a, 1000, ARRAY['Rare'])")
sql -c "CREATE INDEX rt_type ON rt (shard, type, seq)" -c "ANALYZE rt"
indexed=$(rate "event_log.read('rt', 0, :a, 1000, ARRAY['Rare'])")

report "read 1% by type, no type index" "$noindex" "$plain" "reads/s" 0
report "read 1% by type, (shard,type,seq)" "$indexed" "$plain" "reads/s" 0.20

# appends: events per second of one batch, with and without the index
with=() without=()
for run in 1 2 3; do
    for idx in yes no; do
        sql -c "SELECT event_log.drop_stream('ap')" >/dev/null 2>&1 || true
        sql -c "SELECT event_log.create_stream('ap', 1)" >/dev/null
        [[ $idx == no ]] || sql -c "CREATE INDEX ap_type ON ap (shard, type, seq)"
        sql -c "CHECKPOINT"
        ms=$(sql -c "\\timing on" -c "INSERT INTO ap (key, type, payload)
                SELECT 'k' || (i % 1000), CASE WHEN i % 100 = 0 THEN 'Rare' ELSE 'Common' END, '{}'
                FROM generate_series(1, $batch) i" | awk '/^Time:/ { print $2 }')
        eps=$(awk -v b="$batch" -v ms="$ms" 'BEGIN { printf "%.0f", b / ms * 1000 }')
        if [[ $idx == yes ]]; then with+=("$eps"); else without+=("$eps"); fi
    done
done
report "append batch with type index" "$(median3 "${with[*]}")" "$(median3 "${without[*]}")" "ev/s" 0
sql -d postgres -c "DROP DATABASE bench_types"
print_summary "$BENCH_NAME ($events events, $reads reads of 1000, batch $batch)"
