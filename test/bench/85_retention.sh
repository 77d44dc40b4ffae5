#!/usr/bin/env bash
# 85_retention.sh: retention (docs/retention.md), issue 15's figures.
#
#  - removal: enforce_retention() removing 90% of a stream of BENCH_EVENTS
#    events (4 shards), against a plain DELETE of the same rows from the
#    bare twin table of the same shape and size (the physical limit of a
#    heap removal), as events per second;
#  - removal with archive => true against the same removal without;
#  - an appender (1 client, single events) during the removal: its
#    slowest append, against its slowest append on an idle stream;
#  - the space an archived event takes against the space it took in the
#    stream (heap, TOAST and its four indexes): the issue's target is a
#    third or less, so the ratio is hot / archived with target 3;
#  - what the disk gives back: the stream's size before, right after the
#    removal and after VACUUM (printed, no target: heap removal gives space
#    back to new events, not to the file system; docs/design/retention.md).
#
# Environment: BENCH_EVENTS (default 1000000).  Exits non-zero only if
# something fails.
set -euo pipefail
shopt -s inherit_errexit
BENCH_NAME=85_retention
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

events=${BENCH_EVENTS:-1000000}
keep=$((events / 10 / 4))            # per shard: 10% stays
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fresh_db bench_retention
sql -c "CREATE EXTENSION event_log"
payload="jsonb_build_object('customer', 'customer-' || (i % 5000), 'sku', 'SKU-' || (i % 997),
    'qty', 1 + i % 9, 'price', (i % 10000) / 100.0, 'note', 'order line ' || i)"

# fill STREAM with $events events (ARCHIVE: the policy's archive flag)
fill() {
    sql -c "SELECT event_log.drop_stream('$1')" >/dev/null 2>&1 || true
    sql -c "SELECT event_log.create_stream('$1', 4)" >/dev/null
    sql -c "INSERT INTO $1 (key, type, payload)
            SELECT 'order-' || (i % 50000), 'OrderLine', $payload FROM generate_series(1, $events) i"
    sql -c "VACUUM ANALYZE $1" -c "CHECKPOINT"
    sql -c "SELECT event_log.set_retention('$1', max_events => $keep, keep_unconsumed => false,
                                            archive => $2)" >/dev/null
}

# milliseconds SQL takes
timed() { sql -c "\\timing on" -c "$1" | awk '/^Time:/ { print $2 }'; }

# --- removal, against a plain DELETE on the twin -------------------------
fill rs false
fresh_twin
sql -c "INSERT INTO bench_twin SELECT shard, seq, key, version, type, payload, metadata, event_id, recorded_at FROM rs"
sql -c "VACUUM ANALYZE bench_twin" -c "CHECKPOINT"
before=$(sql -c "SELECT pg_total_relation_size('rs')")

# the appender: single events to a fourth key range, for 2 s idle, then
# during the removal; pgbench's per-transaction log gives the slowest
cat >"$work/append.sql" <<'SQL'
INSERT INTO rs (key, type, payload) VALUES ('live-' || (random() * 1000)::int, 'Live', '{}');
SQL
slowest() { awk '{ if ($3 > m) m = $3 } END { printf "%.1f", m / 1000 }' "$work"/"$1".*; }
(cd "$work" && exec pgbench -n -f append.sql -c 1 -T 2 -l --log-prefix=idle >/dev/null 2>&1)
(cd "$work" && exec pgbench -n -f append.sql -c 1 -T 600 -l --log-prefix=busy >/dev/null 2>&1) &
bench_pid=$!
sleep 0.5
ms=$(timed "SELECT * FROM event_log.enforce_retention('rs')")
kill -TERM $bench_pid 2>/dev/null || true
wait $bench_pid 2>/dev/null || true
appended=$(sql -c "SELECT count(*) FROM rs WHERE key LIKE 'live-%'")
removed=$(sql -c "SELECT sum(removed_events) FROM event_log.shard_watermarks WHERE stream = 'rs'::regclass")
after=$(sql -c "SELECT pg_total_relation_size('rs')")
sql -c "VACUUM rs"
vacuumed=$(sql -c "SELECT pg_total_relation_size('rs')")
cut=$(sql -c "SELECT min(low_seq) - 1 FROM event_log.shard_watermarks WHERE stream = 'rs'::regclass")
plain_ms=$(timed "DELETE FROM bench_twin t USING event_log.shard_watermarks w
                  WHERE w.stream = 'rs'::regclass AND w.shard = t.shard AND t.seq < w.low_seq")
report "remove 90% (events/s)" "$(awk -v n="$removed" -v ms="$ms" 'BEGIN { print n / ms * 1000 }')" \
    "$(awk -v n="$removed" -v ms="$plain_ms" 'BEGIN { print n / ms * 1000 }')" "ev/s" 0.00 \
    "$removed of $events events in $ms ms; plain DELETE $plain_ms ms (cut about seq $cut)"
idle=$(slowest idle)
busy=$(slowest busy)
echo "appender's slowest append: ${busy} ms during the removal ($appended appends), ${idle} ms idle (target: under 100 ms)"
SUMMARY+=("| appender's slowest append during the removal | ${busy} ms | ${idle} ms idle | | < 100 ms | |")
echo "stream size: $((before / 1048576)) MB before, $((after / 1048576)) MB after the removal, $((vacuumed / 1048576)) MB after VACUUM"
SUMMARY+=("| stream size before / after removal / after VACUUM | $((before / 1048576)) / $((after / 1048576)) / $((vacuumed / 1048576)) MB | | | | |")

# --- the same removal with the archive -----------------------------------
fill ra true
hot=$(sql -c "SELECT pg_total_relation_size('ra')::float8 / count(*) FROM ra")
ams=$(timed "SELECT * FROM event_log.enforce_retention('ra')")
report "remove 90%, archived (events/s)" "$(awk -v n="$removed" -v ms="$ams" 'BEGIN { print n / ms * 1000 }')" \
    "$(awk -v n="$removed" -v ms="$ms" 'BEGIN { print n / ms * 1000 }')" "ev/s" 0.00 \
    "with archive $ams ms / without $ms ms"
archived=$(sql -c "SELECT pg_total_relation_size('event_log.archive')::float8 / sum(events) FROM event_log.archive")
report "bytes per event: hot / archived" "$hot" "$archived" "B" 3.00 \
    "$(printf '%.0f' "$hot") B in the stream, $(printf '%.0f' "$archived") B in the archive"
sql -c "SELECT count(*) FROM event_log.read_archive('ra', 0, 0, 100000)" >/dev/null

sql -d postgres -c "DROP DATABASE bench_retention"
print_summary "$BENCH_NAME ($events events)"
