#!/usr/bin/env bash
# 10_append.sh: append throughput of a stream against its physical limit, a
# plain INSERT into a table of the same shape (bench_plain), as ratios.
#
# Run by test/bench/run.sh (`make bench`), which exports PGHOST PGPORT PGUSER
# PGDATABASE and PATH for a throwaway cluster.  Three measurements:
#   1. one client, one event per transaction: INSERT into the stream, and
#      event_log.append(), against INSERT into bench_plain      target >= 0.85
#      (append(): 0.95, issue 13); append() is also reported against the
#      plain INSERT ... RETURNING a row of its types, which pays for the
#      result row as append() does
#   2. 4 clients on a 4-shard stream, each client appending only to keys of
#      its own shard (so no two clients want the same shard lock), the same
#      two paths against the same lookup + INSERT into bench_plain
#                                                                target >= 0.60
#   3. one INSERT ... SELECT of BENCH_BATCH events, median of 3 runs
#                                                                target >= 0.70
#
# Every path of 1 and 2 runs BENCH_ROUNDS times (default 4) for BENCH_SECONDS
# divided among them, in the order stream INSERT, append(), plain, then
# plain, append(), stream INSERT, and so on; the figure is the median of the
# rounds, and the ratio the median of the per-round ratios against the plain
# round of the same turn (this VM's rate drifts by tens of percent within a
# minute; rounds run next to each other drift together).  Each run starts
# after a CHECKPOINT with its target table empty (the stream dropped and
# created again, the plain table truncated), so drift and table growth weigh
# the same on both sides.
# The batch runs alternate the same way (stream first, then plain first, ...).
#
# Environment:
#   BENCH_SECONDS      seconds per measured path (default 15)
#   BENCH_ROUNDS       rounds per path (default 4)
#   BENCH_BATCH        events in the batch INSERT (default 200000)
#   BENCH_SYNC_COMMIT  the synchronous_commit values to run the pgbench
#                      measurements with, both sides alike (default "off on":
#                      off shows what the stream itself costs, on what users
#                      see with durable commits, where each single-event
#                      transaction also waits for a WAL flush); the batch runs
#                      with the first
#
# Exits non-zero only if something fails to run.  A ratio below its target is
# printed with MISSED.
set -euo pipefail
shopt -s inherit_errexit

secs=${BENCH_SECONDS:-15}
rounds=${BENCH_ROUNDS:-4}
batch=${BENCH_BATCH:-200000}
sync_commits=${BENCH_SYNC_COMMIT:-off on}
sync_commit=${sync_commits%% *}
if ! [[ $secs =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ && $batch =~ ^[1-9][0-9]*$ ]]; then
    echo "10_append: BENCH_SECONDS, BENCH_ROUNDS and BENCH_BATCH must be positive integers" >&2
    exit 2
fi
round_secs=$(((secs + rounds - 1) / rounds))
shards=4
keys_per_shard=2500
single_keys=10000
threads_max=2                   # pgbench threads: sized for 2 cores

