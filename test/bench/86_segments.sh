#!/usr/bin/env bash
# 86_segments.sh: segmented streams (docs/retention.md, "Segmented
# streams"), issue 15's space figures.
#
#  - summaries: the enforcement that summarizes the nine sealed segments
#    (per shard: first and last seq, count, latest recorded_at), which the
#    worker runs once per segment after its roll;
#  - removal: enforce_retention() removing 90% of a segmented stream of
#    BENCH_EVENTS events (4 shards, 10 segments, no archive), against
#    DROP TABLE of ten plain tables holding the same rows (the physical
#    limit of giving space back by dropping files), in ms;
#  - the disk: the stream's segments before, and after the two enforcements
#    a removal takes (the first detaches the segments, the second drops
#    them, holding no lock on the stream), no VACUUM;
#  - an appender (1 client, single events) during the removal: its slowest
#    append under way at some time between the start of the first
#    enforcement and the end of the second (and in the second after),
#    against its slowest while DROP TABLE of the twins frees the same space
#    and its slowest when alone for as long (target: under 100 ms);
#  - single-event appends to the 10-segment stream against the same
#    appends to a plain stream of the same size: what segments cost an
#    append (every new key's version is probed in each segment).
#
# Environment: BENCH_EVENTS (default 1000000), BENCH_SECONDS (default 5).
# Exits non-zero only if something fails.
set -euo pipefail
shopt -s inherit_errexit
BENCH_NAME=86_segments
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

events=${BENCH_EVENTS:-1000000}
seconds=${BENCH_SECONDS:-5}
per_segment=$((events / 10))
keep=$((per_segment / 4))            # per shard: the newest segment stays
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fresh_db bench_segments
sql -c "CREATE EXTENSION event_log"
payload="jsonb_build_object('customer', 'customer-' || (i % 5000), 'sku', 'SKU-' || (i % 997),
    'qty', 1 + i % 9, 'price', (i % 10000) / 100.0, 'note', 'order line ' || i)"
# bytes of a stream: every segment (a partitioned table has none itself)
size() {
    sql -c "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
             WHERE inhparent = '$1'::regclass"
}
timed() { sql -c "\\timing on" -c "$1" | awk '/^Time:/ { print $2 }'; }

# --- ten segments, and their plain twins ---------------------------------
sql -c "SELECT event_log.create_stream('seg', 4, segment_events => $per_segment)" >/dev/null
sql -c "SELECT event_log.create_stream('flat', 4)" >/dev/null
for s in $(seq 1 10); do
    from=$(((s - 1) * per_segment + 1))
    to=$((s * per_segment))
    sql -c "INSERT INTO seg (key, type, payload)
            SELECT 'order-' || (i % 50000), 'OrderLine', $payload FROM generate_series($from, $to) i"
    sql -c "INSERT INTO flat (key, type, payload)
            SELECT 'order-' || (i % 50000), 'OrderLine', $payload FROM generate_series($from, $to) i"
    # a twin of the segment: the same rows, the same indexes
    sql -c "CREATE TABLE twin_$s (LIKE seg INCLUDING ALL)" \
        -c "INSERT INTO twin_$s SELECT * FROM seg WHERE segment = $s" \
        -c "ALTER TABLE twin_$s ADD PRIMARY KEY (shard, seq), ADD UNIQUE (key, version), ADD UNIQUE (event_id)"
    ((s == 10)) || sql -c "SELECT event_log.roll_segment('seg')" >/dev/null
done
sql -c "VACUUM ANALYZE" -c "CHECKPOINT"
# The summaries of the nine sealed segments: an enforcement without a
# policy writes them (the worker's does, soon after each roll), one
# sequential read of each segment, once in its life.
summary_ms=$(timed "SELECT * FROM event_log.enforce_retention('seg')")
summaries=$(sql -c "SELECT count(DISTINCT segment) FROM event_log.segment_summaries WHERE stream = 'seg'::regclass")
# its limit: the same figures computed by SQL from the nine twins
twin_sql=$(for s in $(seq 1 9); do
    printf '%sSELECT shard, count(*), min(seq), max(seq), max(recorded_at) FROM twin_%s GROUP BY shard' \
        "$( ((s > 1)) && echo ' UNION ALL ')" "$s"
done)
twin_summary_ms=$(timed "SELECT count(*) FROM ($twin_sql) t")
printf '%-32s %s ms for %s segments (once per segment, after its roll); the same by SQL on the twins %s ms\n' \
    "segment summaries" "$summary_ms" "$summaries" "$twin_summary_ms"
SUMMARY+=("| summaries of $summaries sealed segments (once each, after its roll) | $summary_ms ms | $twin_summary_ms ms (the same by SQL on the twins) | | | |")
sql -c "SELECT event_log.set_retention('seg', max_events => $keep, keep_unconsumed => false)" >/dev/null

