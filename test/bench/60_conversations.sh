#!/usr/bin/env bash
# 60_conversations.sh: what correlation and causation cost appends, and how
# fast a conversation is read (docs/conversations.md, docs/performance.md).
#
# Run by test/bench/run.sh (`make bench`), which exports PGHOST PGPORT PGUSER
# PGDATABASE and PATH for a throwaway cluster.  1 client, one INSERT per
# transaction, synchronous_commit = off, each path BENCH_SECONDS in two
# rounds (A B B A), each round into a fresh stream:
#   1. settings: event_log.correlation_id and causation_id set (the trigger
#      adds both to every event's metadata), against the same INSERT with
#      them unset                                              target >= 0.90
#   2. tracked: every event carries a correlation_id in its metadata (one
#      of 100,000); the stream tracked by track_conversations(), against
#      the same INSERT into an untracked stream                target >= 0.90
#   3. conversation() of one random correlation_id from the tracked stream
#      that 2. filled (the conversation has a few events), against replay()
#      of one random key of the same stream (its plain twin: one btree
#      lookup of a few events), reads per second              target >= 0.50
#
# Environment: BENCH_SECONDS (default 15).  Exits non-zero only if something
# fails to run.
set -euo pipefail
shopt -s inherit_errexit

secs=${BENCH_SECONDS:-15}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
    echo "60_conversations: BENCH_SECONDS must be a positive integer" >&2
    exit 2
fi
round_secs=$(((secs + 1) / 2))

admin_db=${PGDATABASE:-postgres}
db=event_log_bench_conversations
work=$(mktemp -d /tmp/event_log_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

fresh_db "$db"
sql -c "CREATE EXTENSION event_log"

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, ${secs}s per path (2 rounds of ${round_secs}s)"

cat >"$work/plain.sql" <<'EOF'
\set k random(1, 10000)
INSERT INTO bench_conv (key, type, payload)
VALUES ('cart-' || :k, 'ItemAdded', jsonb_build_object('sku', 'sku-' || :k, 'qty', 1));
EOF
cat >"$work/correlated.sql" <<'EOF'
\set k random(1, 10000)
\set c random(1, 100000)
INSERT INTO bench_conv (key, type, payload, metadata)
VALUES ('cart-' || :k, 'ItemAdded', jsonb_build_object('sku', 'sku-' || :k, 'qty', 1),
        jsonb_build_object('correlation_id', 'req-' || :c, 'causation_id', 'cmd-' || :c));
EOF

# fresh TRACKED: an empty stream bench_conv, tracked or not.
fresh() {
    sql -c "SELECT event_log.drop_stream(stream) FROM event_log.streams
            WHERE stream = to_regclass('bench_conv')" \
        -c "SELECT event_log.create_stream('bench_conv', 1)" >/dev/null
    if [[ $1 == yes ]]; then
        sql -c "SELECT event_log.track_conversations('bench_conv')" >/dev/null
    fi
    sql -c CHECKPOINT
}

sync="-c synchronous_commit=off"
ids="-c event_log.correlation_id=req-0123456789 -c event_log.causation_id=cmd-0123456789"

# 1. the settings
declare -A ROUNDS=()
for path in set unset unset set; do
    fresh no
    if [[ $path == set ]]; then
        pgbench_tps "$work/plain.sql" "$round_secs" "$sync $ids"
    else
        pgbench_tps "$work/plain.sql" "$round_secs" "$sync"
    fi
    ROUNDS[$path]+="$tps "
done
added=$(sql -c "SELECT count(*) FILTER (WHERE metadata ->> 'correlation_id' IS NULL) FROM bench_conv")
if [[ $added != 0 ]]; then
    echo "60_conversations: the settings were not added to every event" >&2
    exit 1
fi
report "INSERT, ids from the settings" "$(mean "${ROUNDS[set]}")" "$(mean "${ROUNDS[unset]}")" tps 0.90 \
    "rounds (tps): set $(ints "${ROUNDS[set]}"), unset $(ints "${ROUNDS[unset]}")"

# 2. the index
ROUNDS=()
for path in no yes yes no; do
    fresh "$path"
    pgbench_tps "$work/correlated.sql" "$round_secs" "$sync"
    ROUNDS[$path]+="$tps "
done
report "INSERT into a tracked stream" "$(mean "${ROUNDS[yes]}")" "$(mean "${ROUNDS[no]}")" tps 0.90 \
    "rounds (tps): tracked $(ints "${ROUNDS[yes]}"), untracked $(ints "${ROUNDS[no]}")"

# 3. reading a conversation, from the tracked stream the last round filled
# (the last round was untracked: fill a tracked one again)
fresh yes
pgbench_tps "$work/correlated.sql" "$round_secs" "$sync"
sql -c "VACUUM ANALYZE bench_conv"
events=$(sql -c "SELECT count(*) FROM bench_conv")
cat >"$work/conversation.sql" <<'EOF'
\set c random(1, 100000)
SELECT count(*) FROM event_log.conversation('req-' || :c);
EOF
cat >"$work/replay.sql" <<'EOF'
\set k random(1, 10000)
SELECT count(*) FROM event_log.replay('bench_conv', 'cart-' || :k);
EOF
ROUNDS=()
for path in conversation replay replay conversation; do
    pgbench_tps "$work/$path.sql" "$round_secs" "$sync"
    ROUNDS[$path]+="$tps "
done
report "conversation() of $events events" "$(mean "${ROUNDS[conversation]}")" "$(mean "${ROUNDS[replay]}")" reads/s 0.50 \
    "rounds (reads/s): conversation $(ints "${ROUNDS[conversation]}"), replay $(ints "${ROUNDS[replay]}")"

print_summary "PostgreSQL $server, $(nproc) CPUs, BENCH_SECONDS=$secs"

sql -d "$admin_db" -c "DROP DATABASE $db"
