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
#   auto:  SELECT seq, * FROM event_log.poll('bench', stream, 1000,
#          auto_commit => true), which commits the previous poll's events
#          (one statement per batch, as Kafka's auto-commit does).
# Each side makes one pass over the stream (events/batch transactions) four
# times, in two rounds of plain, group, auto, auto, group, plain; the figure
# is each side's median pass (this VM's passes vary by up to half from one
# to the next, so a mean of two was at the mercy of one slow pass).  The
# group sides must end every pass with their offset at the end of the stream.
#     target >= 0.90 for poll + commit_offset (issue 13), 0.80 for auto
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

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

fresh_db "$db"
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
printf '%s\n' \
    "SELECT seq AS last, * FROM event_log.poll('bench', 'bench_stream', $batch, auto_commit => true) \\aset" \
    >"$work/auto.sql"
txns=$(((events + batch - 1) / batch))

# run_pass SIDE: seconds for one pass over the stream.  The auto side polls
# once more at the end: that poll commits the last batch and finds nothing.
run_pass() {
    local side=$1 out tps n=$txns
    if [[ $side != plain ]]; then
        sql -c "SELECT FROM event_log.reset_offsets('bench', 'bench_stream', 'start')" >/dev/null
    fi
    [[ $side == auto ]] && n=$((txns + 1))
    sql -c CHECKPOINT
    if ! out=$(pgbench -n -M prepared -D last=0 -t "$n" -f "$work/$side.sql" 2>&1); then
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
    if [[ $side != plain &&
          $(sql -c "SELECT event_log.committed_offset('bench', 'bench_stream', 0)") != "$events" ]]; then
        echo "30_consume: the group ($side) did not reach the end of the stream" >&2
        return 1
    fi
    awk -v n="$n" -v t="$tps" 'BEGIN { printf "%.3f", n / t }'
}

declare -A times=([plain]="" [group]="" [auto]="")
for round in 1 2; do
    for side in plain group auto auto group plain; do
        times[$side]+="$(run_pass "$side") "
    done
done

rate() { awk -v e="$events" -v t="$(median "${times[$1]}")" 'BEGIN { printf "%.0f", e / t }'; }
plain_rate=$(rate plain)

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, $events events, batches of $batch," \
    "synchronous_commit=$sync_commit"
table=""
for side in group auto; do
    if [[ $side == group ]]; then
        label="poll + commit_offset"
        target=0.90
    else
        label="poll(auto_commit => true)"
        target=0.80
    fi
    r=$(rate "$side")
    ratio=$(awk -v g="$r" -v p="$plain_rate" 'BEGIN { printf "%.2f", g / p }')
    mark=""
    if awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r < t) }'; then
        mark="  MISSED"
    fi
    printf '%-28s group %8s ev/s  plain %8s ev/s  ratio %s  (target %s)%s\n' \
        "$label" "$r" "$plain_rate" "$ratio" "$target" "$mark"
    printf '%-28s   seconds per pass: %s\n' "" "${times[$side]% }"
    table+="| $events events, batches of $batch: $label | $r ev/s | $plain_rate ev/s | $ratio | $target | ${mark:+MISSED} |"$'\n'
done
printf '%-28s   seconds per pass: %s\n' "plain" "${times[plain]% }"
echo
echo "| measurement | group | plain | ratio | target | |"
echo "|---|---|---|---|---|---|"
printf '%s' "$table"

sql -d "$admin_db" -c "DROP DATABASE $db"
