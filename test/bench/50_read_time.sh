#!/usr/bin/env bash
# 50_read_time.sh: reads by time on a large stream, and what the BRIN index
# on recorded_at that serves them costs appends (docs/performance.md).
#
# Run by test/bench/run.sh (`make bench`), which exports PGHOST PGPORT PGUSER
# PGDATABASE and PATH for a throwaway cluster.  Two measurements:
#   1. event_log.read_by_time() of a one-second range (1,000 events) at a
#      random point of a BENCH_TIME_EVENTS-event stream (default 10 million,
#      4 shards, one event per millisecond with up to 50 ms of disorder
#      between shards and within them), against its plain twin, read() of
#      1,000 events of one shard at a random offset (the primary key's index
#      scan): reads per second, 1 client, BENCH_SECONDS per path in two
#      rounds.  Also prints the mean latency.                 target >= 0.25
#   2. 1 client, one INSERT per transaction, into a stream with its BRIN
#      index against the same stream with the index dropped.  target >= 0.95
#
# The big stream is loaded the way a logical replication subscriber loads
# one (session_replication_role = replica, every column supplied), which
# lets the benchmark give each event its own recorded_at; then the BRIN
# ranges are summarized, as autosummarize has autovacuum do.
#
# Environment: BENCH_SECONDS (default 15), BENCH_TIME_EVENTS (default
# 10000000).  Exits non-zero only if something fails to run.
set -euo pipefail
shopt -s inherit_errexit

secs=${BENCH_SECONDS:-15}
events=${BENCH_TIME_EVENTS:-10000000}
if ! [[ $secs =~ ^[1-9][0-9]*$ && $events =~ ^[1-9][0-9]*$ ]] || ((events < 100000)); then
    echo "50_read_time: BENCH_SECONDS must be a positive integer, BENCH_TIME_EVENTS at least 100000" >&2
    exit 2
fi
round_secs=$(((secs + 1) / 2))
shards=4
keys=100000
chunk=1000000