admin_db=${PGDATABASE:-postgres}
db=event_log_bench_append
work=$(mktemp -d /tmp/event_log_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

fresh_db "$db"
base_options=${PGOPTIONS:-}
export PGOPTIONS="${base_options:+$base_options }-c synchronous_commit=$sync_commit"

sql <<SQL
CREATE EXTENSION event_log;
CREATE TABLE bench_plain (
    id bigserial PRIMARY KEY,
    shard int,
    seq bigint,
    key text,
    version bigint,
    type text,
    payload jsonb,
    metadata jsonb,
    event_id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    recorded_at timestamptz DEFAULT now());
CREATE INDEX ON bench_plain (key);

-- keys_per_shard keys of each shard, numbered 1.. within their shard
CREATE TABLE bench_keys (shard int, n int, key text, PRIMARY KEY (shard, n));
INSERT INTO bench_keys (shard, n, key)
SELECT shard, n, key
FROM (SELECT key, shard,
             row_number() OVER (PARTITION BY shard ORDER BY i) AS n
      FROM (SELECT i, 'cart-' || i AS key,
                   event_log.shard_for('cart-' || i, $shards) AS shard
            FROM generate_series(1, $((shards * keys_per_shard * 4))) i) c) r
WHERE n <= $keys_per_shard;
ANALYZE bench_keys;
SQL

bad=$(sql -c "SELECT count(*) FILTER (WHERE event_log.shard_for(key, $shards) <> shard)
                     + abs(count(*) - $((shards * keys_per_shard)))
              FROM bench_keys")
if [[ $bad != 0 ]]; then
    echo "10_append: bench_keys does not hold $keys_per_shard keys of each shard" >&2
    exit 1
fi

# The pgbench scripts.  pgbench's :client_id is 0..clients-1, so with 4
# clients client c appends only to keys of shard c.
payload="jsonb_build_object('sku', 'sku-' || :sku, 'qty', CAST(:qty AS int))"
vars="\\set sku random(1, 1000)
\\set qty random(1, 5)"

cat >"$work/single_insert.sql" <<EOF
\\set k random(1, $single_keys)
$vars
INSERT INTO bench_stream (key, type, payload) VALUES ('cart-' || :k, 'ItemAdded', $payload);
EOF
cat >"$work/single_append.sql" <<EOF
\\set k random(1, $single_keys)
$vars
SELECT * FROM event_log.append('bench_stream', 'cart-' || :k, 'ItemAdded', $payload);
EOF
cat >"$work/single_plain.sql" <<EOF
\\set k random(1, $single_keys)
$vars
INSERT INTO bench_plain (key, type, payload) VALUES ('cart-' || :k, 'ItemAdded', $payload);
EOF
# append() returns (shard, seq, version); the same INSERT returning a row of
# the same types is the twin that also pays for sending a result row.
cat >"$work/single_plain_ret.sql" <<EOF
\\set k random(1, $single_keys)
$vars
INSERT INTO bench_plain (key, type, payload) VALUES ('cart-' || :k, 'ItemAdded', $payload)
RETURNING CAST(id AS int) AS shard, id AS seq, id AS version;
EOF

cat >"$work/sharded_insert.sql" <<EOF
\\set shard :client_id % $shards
\\set n random(1, $keys_per_shard)
$vars
INSERT INTO bench_stream (key, type, payload)
SELECT key, 'ItemAdded', $payload
FROM bench_keys WHERE shard = :shard AND n = :n;
EOF
cat >"$work/sharded_append.sql" <<EOF
\\set shard :client_id % $shards
\\set n random(1, $keys_per_shard)
$vars
SELECT a.*
FROM bench_keys k,
     LATERAL event_log.append('bench_stream', k.key, 'ItemAdded', $payload) a
WHERE k.shard = :shard AND k.n = :n;
EOF
cat >"$work/sharded_plain.sql" <<EOF
\\set shard :client_id % $shards
\\set n random(1, $keys_per_shard)
$vars
INSERT INTO bench_plain (key, type, payload)
SELECT key, 'ItemAdded', $payload
FROM bench_keys WHERE shard = :shard AND n = :n;
EOF

# Empty target tables.  A stream cannot be truncated: drop and create it.
fresh_stream() {
    sql -c "SELECT event_log.drop_stream(stream) FROM event_log.streams
            WHERE stream = to_regclass('bench_stream')" \
        -c "SELECT event_log.create_stream('bench_stream', $shards)" >/dev/null
}
fresh_plain() {
    sql -c 'TRUNCATE bench_plain RESTART IDENTITY'
}
fresh() {
    if [[ $1 == bench_stream ]]; then fresh_stream; else fresh_plain; fi
}

# run_pgbench SCRIPT CLIENTS SECONDS: sets tps and txns.
run_pgbench() {
    local script=$1 clients=$2 t=$3 threads out failed
    threads=$((clients < threads_max ? clients : threads_max))
    sql -c CHECKPOINT
    if ! out=$(pgbench -n -M prepared -f "$script" -c "$clients" -j "$threads" \
            -T "$t" 2>&1); then
        echo "$out" >&2
        echo "10_append: pgbench failed on $(basename "$script")" >&2
        return 1
    fi
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    if [[ -z $tps || -z $txns || ${failed:-0} != 0 ]]; then
        echo "$out" >&2
        echo "10_append: pgbench on $(basename "$script") did not run cleanly" >&2
        return 1
    fi
}

# measure PATH SCRIPT TABLE CLIENTS: one round of one path; appends the tps
# to ROUNDS[PATH].  Checks that every transaction appended one event.
declare -A ROUNDS=()
measure() {
    local path=$1 script=$2 table=$3 clients=$4 rows
    fresh "$table"
    run_pgbench "$script" "$clients" "$round_secs"
    rows=$(sql -c "SELECT count(*) FROM $table")
    if ((rows < txns || rows > txns + clients)); then
        echo "10_append: $path: $txns transactions but $rows rows in $table" >&2
        return 1
    fi
    ROUNDS[$path]+="$tps "
}

# pgbench_section LABEL CLIENTS PREFIX TARGET [APPEND_TARGET]: the three
# paths, BENCH_ROUNDS rounds; append() is held to APPEND_TARGET (default
# TARGET).  With a script PREFIX_plain_ret.sql, a fourth path, the plain
# INSERT that returns a row like append()'s, against which append() is also
# reported.
pgbench_section() {
    local label=$1 clients=$2 prefix=$3 target=$4 app_target=${5:-$4} order r path pla
    local -A table=([insert]=bench_stream [append]=bench_stream [plain]=bench_plain
                    [plain_ret]=bench_plain)
    order=(insert append plain)
    [[ -f $work/${prefix}_plain_ret.sql ]] && order+=(plain_ret)
    ROUNDS=()
    for ((r = 1; r <= rounds; r++)); do
        for path in "${order[@]}"; do
            measure "$path" "$work/${prefix}_$path.sql" "${table[$path]}" "$clients"
        done
        reverse order
    done
    pla=$(median "${ROUNDS[plain]}")
    report "$label INSERT" "$(median "${ROUNDS[insert]}")" "$pla" tps "$target" \
        "rounds (tps): stream $(ints "${ROUNDS[insert]}"), plain $(ints "${ROUNDS[plain]}")" \
        "$(ratio_median "${ROUNDS[insert]}" "${ROUNDS[plain]}")"
    report "$label append()" "$(median "${ROUNDS[append]}")" "$pla" tps "$app_target" \
        "rounds (tps): append $(ints "${ROUNDS[append]}"), plain $(ints "${ROUNDS[plain]}")" \
        "$(ratio_median "${ROUNDS[append]}" "${ROUNDS[plain]}")"
    [[ -z ${ROUNDS[plain_ret]:-} ]] ||
        report "$label append() vs RETURNING" "$(median "${ROUNDS[append]}")" \
            "$(median "${ROUNDS[plain_ret]}")" tps "$app_target" \
            "rounds (tps): plain INSERT ... RETURNING $(ints "${ROUNDS[plain_ret]}")" \
            "$(ratio_median "${ROUNDS[append]}" "${ROUNDS[plain_ret]}")"
}

# batch_once TABLE: seconds for one INSERT ... SELECT of $batch events into an
# empty TABLE, commit included, timed inside the session.
batch_once() {
    local table=$1 t rows
    fresh "$table"
    t=$(sql <<SQL
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
INSERT INTO $table (key, type, payload)
SELECT 'cart-' || (i % 20000), 'ItemAdded', jsonb_build_object('i', i)
FROM generate_series(1, $batch) i;
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
)
    rows=$(sql -c "SELECT count(*) FROM $table")
    if [[ $rows != "$batch" || -z $t ]]; then
        echo "10_append: batch into $table left $rows rows, expected $batch" >&2
        return 1
    fi
    echo "$t"
}

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, ${secs}s per path ($rounds rounds of ${round_secs}s;" \
    "medians of rounds, ratios medians of per-round ratios)," \
    "batch $batch, synchronous_commit=$sync_commits"

for sc in $sync_commits; do
    export PGOPTIONS="${base_options:+$base_options }-c synchronous_commit=$sc"
    pgbench_section "1 client, sync $sc" 1 single 0.85 0.95
    pgbench_section "$shards clients, $shards shards, sync $sc" "$shards" sharded 0.60
done
export PGOPTIONS="${base_options:+$base_options }-c synchronous_commit=$sync_commit"

stream_times="" plain_times=""
for r in 1 2 3; do
    if ((r % 2)); then
        stream_times+="$(batch_once bench_stream) "
        plain_times+="$(batch_once bench_plain) "
    else
        plain_times+="$(batch_once bench_plain) "
        stream_times+="$(batch_once bench_stream) "
    fi
done
stream_med=$(median3 "$stream_times")
plain_med=$(median3 "$plain_times")
report "batch of $batch INSERT...SELECT" \
    "$(awk -v b="$batch" -v t="$stream_med" 'BEGIN { printf "%.1f", b / t }')" \
    "$(awk -v b="$batch" -v t="$plain_med" 'BEGIN { printf "%.1f", b / t }')" \
    ev/s 0.70 "seconds: stream ${stream_times% }, plain ${plain_times% }"

print_summary "PostgreSQL $server, $(nproc) CPUs, BENCH_SECONDS=$secs, BENCH_ROUNDS=$rounds, BENCH_BATCH=$batch, synchronous_commit=$sync_commits (batch: $sync_commit)"

sql -d "$admin_db" -c "DROP DATABASE $db"
