#!/usr/bin/env bash
# 45_dead_letters.sh: what parking costs a build, as a ratio.
#
# Run by test/bench/run.sh (`make bench`).  A stream of BENCH_DL_EVENTS
# events (10 per key, 4 shards), 1% of them poison (an amount that is not a
# number).  rebuild_projection() of an async projection whose handler fails
# on them, under on_build_error => 'park', against the rebuild of the same
# projection with a handler that takes them (a clean build of the same
# stream), in events/s.  Median of 3 runs each, alternating.  Two handler
# forms: one that builds set-based when clean, and one that runs event by
# event either way (it uses the whole event e).
#                                     target >= 0.83 (parking <= 1.2x clean)
#
# Environment: BENCH_DL_EVENTS (default 100000, a multiple of 10).  Exits
# non-zero only if something fails to run.
set -euo pipefail
shopt -s inherit_errexit

events=${BENCH_DL_EVENTS:-100000}
if ! [[ $events =~ ^[1-9][0-9]*0$ ]]; then
    echo "45_dead_letters: BENCH_DL_EVENTS must be a positive multiple of 10" >&2
    exit 2
fi
keys=$((events / 10))

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"
admin_db=${PGDATABASE:-postgres}
db=event_log_bench_dead_letters
fresh_db "$db"
export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c synchronous_commit=off -c client_min_messages=error"

# handler NAME AMOUNT: a per-key total.  Set-based when clean, unless the
# amount uses the whole event e.
handler() {
    echo "jsonb_build_object('Op', \$h\$
        INSERT INTO $1 AS t VALUES (e.key, $2)
        ON CONFLICT (key) DO UPDATE SET total = t.total + excluded.total \$h\$)"
}
strict="(e.payload->>'n')::int"
lenient="CASE WHEN e.payload->>'n' ~ '^[0-9]+\$' THEN (e.payload->>'n')::int ELSE 0 END"
strict_each="CASE WHEN e IS NULL THEN 0 ELSE $strict END"
lenient_each="CASE WHEN e IS NULL THEN 0 ELSE $lenient END"

sql >/dev/null <<SQL
CREATE EXTENSION event_log;
SELECT event_log.create_stream('acc', 4);
SELECT setseed(0.16);
INSERT INTO acc (key, type, payload)
SELECT 'k' || (i % $keys), 'Op',
       jsonb_build_object('n', CASE WHEN random() < 0.01 THEN 'p' ELSE (i % 50)::text END)
  FROM generate_series(1, $events) i;
VACUUM ANALYZE acc;
SELECT event_log.create_projection('clean_set', 'acc', columns => 'key text PRIMARY KEY, total bigint NOT NULL',
    handlers => $(handler clean_set "$lenient"), mode => 'async');
SELECT event_log.create_projection('park_set', 'acc', columns => 'key text PRIMARY KEY, total bigint NOT NULL',
    handlers => $(handler park_set "$strict"), mode => 'async',
    on_error => 'park', on_build_error => 'park');
SELECT event_log.create_projection('clean_each', 'acc', columns => 'key text PRIMARY KEY, total bigint NOT NULL',
    handlers => $(handler clean_each "$lenient_each"), mode => 'async');
SELECT event_log.create_projection('park_each', 'acc', columns => 'key text PRIMARY KEY, total bigint NOT NULL',
    handlers => $(handler park_each "$strict_each"), mode => 'async',
    on_error => 'park', on_build_error => 'park');
SQL

rebuild_once() {
    sql <<SQL
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
SELECT event_log.rebuild_projection('$1') AS n \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) || ' ' || :n;
SQL
}

for form in set each; do
    clean_times="" park_times=""
    for _ in 1 2 3; do
        read -r t n <<<"$(rebuild_once "clean_$form")"
        clean_times+="$t "
        read -r t n <<<"$(rebuild_once "park_$form")"
        park_times+="$t "
        if [[ $n != "$events" ]]; then
            echo "45_dead_letters: rebuild replayed $n events, expected $events" >&2
            exit 1
        fi
    done
    detail=$(sql -c "SELECT (SELECT count(*) FROM event_log.dead_letters WHERE projection = 'park_$form'::regclass)
        || ' parked (' || (SELECT count(*) FROM event_log.dead_letters WHERE projection = 'park_$form'::regclass AND error IS NOT NULL)
        || ' keys); clean build: ' || (SELECT build_method FROM event_log.projections WHERE projection = 'clean_$form'::regclass)
        || '; parking build: ' || (SELECT build_method FROM event_log.projections WHERE projection = 'park_$form'::regclass)")
    report "build, 1% poison, $form" \
        "$(awk -v e="$events" -v t="$(median3 "$park_times")" 'BEGIN { printf "%.1f", e / t }')" \
        "$(awk -v e="$events" -v t="$(median3 "$clean_times")" 'BEGIN { printf "%.1f", e / t }')" \
        ev/s 0.83 "$detail; seconds: park ${park_times% }, clean ${clean_times% }"
done

server=$(sql -c "SHOW server_version")
print_summary "PostgreSQL $server, $(nproc) CPUs, BENCH_DL_EVENTS=$events"
sql -d "$admin_db" -c "DROP DATABASE $db"