admin_db=${PGDATABASE:-postgres}
db=event_log_bench_time
work=$(mktemp -d /tmp/event_log_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

fresh_db "$db"

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, ${secs}s per path (2 rounds of ${round_secs}s)," \
    "$events events"

# Key n (0 .. keys-1) is in shard s and is the j-th key of s (by n), of c
# keys in s.  Event i (0 ..) is for key i % keys, in round r = i / keys, so
# its seq in s is r * c + j + 1 and its version r + 1: seq follows i.
started=$(date +%s)
sql <<SQL
CREATE EXTENSION event_log;
SELECT event_log.create_stream('bench_time', $shards);
CREATE TABLE bench_time_keys AS
SELECT n, 'cart-' || n AS key, s AS shard,
       row_number() OVER (PARTITION BY s ORDER BY n) - 1 AS j,
       count(*) OVER (PARTITION BY s) AS c
FROM (SELECT n, event_log.shard_for('cart-' || n, $shards) AS s
      FROM generate_series(0, $keys - 1) n) k;
CREATE UNIQUE INDEX ON bench_time_keys (n);
ANALYZE bench_time_keys;
SQL
for ((from = 0; from < events; from += chunk)); do
    to=$((from + chunk < events ? from + chunk : events))
    sql <<SQL
SET session_replication_role = replica;
INSERT INTO bench_time
SELECT k.shard, (i / $keys) * k.c + k.j + 1, k.key, i / $keys + 1, 'ItemAdded',
       jsonb_build_object('sku', 'sku-' || (i % 1000), 'qty', i % 5 + 1), NULL,
       gen_random_uuid(),
       timestamptz '2026-01-01 00:00:00+00' + (i - floor(random() * 50)) * interval '1 ms'
FROM generate_series($from, $to - 1) i
JOIN bench_time_keys k ON k.n = i % $keys
ORDER BY i;
SQL
done
sql -c "SELECT brin_summarize_new_values('bench_time_recorded_at_idx')" >/dev/null
sql -c "VACUUM ANALYZE bench_time"
echo "loaded $events events in $(($(date +%s) - started)) s;" \
    "table $(sql -c "SELECT pg_size_pretty(pg_table_size('bench_time'))")," \
    "BRIN index $(sql -c "SELECT pg_size_pretty(pg_relation_size('bench_time_recorded_at_idx'))")"

# The reads return what they should: 1,000 events (+- the disorder at the
# edges) in order, and a page resumes where the last one stopped.
check=$(sql <<'SQL'
WITH r AS (SELECT * FROM event_log.read_by_time('bench_time',
               timestamptz '2026-01-01 00:00:10+00', timestamptz '2026-01-01 00:00:11+00'))
SELECT count(*) BETWEEN 900 AND 1100
       AND bool_and(recorded_at >= timestamptz '2026-01-01 00:00:10+00'
                    AND recorded_at < timestamptz '2026-01-01 00:00:11+00')
FROM r;
SQL
)
if [[ $check != t ]]; then
    echo "50_read_time: read_by_time() of one second did not return about 1,000 events" >&2
    exit 1
fi

range_ms=$((events - 2000))
cat >"$work/time.sql" <<EOF
\\set t random(0, $range_ms)
SELECT count(*) FROM event_log.read_by_time('bench_time',
    timestamptz '2026-01-01 00:00:00+00' + :t * interval '1 ms',
    timestamptz '2026-01-01 00:00:00+00' + (:t + 1000) * interval '1 ms');
EOF
per_shard=$((events / shards - 2000))
cat >"$work/offset.sql" <<EOF
\\set s random(0, $((shards - 1)))
\\set a random(0, $per_shard)
SELECT count(*) FROM event_log.read('bench_time', :s, :a, 1000);
EOF

declare -A ROUNDS=()
measure() { pgbench_tps "$2" "$round_secs"; ROUNDS[$1]+="$tps "; }

measure time "$work/time.sql"
measure offset "$work/offset.sql"
measure offset "$work/offset.sql"
measure time "$work/time.sql"
t=$(mean "${ROUNDS[time]}")
o=$(mean "${ROUNDS[offset]}")
report "read_by_time() 1,000 of $events" "$t" "$o" reads/s 0.25 \
    "mean latency: by time $(awk -v t="$t" 'BEGIN { printf "%.2f", 1000 / t }') ms, by offset $(awk -v t="$o" 'BEGIN { printf "%.2f", 1000 / t }') ms; rounds (reads/s): time $(ints "${ROUNDS[time]}"), offset $(ints "${ROUNDS[offset]}")"

# 2. What the BRIN index costs an append.
cat >"$work/append.sql" <<EOF
\\set k random(1, 10000)
INSERT INTO bench_small (key, type, payload)
VALUES ('cart-' || :k, 'ItemAdded', jsonb_build_object('sku', 'sku-' || :k, 'qty', 1));
EOF
# fresh_small WITH_BRIN: an empty stream, with or without its BRIN index.
fresh_small() {
    sql -c "SELECT event_log.drop_stream(stream) FROM event_log.streams
            WHERE stream = to_regclass('bench_small')" \
        -c "SELECT event_log.create_stream('bench_small', 1)" >/dev/null
    if [[ $1 == no ]]; then
        sql -c "DROP INDEX bench_small_recorded_at_idx"
    fi
    sql -c CHECKPOINT
}
ROUNDS=()
for with in yes no no yes; do
    fresh_small "$with"
    pgbench_tps "$work/append.sql" "$round_secs" "-c synchronous_commit=off"
    ROUNDS[$with]+="$tps "
done
report "INSERT with BRIN on recorded_at" "$(mean "${ROUNDS[yes]}")" "$(mean "${ROUNDS[no]}")" tps 0.95 \
    "rounds (tps): with $(ints "${ROUNDS[yes]}"), without $(ints "${ROUNDS[no]}"); synchronous_commit=off"

print_summary "PostgreSQL $server, $(nproc) CPUs, BENCH_SECONDS=$secs, BENCH_TIME_EVENTS=$events"

sql -d "$admin_db" -c "DROP DATABASE $db"
