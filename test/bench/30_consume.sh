#!/usr/bin/env bash
# 30_consume.sh: consumer throughput of a consumer group against a plain
# offset-polling loop over the same stream, as a ratio.
#
# Run by test/bench/run.sh (`make bench`), which exports PGHOST PGPORT PGUSER
# PGDATABASE and PATH for a throwaway cluster.  One pgbench client reads a
# one-shard stream of CONSUME_EVENTS events (default 1,000,000) in batches of
# CONSUME_BATCH (1,000), every row sent to the client:
#   group: SELECT seq, * FROM event_log.poll('bench', stream, 1000), then
#          SELECT event_log.commit_offset(...) of the batch's last seq
#          (two autocommit statements, the usual consumer loop);
#   plain: SELECT seq, * FROM stream WHERE shard = 0 AND seq > :last
#          ORDER BY seq LIMIT 1000, with :last kept by the client (\aset).
# Each side makes one pass over the stream (events/batch transactions) six
# times, in three rounds of plain, group, group, plain; the figure is each
# side's median pass (this VM's passes vary by up to half from one to the
# next, so a mean of two was at the mercy of one slow pass).  The group side
# must end every pass with its offset at the end of the stream.
#                                                              target >= 0.80
#
# Environment:
#   CONSUME_EVENTS     events in the stream (default 1000000)
#   CONSUME_BATCH      events per poll (default 1000)
#   BENCH_SYNC_COMMIT  synchronous_commit of the sessions (default off, as in
#                      10_append.sh: with on, every commit_offset waits for a
#                      WAL flush that the read-only plain loop never pays)
set -euo pipefail
shopt -s inherit_errexit

events=${CONSUME_EVENTS:-1000000}
batch=${CONSUME_BATCH:-1000}
sync_commit=${BENCH_SYNC_COMMIT:-off}
if ! [[ $events =~ ^[1-9][0-9]*$ && $batch =~ ^[1-9][0-9]*$ ]]; then
    echo "30_consume: CONSUME_EVENTS and CONSUME_BATCH must be positive integers" >&2
    exit 2
fi
admin_db=${PGDATABASE:-postgres}
db=event_log_bench_consume
work=$(mktemp -d /tmp/event_log_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

sql -d "$admin_db" -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
export PGDATABASE=$db
export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c synchronous_commit=$sync_commit"

t0=$(date +%s)
sql >/dev/null <<SQL
CREATE EXTENSION event_log;
SELECT event_log.create_stream('bench_stream', 1);
ALTER TABLE bench_stream SET (autovacuum_enabled = off);
INSERT INTO bench_stream (key, type, payload)
SELECT 'cart-' || (i % 20000), 'ItemAdded',
       jsonb_build_object('sku', 'sku-' || (i % 1000), 'qty', i % 5 + 1, 'price', 12.41)
FROM generate_series(1, $events) i;
VACUUM ANALYZE bench_stream;
SQL
echo "30_consume: loaded $events events in $(($(date +%s) - t0)) s"

printf '%s\n' \
    "SELECT seq AS last, * FROM bench_stream WHERE shard = 0 AND seq > :last ORDER BY seq LIMIT $batch \\aset" \
    >"$work/plain.sql"
printf '%s\n' \
    "SELECT seq AS last, * FROM event_log.poll('bench', 'bench_stream', $batch) \\aset" \
    "SELECT event_log.commit_offset('bench', 'bench_stream', 0, :last);" \
    >"$work/group.sql"
txns=$(((events + batch - 1) / batch))

# run_pass SIDE: seconds for one pass over the stream.
run_pass() {
    local side=$1 out tps
    if [[ $side == group ]]; then
        sql -c "SELECT FROM event_log.reset_offsets('bench', 'bench_stream', 'start')" >/dev/null
    fi
    sql -c CHECKPOINT
    if ! out=$(pgbench -n -M prepared -D last=0 -t "$txns" -f "$work/$side.sql" 2>&1); then
        echo "$out" >&2
        echo "30_consume: pgbench failed on $side" >&2
        return 1
    fi
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    if [[ -z $tps ]]; then
        echo "$out" >&2
        echo "30_consume: no tps from pgbench on $side" >&2
        return 1
    fi
    if [[ $side == group &&
          $(sql -c "SELECT event_log.committed_offset('bench', 'bench_stream', 0)") != "$events" ]]; then
        echo "30_consume: the group did not reach the end of the stream" >&2
        return 1
    fi
    awk -v n="$txns" -v t="$tps" 'BEGIN { printf "%.3f", n / t }'
}

plain_times="" group_times=""
for round in 1 2 3; do
    plain_times+="$(run_pass plain) "
    group_times+="$(run_pass group) "
    group_times+="$(run_pass group) "
    plain_times+="$(run_pass plain) "
done

# The median of an even count: the mean of the middle two.
median() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ a[NR] = $1 } END { m = NR / 2; printf "%.3f", NR % 2 ? a[m + 0.5] : (a[m] + a[m + 1]) / 2 }'
}
pt=$(median "$plain_times")
gt=$(median "$group_times")
plain_rate=$(awk -v e="$events" -v t="$pt" 'BEGIN { printf "%.0f", e / t }')
group_rate=$(awk -v e="$events" -v t="$gt" 'BEGIN { printf "%.0f", e / t }')
ratio=$(awk -v g="$group_rate" -v p="$plain_rate" 'BEGIN { printf "%.2f", g / p }')
mark=""
if awk -v r="$ratio" 'BEGIN { exit !(r < 0.80) }'; then
    mark="  MISSED"
fi

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, $events events, batches of $batch," \
    "synchronous_commit=$sync_commit"
printf '%-28s group %8s ev/s  plain %8s ev/s  ratio %s  (target 0.80)%s\n' \
    "poll + commit_offset" "$group_rate" "$plain_rate" "$ratio" "$mark"
printf '%-28s   seconds per pass: group %s, plain %s\n' "" "${group_times% }" "${plain_times% }"
echo
echo "| measurement | group | plain | ratio | target | |"
echo "|---|---|---|---|---|---|"
echo "| $events events, batches of $batch: poll + commit_offset | $group_rate ev/s | $plain_rate ev/s | $ratio | 0.80 | ${mark:+MISSED} |"

sql -d "$admin_db" -c "DROP DATABASE $db"
