#!/usr/bin/env bash
# 20_decode.sh: decoding throughput of the event_log output plugin against
# wal2json (format-version 2) and test_decoding, on the same WAL.
#
# Run by test/bench/run.sh (`make bench`), which exports PGHOST PGPORT PGUSER
# PGDATABASE and PATH for a throwaway cluster with wal_level = logical.
#
# Two workloads on a 4-shard stream, DECODE_EVENTS events each:
#   big    one transaction: a single INSERT ... SELECT of every event
#   small  one event per transaction: a PL/pgSQL procedure that INSERTs and
#          COMMITs in a loop
# Each repetition of a workload starts from an empty stream and creates six
# slots before it writes any WAL: one per plugin for each of two paths,
#   sql    SELECT count(*) FROM pg_logical_slot_get_changes(...), timed with
#          clock_timestamp() inside one psql session
#   recv   pg_recvlogical --start --endpos ... -f /dev/null, timed around the
#          command (a walsender decodes; the client throws the output away)
# so every slot decodes exactly the same WAL.  The workload is followed by a
# CHECKPOINT, which flushes it (it is written with synchronous_commit off, and
# decoding stops at the flush position) and keeps the checkpointer out of the
# timings; endpos is the WAL insert position after that.  Both paths decode up
# to endpos.  Plugins run in rotated order (one rotation per repetition), and
# the paths alternate which goes first.  The figure is the median over the
# repetitions, in events per second.
#
# Target: event_log / wal2json >= 1.00 (as fast per event), for each workload
# and path.  event_log / test_decoding is printed as context, as are the
# output bytes per event of each plugin (from a peek of the sql slot in the
# first repetition, before it is consumed) and the WAL bytes per event.
#
# Checks: the peek must find DECODE_EVENTS event rows for each plugin (one
# JSON object per event from event_log, an "action":"I" row from wal2json, a
# "table ...: INSERT:" row from test_decoding; wal2json and test_decoding add
# a begin and a commit row per transaction), every timed get_changes must
# return at least DECODE_EVENTS rows (a row count other than the peek's is
# printed as a note), and every pg_recvlogical must exit 0 (it does so only
# once it has received everything up to endpos) with its slot confirmed past
# the start of the workload.
#
# Environment:
#   DECODE_EVENTS  events per workload (default 200000)
#   DECODE_REPS    repetitions of each workload (default 3)
#
# Exits non-zero only if something fails to run (or a check fails).  A ratio
# below its target is printed with MISSED.
set -euo pipefail
shopt -s inherit_errexit

events=${DECODE_EVENTS:-200000}
reps=${DECODE_REPS:-3}
if ! [[ $events =~ ^[1-9][0-9]*$ && $reps =~ ^[1-9][0-9]*$ ]]; then
    echo "20_decode: DECODE_EVENTS and DECODE_REPS must be positive integers" >&2
    exit 2
fi
shards=4
target=1.00
recv_timeout=$((120 + events / 1000))   # seconds; only a hang gets near it

plugins=(event_log wal2json test_decoding)
declare -A SHORT=([event_log]=el [wal2json]=wj [test_decoding]=td)
# Options for pg_logical_slot_*_changes (SQL) and pg_recvlogical (-o).
declare -A SQL_OPTS=([event_log]="" [wal2json]=", 'format-version', '2'" [test_decoding]="")
declare -A RECV_OPTS=([event_log]="" [wal2json]="format-version=2" [test_decoding]="")
# The start of the row each plugin writes for one event.
declare -A EVENT_PREFIX=(
    [event_log]='{"stream":'
    [wal2json]='{"action":"I"'
    [test_decoding]='table public.bench_stream: INSERT:')
declare -A WORKLOAD_LABEL=(
    [big]="1 transaction of $events events"
    [small]="$events transactions of 1 event")

admin_db=${PGDATABASE:-postgres}
db=event_log_bench_decode

sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# Drop the slots of our database (none may be left in a database that is
# dropped), those that no process uses, and the database.
cleanup() {
    sql -d "$admin_db" -c "SELECT count(pg_drop_replication_slot(slot_name))
                           FROM pg_replication_slots
                           WHERE database = '$db' AND NOT active" >/dev/null 2>&1 || true
    sql -d "$admin_db" -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
}