# --- appends: 10 segments against a plain stream of the same size --------
cat >"$work/seg.sql" <<'SQL'
INSERT INTO seg (key, type, payload) VALUES ('order-' || (random() * 100000)::int, 'Live', '{}');
SQL
sed 's/INTO seg/INTO flat/' "$work/seg.sql" >"$work/flat.sql"
pgbench_tps "$work/seg.sql" "$seconds"
seg_tps=$tps
pgbench_tps "$work/flat.sql" "$seconds"
flat_tps=$tps
report "single appends, 10 segments" "$seg_tps" "$flat_tps" "tps" 0.00 \
    "against a plain stream of the same size (keys: half of them new)"

# --- removing the nine oldest segments while an appender runs -----------
before=$(size seg)
# bytes on disk of the stream's segments, attached or detached (pending drop)
disk() {
    sql -c "SELECT coalesce(sum(pg_total_relation_size(segment_table)), 0) FROM event_log.segments
             WHERE stream = 'seg'::regclass"
}
disk_before=$(disk)
cat >"$work/append.sql" <<'SQL'
INSERT INTO seg (key, type, payload) VALUES ('live-' || (random() * 1000)::int, 'Live', '{}');
SQL
now_us() { date +%s%6N; }
# slowest PREFIX [FROM TO]: the slowest append (ms) of pgbench's log PREFIX.*,
# only those under way at some time in FROM..TO (epoch microseconds) if given.
slowest() {
    awk -v a="${2:-0}" -v b="${3:-99999999999999999}" \
        '{ end = $5 * 1000000 + $6; start = end - $3
           if (end >= a && start <= b && $3 > m) m = $3 } END { printf "%.1f", m / 1000 }' "$work"/"$1".*
}
# appender PREFIX SECONDS: replaces the (sub)shell it runs in with pgbench
appender() { cd "$work" && exec pgbench -n -f append.sql -c 1 -T "$2" -l --log-prefix="$1" >/dev/null 2>&1; }

appender busy 600 &
bench_pid=$!
sleep 0.5
t0=$(now_us)
ms=$(timed "SELECT * FROM event_log.enforce_retention('seg')")
after_detach=$(size seg)
drop_segments_ms=$(timed "SELECT * FROM event_log.enforce_retention('seg')")
t1=$(now_us)
sleep 1
kill -TERM $bench_pid 2>/dev/null || true
wait $bench_pid 2>/dev/null || true
disk_after=$(disk)
removed=$(sql -c "SELECT sum(removed_events) FROM event_log.shard_watermarks WHERE stream = 'seg'::regclass")
left=$(sql -c "SELECT string_agg(segment::text, ',') FROM event_log.segments WHERE stream = 'seg'::regclass")

# The limit: the same appender while DROP TABLE frees the same space.
appender twins 600 &
bench_pid=$!
sleep 0.5
t2=$(now_us)
drop_ms=$(timed "BEGIN; DROP TABLE twin_1, twin_2, twin_3, twin_4, twin_5, twin_6, twin_7, twin_8, twin_9; COMMIT")
t3=$(now_us)
sleep 1
kill -TERM $bench_pid 2>/dev/null || true
wait $bench_pid 2>/dev/null || true
# And alone, as long as the removal took (at least 2 s): this machine's own outliers.
(appender idle $(((t1 - t0) / 1000000 + 2)))

printf '%-32s %s ms + %s ms (%s of %s events; segments left: %s); DROP TABLE of the nine twins %s ms\n' \
    "remove 90% (detach + drop)" "$ms" "$drop_segments_ms" "$removed" "$events" "$left" "$drop_ms"
SUMMARY+=("| remove 90% ($removed events): detach + drop | $ms + $drop_segments_ms ms | $drop_ms ms (DROP TABLE of the nine twins) | | seconds | |")
echo "stream size: $((before / 1048576)) MB before, $((after_detach / 1048576)) MB after the detach, disk: $((disk_before / 1048576)) MB before, $((disk_after / 1048576)) MB after the drop"
SUMMARY+=("| disk (stream and detached segments) before / after | $((disk_before / 1048576)) / $((disk_after / 1048576)) MB | | | | |")
busy=$(slowest busy "$t0" "$t1")
after=$(slowest busy "$t1" $((t1 + 1000000)))
twins=$(slowest twins "$t2" "$t3")
idle=$(slowest idle)
echo "appender's slowest append: ${busy} ms during the removal (${after} ms in the second after it), ${twins} ms during DROP TABLE of the twins, ${idle} ms idle for as long (target: under 100 ms)"
SUMMARY+=("| appender's slowest append during the removal | ${busy} ms (${after} ms in the second after) | ${twins} ms during DROP TABLE of the twins; ${idle} ms idle as long | | < 100 ms | |")

sql -d postgres -c "DROP DATABASE bench_segments"
print_summary "$BENCH_NAME ($events events)"
