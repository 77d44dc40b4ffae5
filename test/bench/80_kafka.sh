#!/usr/bin/env bash
# 80_kafka.sh: throughput of the Kafka bridge (event_log_kafka) into a mock
# Kafka cluster against pg_recvlogical into a file, on the same slot
# contents, as a ratio.
#
# Run by test/bench/run.sh (`make bench`), which exports PGHOST PGPORT PGUSER
# PGDATABASE and PATH (PostgreSQL's bindir first, where `make install` put
# the bridge) for a throwaway cluster with wal_level = logical.
#
# An 8-shard stream receives KAFKA_EVENTS events (default 60000) in
# transactions of 10, after two slots were created: so both slots decode
# exactly the same WAL.  Then, timed around each command:
#   recv    pg_recvlogical --start --endpos E -f FILE -o include-transaction=on
#           (the bridge's plugin options), writing every line to a file
#   bridge  event_log_kafka --endpos E into librdkafka's mock cluster
#           (test/kafka/el_kafka_mock, one broker, an 8-partition topic), in
#           its default at-least-once mode: it exits once Kafka has
#           acknowledged every event and the slot is confirmed up to E
# Each repetition (KAFKA_REPS, default 3) starts from an empty stream and
# new slots; the two alternate which goes first.  The figure is the median
# time of each, in events per second; target bridge/recv >= 0.80.
#
# Checks: both exit 0, the file holds KAFKA_EVENTS event lines, the topic
# KAFKA_EVENTS messages (read back from the mock), once per repetition.
# The mock keeps only about 10,000 messages per partition (older ones are
# dropped), so KAFKA_EVENTS stays below 80,000 for that check to hold.
# Exits non-zero only if something fails to run or a check fails; a ratio
# below target is printed with MISSED.
set -euo pipefail
shopt -s inherit_errexit

events=${KAFKA_EVENTS:-60000}
reps=${KAFKA_REPS:-3}
if ! [[ $events =~ ^[1-9][0-9]*$ && $reps =~ ^[1-9][0-9]*$ ]]; then
    echo "80_kafka: KAFKA_EVENTS and KAFKA_REPS must be positive integers" >&2
    exit 2
fi
target=0.80
BENCH_NAME=80_kafka
source "$EVENT_LOG_ROOT/test/bench/common.bash"

command -v event_log_kafka >/dev/null || {
    echo "80_kafka: event_log_kafka not on PATH (make install)" >&2
    exit 1
}
mock_bin=$EVENT_LOG_ROOT/test/kafka/el_kafka_mock
make -s --no-print-directory -C "$EVENT_LOG_ROOT" test/kafka/el_kafka_mock >/dev/null