sql -d "$admin_db" -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap cleanup EXIT
export PGDATABASE=$db
export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c synchronous_commit=off"

# The small workload's procedure, created before any slot so that its DDL is
# not part of the decoded WAL.  Both workloads write the same rows.
sql <<'SQL'
CREATE EXTENSION event_log;
CREATE PROCEDURE bench_small(n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        INSERT INTO bench_stream (key, type, payload)
        VALUES ('cart-' || (i % 20000), 'ItemAdded',
                jsonb_build_object('sku', 'sku-' || lpad((i % 1000)::text, 4, '0'),
                                   'qty', 1 + i % 5,
                                   'price', round(((i % 10000) + 99) / 100.0, 2)));
        COMMIT;
    END LOOP;
END $$;
SQL

# An empty stream.  Autovacuum is off for it so that no VACUUM or ANALYZE of
# the fresh rows competes with the decoders for the two CPUs.
fresh_stream() {
    sql -c "SELECT event_log.drop_stream(stream) FROM event_log.streams
            WHERE stream = to_regclass('bench_stream')" \
        -c "SELECT event_log.create_stream('bench_stream', $shards)" \
        -c "ALTER TABLE bench_stream SET (autovacuum_enabled = off)" >/dev/null
}

slot_name() { echo "bench_${1}_${SHORT[$2]}"; }    # PATH PLUGIN

create_slots() {
    local path plugin
    for path in sql recv; do
        for plugin in "${plugins[@]}"; do
            sql -c "SELECT 1 FROM pg_create_logical_replication_slot(
                        '$(slot_name "$path" "$plugin")', '$plugin')" >/dev/null
        done
    done
}

drop_slots() {
    sql -c "SELECT count(pg_drop_replication_slot(slot_name))
            FROM pg_replication_slots
            WHERE database = current_database() AND slot_name LIKE 'bench\_%'" >/dev/null
}

# generate WORKLOAD: writes the events; sets lsn0 (the WAL insert position
# before them), gen_secs, wal_bytes and endpos.
generate() {
    local workload=$1 out rows stmt
    if [[ $workload == big ]]; then
        stmt="INSERT INTO bench_stream (key, type, payload)
              SELECT 'cart-' || (i % 20000), 'ItemAdded',
                     jsonb_build_object('sku', 'sku-' || lpad((i % 1000)::text, 4, '0'),
                                        'qty', 1 + i % 5,
                                        'price', round(((i % 10000) + 99) / 100.0, 2))
              FROM generate_series(1, $events) i"
    else
        stmt="CALL bench_small($events)"
    fi
    out=$(sql -F ' ' <<SQL
SELECT pg_current_wal_insert_lsn() AS lsn0, clock_timestamp() AS t0 \gset
$stmt;
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs,
       pg_current_wal_insert_lsn() - :'lsn0'::pg_lsn AS wal \gset
CHECKPOINT;
SELECT :'lsn0', :secs, :wal, pg_current_wal_insert_lsn();
SQL
)
    read -r lsn0 gen_secs wal_bytes endpos <<<"$out"
    # CHECKPOINT flushed everything up to its own record; wait for the rest.
    sql -c "DO \$\$ BEGIN
                WHILE pg_current_wal_flush_lsn() < '$endpos' LOOP
                    PERFORM pg_sleep(0.01);
                END LOOP;
            END \$\$"
    rows=$(sql -c "SELECT count(*) FROM bench_stream")
    if [[ $rows != "$events" ]]; then
        echo "20_decode: $workload workload left $rows rows, expected $events" >&2
        return 1
    fi
}

declare -A TIMES=() ROWS=() BYTES=()

