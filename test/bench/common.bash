# common.bash: helpers the benchmarks share (sourced, not run).
# The sourcing script sets BENCH_NAME (for messages) before using them.

sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# fresh_db NAME: the benchmark's database, made anew (from $admin_db, or
# postgres), and the default of every later connection.
fresh_db() {
    sql -d "${admin_db:-postgres}" -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
    export PGDATABASE=$1
}

# the numbers in $1, rounded, separated by slashes
ints() { awk -v l="$1" 'BEGIN { n = split(l, a, " "); for (i = 1; i <= n; i++) printf "%s%.0f", (i > 1 ? "/" : ""), a[i] }'; }

# mean of the numbers in $1
mean() { awk -v l="$1" 'BEGIN { n = split(l, a, " "); s = 0; for (i = 1; i <= n; i++) s += a[i]; printf "%.1f", s / n }'; }

# median of the three numbers in $1
median3() { tr ' ' '\n' <<<"$1" | grep . | sort -g | sed -n 2p; }

# median of the numbers in $1, any count (an even count: the mean of the
# middle two)
median() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio_median STREAM PLAIN: the median of the per-round ratios
# STREAM[i] / PLAIN[i] of two lists of rounds run side by side (round i of
# each close in time).  This machine's rate drifts by tens of percent within
# a minute, and a ratio of rounds run next to each other drifts much less
# than either rate; the median then drops a round that one side lost to a
# burst of other load.
ratio_median() {
    awk -v s="$1" -v p="$2" 'BEGIN {
        n = split(s, a, " "); m = split(p, b, " ");
        if (n != m || n == 0) { print "ratio_median: unequal rounds" > "/dev/stderr"; exit 1 }
        for (i = 1; i <= n; i++) printf "%.4f ", a[i] / b[i]; print "" }' | {
        read -r r && median "$r"; }
}

# reverse NAME: the array named NAME in reverse order, in place (the next
# turn of a benchmark's alternating rounds)
reverse() {
    local -n arr=$1
    local i n=${#arr[@]} t
    for ((i = 0; i < n / 2; i++)); do
        t=${arr[i]}
        arr[i]=${arr[n - 1 - i]}
        arr[n - 1 - i]=$t
    done
}

SUMMARY=()
missed=0
# report LABEL MEASURED LIMIT UNIT TARGET [DETAIL [RATIO]]: one result line,
# and a row of the markdown summary.  The ratio is MEASURED / LIMIT unless
# RATIO is given (the median of per-round ratios, ratio_median).  A ratio
# below its target is marked MISSED.
report() {
    local label=$1 stream=$2 plain=$3 unit=$4 target=$5 detail=${6:-} ratio=${7:-} mark=""
    [[ -n $ratio ]] || ratio=$(awk -v s="$stream" -v p="$plain" 'BEGIN { printf "%.2f", s / p }')
    ratio=$(awk -v r="$ratio" 'BEGIN { printf "%.2f", r }')
    if awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r < t) }'; then
        mark="  MISSED"
        missed=$((missed + 1))
    fi
    printf '%-32s stream %8.0f %s  plain %8.0f %s  ratio %.2f  (target %.2f)%s\n' \
        "$label" "$stream" "$unit" "$plain" "$unit" "$ratio" "$target" "$mark"
    [[ -z $detail ]] || printf '%-32s   %s\n' "" "$detail"
    SUMMARY+=("$(printf '| %s | %.0f %s | %.0f %s | %.2f | %.2f | %s |' \
        "$label" "$stream" "$unit" "$plain" "$unit" "$ratio" "$target" \
        "${mark:+MISSED}")")
}

# print_summary HEADER: the markdown table of every report so far.
print_summary() {
    echo
    echo "summary: $1"
    echo "| measurement | measured | limit | ratio | target | |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${SUMMARY[@]}"
    ((missed == 0)) || echo "$missed ratio(s) below target"
}

# pgbench_tps SCRIPT SECONDS [PGOPTIONS]: one client runs SCRIPT for SECONDS
# (prepared statements); sets tps.  Fails, with pgbench's output, if it did
# not run cleanly.
pgbench_tps() {
    local out
    if ! out=$(PGOPTIONS="${3:-${PGOPTIONS:-}}" pgbench -n -M prepared -f "$1" -c 1 -T "$2" 2>&1); then
        echo "$out" >&2
        echo "pgbench failed on $(basename "$1")" >&2
        return 1
    fi
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    if [[ -z $tps ]]; then
        echo "$out" >&2
        return 1
    fi
}

# fresh_twin: bench_twin, empty, the bare table a stream's appends are
# compared with: the stream's columns and indexes (primary key (shard, seq),
# unique (key, version) and (event_id), BRIN on recorded_at), seq and
# version from the sequences twin_seq and twin_version (made if missing).
fresh_twin() {
    sql -q <<'SQL'
SET client_min_messages = warning;
CREATE SEQUENCE IF NOT EXISTS twin_seq;
CREATE SEQUENCE IF NOT EXISTS twin_version;
DROP TABLE IF EXISTS bench_twin;
CREATE TABLE bench_twin (
    shard int NOT NULL, seq bigint NOT NULL, key text NOT NULL, version bigint NOT NULL,
    type text NOT NULL, payload jsonb NOT NULL, metadata jsonb,
    event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, seq), UNIQUE (key, version), UNIQUE (event_id));
CREATE INDEX ON bench_twin USING brin (recorded_at) WITH (pages_per_range = 32, autosummarize = on);
SQL
}

# bulk_with_without STREAM SETUP PAYLOAD: three rounds of one INSERT ...
# SELECT of $batch events of type OrderPlaced (payload the SQL expression
# PAYLOAD over i) into a 1-shard STREAM made anew each time, first as made,
# then after the SQL SETUP; sets the arrays without and with, in events per
# second.  The stream of the last round (with SETUP) is left for checks.
bulk_with_without() {
    local stream=$1 setup=$2 payload=$3 run s ms eps
    with=() without=()
    for run in 1 2 3; do
        for s in no yes; do
            sql -c "SELECT event_log.drop_stream('$stream')" >/dev/null 2>&1 || true
            sql -c "SELECT event_log.create_stream('$stream', 1)" >/dev/null
            [[ $s == no ]] || sql -c "$setup" >/dev/null
            sql -c "CHECKPOINT"
            ms=$(sql -c "\\timing on" -c "INSERT INTO $stream (key, type, payload)
                    SELECT 'k' || (i % 1000), 'OrderPlaced', $payload
                    FROM generate_series(1, $batch) i" | awk '/^Time:/ { print $2 }')
            eps=$(awk -v b="$batch" -v ms="$ms" 'BEGIN { printf "%.0f", b / ms * 1000 }')
            if [[ $s == yes ]]; then with+=("$eps"); else without+=("$eps"); fi
        done
    done
}