admin_db=${PGDATABASE:-postgres}
db=event_log_bench_kafka
work=$(mktemp -d)
cleanup() {
    [[ -z ${MOCK_PID:-} ]] || kill "$MOCK_PID" 2>/dev/null || true
    sql -d "$admin_db" -c "SELECT count(pg_drop_replication_slot(slot_name))
                           FROM pg_replication_slots
                           WHERE database = '$db' AND NOT active" >/dev/null 2>&1 || true
    sql -d "$admin_db" -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fresh_db "$db"
export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c synchronous_commit=off"

sql <<'SQL'
CREATE EXTENSION event_log;
CREATE PROCEDURE bench_fill(n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        INSERT INTO bench_stream (key, type, payload)
        VALUES ('cart-' || (i % 20000), 'ItemAdded',
                jsonb_build_object('sku', 'sku-' || lpad((i % 1000)::text, 4, '0'),
                                   'qty', 1 + i % 5));
        IF i % 10 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;
SQL

# The mock cluster, fed commands through a coprocess.
coproc MOCK { exec "$mock_bin" 1; }
read -r line <&"${MOCK[0]}"
bootstrap=${line#bootstrap=}
mock_cmd() {
    local answer
    echo "$1" >&"${MOCK[1]}"
    read -r answer <&"${MOCK[0]}"
    [[ $answer == ok* ]] || { echo "80_kafka: mock: $1: $answer" >&2; return 1; }
    echo "$answer"
}

declare -a T_RECV=() T_BRIDGE=()
for ((r = 1; r <= reps; r++)); do
    topic="bench$r.bench_stream"
    mock_cmd "topic $topic 8" >/dev/null
    sql -c "SELECT event_log.drop_stream(stream) FROM event_log.streams
            WHERE stream = to_regclass('bench_stream')" \
        -c "SELECT event_log.create_stream('public.bench_stream', 8)" \
        -c "ALTER TABLE bench_stream SET (autovacuum_enabled = off)" \
        -c "SELECT pg_create_logical_replication_slot('bench_recv', 'event_log')" \
        -c "SELECT pg_create_logical_replication_slot('bench_bridge', 'event_log')" >/dev/null
    sql -c "CALL bench_fill($events)" -c "CHECKPOINT"
    endpos=$(sql -c "SELECT pg_current_wal_insert_lsn()")
    sql -c "DO \$\$ BEGIN
                WHILE pg_current_wal_flush_lsn() < '$endpos' LOOP
                    PERFORM pg_sleep(0.01);
                END LOOP;
            END \$\$"

    run_recv() {
        local t0 t1
        t0=$(date +%s.%N)
        pg_recvlogical -d "$db" -S bench_recv --start --no-loop --endpos "$endpos" \
            -o include-transaction=on -f "$work/recv.jsonl"
        t1=$(date +%s.%N)
        T_RECV+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
    }
    run_bridge() {
        local t0 t1
        t0=$(date +%s.%N)
        if ! event_log_kafka -d "$db" -S bench_bridge -b "$bootstrap" -t "bench$r.{table}" \
                --endpos "$endpos" --status-interval 0 2>"$work/bridge.log"; then
            cat "$work/bridge.log" >&2
            return 1
        fi
        t1=$(date +%s.%N)
        T_BRIDGE+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
    }
    if ((r % 2)); then run_recv; run_bridge; else run_bridge; run_recv; fi

    lines=$(grep -c '^{"stream":' "$work/recv.jsonl")
    [[ $lines == "$events" ]] || { echo "80_kafka: pg_recvlogical wrote $lines events, not $events" >&2; exit 1; }
    answer=$(mock_cmd "dump $topic $work/dump")
    [[ $answer == "ok $events" ]] || { echo "80_kafka: Kafka has ${answer#ok } messages, not $events" >&2; exit 1; }
    rm -f "$work/recv.jsonl" "$work/dump"
    sql -c "SELECT pg_drop_replication_slot('bench_recv'), pg_drop_replication_slot('bench_bridge')" >/dev/null
done
echo quit >&"${MOCK[1]}"
wait "$MOCK_PID" 2>/dev/null || true
MOCK_PID=

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
recv_rate=$(awk -v n="$events" -v t="$(median "${T_RECV[*]}")" 'BEGIN { printf "%.0f", n / t }')
bridge_rate=$(awk -v n="$events" -v t="$(median "${T_BRIDGE[*]}")" 'BEGIN { printf "%.0f", n / t }')
ratio=$(awk -v a="$bridge_rate" -v b="$recv_rate" 'BEGIN { printf "%.2f", a / b }')
mark=""
awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r < t) }' && mark="  MISSED"
server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, $events events in transactions of 10, 8 shards, $reps repetition(s)"
echo "  seconds: recv ${T_RECV[*]}, bridge ${T_BRIDGE[*]}"
printf '  bridge %8s ev/s  pg_recvlogical %8s ev/s  ratio %s (target %.2f)%s\n' \
    "$bridge_rate" "$recv_rate" "$ratio" "$target" "$mark"
echo
echo "summary: | Kafka bridge into mock cluster vs pg_recvlogical into a file | $bridge_rate ev/s | $recv_rate ev/s | $ratio | $target |${mark:+ MISSED}"