# peek WORKLOAD PLUGIN: counts the rows and output bytes of the sql slot,
# without consuming it; checks the event rows.
peek() {
    local workload=$1 plugin=$2 slot out total evrows bytes
    slot=$(slot_name sql "$plugin")
    out=$(sql -F ' ' -c "SELECT count(*),
               count(*) FILTER (WHERE starts_with(data, '${EVENT_PREFIX[$plugin]}')),
               coalesce(sum(octet_length(data)), 0)
        FROM pg_logical_slot_peek_changes('$slot', '$endpos', NULL${SQL_OPTS[$plugin]})")
    read -r total evrows bytes <<<"$out"
    if [[ $evrows != "$events" ]]; then
        echo "20_decode: $workload: $plugin wrote $evrows event rows, expected $events" >&2
        return 1
    fi
    ROWS[$workload,$plugin]=$total
    BYTES[$workload,$plugin]=$bytes
}

# decode_sql WORKLOAD PLUGIN: consumes the sql slot; appends the seconds.
decode_sql() {
    local workload=$1 plugin=$2 slot out n secs
    slot=$(slot_name sql "$plugin")
    out=$(sql -F ' ' <<SQL
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) AS n FROM pg_logical_slot_get_changes('$slot', '$endpos', NULL${SQL_OPTS[$plugin]}) \gset
SELECT :n, extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
)
    read -r n secs <<<"$out"
    if ((n < events)); then
        echo "20_decode: $workload: get_changes on $plugin returned $n rows," \
            "fewer than the $events events" >&2
        return 1
    fi
    # Only a transaction of someone else's (autovacuum's, say) can add rows.
    [[ $n == "${ROWS[$workload,$plugin]}" ]] ||
        echo "  note: get_changes on $plugin returned $n rows, the peek ${ROWS[$workload,$plugin]}"
    TIMES[$workload,sql,$plugin]+="$secs "
}

# decode_recv WORKLOAD PLUGIN: streams the recv slot to /dev/null up to
# endpos with pg_recvlogical; appends the seconds.
decode_recv() {
    local workload=$1 plugin=$2 slot t0 t1 opts=() ok
    slot=$(slot_name recv "$plugin")
    [[ -z ${RECV_OPTS[$plugin]} ]] || opts=(-o "${RECV_OPTS[$plugin]}")
    t0=$(date +%s.%N)
    if ! timeout "$recv_timeout" pg_recvlogical -d "$db" -S "$slot" --start \
            --no-loop --endpos "$endpos" -f /dev/null "${opts[@]}"; then
        echo "20_decode: $workload: pg_recvlogical on $plugin failed" >&2
        return 1
    fi
    t1=$(date +%s.%N)
    # pg_recvlogical exits 0 only once it has everything up to endpos: on a
    # keepalive past endpos (the slot is then confirmed up to endpos) or on a
    # message past it, say from an autovacuum transaction on a catalog (the
    # slot is then confirmed up to the last message it kept).  Either way the
    # slot has moved past the start of the workload.
    ok=$(sql -c "SELECT confirmed_flush_lsn > '$lsn0' FROM pg_replication_slots
                 WHERE slot_name = '$slot'")
    if [[ $ok != t ]]; then
        echo "20_decode: $workload: pg_recvlogical on $plugin did not consume the workload" >&2
        return 1
    fi
    TIMES[$workload,recv,$plugin]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }') "
}

# median of the numbers in $1
median() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# the numbers in $1 with 2 decimals, separated by slashes
secs_list() { awk -v l="$1" 'BEGIN { n = split(l, a, " "); for (i = 1; i <= n; i++) printf "%s%.2f", (i > 1 ? "/" : ""), a[i] }'; }

# run_workload WORKLOAD: every repetition, then the result lines.
declare -A GEN=() WAL=()
run_workload() {
    local workload=$1 r i plugin path order paths
    for ((r = 1; r <= reps; r++)); do
        fresh_stream
        drop_slots
        create_slots
        generate "$workload"
        GEN[$workload]+="$gen_secs "
        WAL[$workload]+="$wal_bytes "
        order=()
        for ((i = 0; i < ${#plugins[@]}; i++)); do
            order+=("${plugins[(i + r - 1) % ${#plugins[@]}]}")
        done
        if ((r == 1)); then
            for plugin in "${order[@]}"; do peek "$workload" "$plugin"; done
        fi
        if ((r % 2)); then paths=(sql recv); else paths=(recv sql); fi
        for path in "${paths[@]}"; do
            for plugin in "${order[@]}"; do
                "decode_$path" "$workload" "$plugin"
            done
        done
        drop_slots
    done
    report_workload "$workload"
}

SUMMARY=()
missed=0
# report_workload WORKLOAD: one line per path, with the seconds of every run.
report_workload() {
    local workload=$1 path plugin el wj td r_wj r_td mark gen wal label
    declare -A RATE=()
    gen=$(median "${GEN[$workload]}")
    wal=$(median "${WAL[$workload]}")
    label=${WORKLOAD_LABEL[$workload]}
    printf '%s: written at %.0f ev/s, %.0f WAL bytes/event\n' "$label" \
        "$(awk -v n="$events" -v t="$gen" 'BEGIN { print n / t }')" \
        "$(awk -v n="$events" -v w="$wal" 'BEGIN { print w / n }')"
    for path in sql recv; do
        for plugin in "${plugins[@]}"; do
            RATE[$plugin]=$(awk -v n="$events" -v t="$(median "${TIMES[$workload,$path,$plugin]}")" \
                'BEGIN { printf "%.1f", n / t }')
        done
        el=${RATE[event_log]} wj=${RATE[wal2json]} td=${RATE[test_decoding]}
        r_wj=$(awk -v a="$el" -v b="$wj" 'BEGIN { printf "%.2f", a / b }')
        r_td=$(awk -v a="$el" -v b="$td" 'BEGIN { printf "%.2f", a / b }')
        mark=""
        if awk -v r="$r_wj" -v t="$target" 'BEGIN { exit !(r < t) }'; then
            mark="  MISSED"
            missed=$((missed + 1))
        fi
        printf '  %-5s event_log %8.0f ev/s  wal2json %8.0f ev/s  test_decoding %8.0f ev/s  el/wj %.2f (target %.2f)  el/td %.2f%s\n' \
            "$path" "$el" "$wj" "$td" "$r_wj" "$target" "$r_td" "$mark"
        printf '  %-5s   seconds: event_log %s, wal2json %s, test_decoding %s\n' "" \
            "$(secs_list "${TIMES[$workload,$path,event_log]}")" \
            "$(secs_list "${TIMES[$workload,$path,wal2json]}")" \
            "$(secs_list "${TIMES[$workload,$path,test_decoding]}")"
        SUMMARY+=("$(printf '| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %s |' \
            "$label" "$path" "$el" "$wj" "$td" "$r_wj" "$r_td" "$target" "${mark:+MISSED}")")
    done
    for plugin in "${plugins[@]}"; do
        printf '  %-13s %6.1f output bytes/event, %.2f rows/event\n' "$plugin" \
            "$(awk -v b="${BYTES[$workload,$plugin]}" -v n="$events" 'BEGIN { print b / n }')" \
            "$(awk -v r="${ROWS[$workload,$plugin]}" -v n="$events" 'BEGIN { print r / n }')"
    done
}

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, $events events per workload, $reps repetition(s)," \
    "$shards shards, logical_decoding_work_mem $(sql -c 'SHOW logical_decoding_work_mem')"

run_workload big
run_workload small

echo
echo "summary: PostgreSQL $server, $(nproc) CPUs, DECODE_EVENTS=$events, DECODE_REPS=$reps" \
    "(median, events/s)"
echo "| workload | path | event_log | wal2json | test_decoding | el/wj | el/td | target (el/wj) | |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${SUMMARY[@]}"
echo
echo "| output bytes/event (rows/event) | event_log | wal2json | test_decoding |"
echo "|---|---|---|---|"
for workload in big small; do
    line="| ${WORKLOAD_LABEL[$workload]} |"
    for plugin in "${plugins[@]}"; do
        line+=$(awk -v b="${BYTES[$workload,$plugin]}" -v r="${ROWS[$workload,$plugin]}" -v n="$events" \
            'BEGIN { printf " %.0f (%.0f) |", b / n, r / n }')
    done
    echo "$line"
done
((missed == 0)) || echo "$missed ratio(s) below target"
