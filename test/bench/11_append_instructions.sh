#!/usr/bin/env bash
# 11_append_instructions.sh: what one append costs, counted in instructions
# rather than timed, against its plain twins.
#
# The development VM's speed moves by 20-30% within minutes and it has no
# hardware performance counters, so a wall-clock ratio (10_append.sh) cannot
# separate a few percent.  Valgrind's callgrind counts the instructions a
# process executes, which is the same from one run to the next.  Each path
# runs in a single-user backend (postgres --single) on a data directory of
# its own, made here with event_log preloaded, and executes one prepared
# statement N times, each in its own transaction (synchronous_commit = off);
# the cost of one execution is the difference between a run of BENCH_IR_LONG
# and one of BENCH_IR_SHORT executions, divided by the difference, so the
# start-up, the first executions' cache loads and the exit cancel out.
#
# Paths, as in 10_append.sh (4-shard stream, 10,000 random keys):
#   plain      INSERT into bench_plain (the stream's shape, no stream)
#   returning  the same with RETURNING shard, seq, version
#   stream     INSERT into the stream
#   append     SELECT * FROM event_log.append(...)
# Reported: the stream INSERT against the plain INSERT, and append() against
# the plain INSERT ... RETURNING (both return one row of the same types,
# which a single-user backend prints in a form dearer than the wire
# protocol's, so append() is compared with the twin that pays the same),
# the plain INSERT and the stream INSERT.  The ratio is the twin's count
# over the measured path's, so that it reads as a throughput ratio would.
# There are no targets: issue 13's targets are on throughput (10_append.sh).
#
# What a count leaves out: waiting (locks, I/O, the WAL writer), the client
# and the kernel's network path; an instruction that misses the cache costs
# more than one that hits.  It is the CPU cost of the backend's own work,
# which is what the stream adds to a plain INSERT.
#
# Needs valgrind (make bench installs it); skipped, with a message, without.
#
# Environment:
#   BENCH_IR_SHORT, BENCH_IR_LONG   executions per run (default 500, 2500)
set -euo pipefail
shopt -s inherit_errexit

short=${BENCH_IR_SHORT:-500}
long=${BENCH_IR_LONG:-2500}
if ! [[ $short =~ ^[0-9]+$ && $long =~ ^[1-9][0-9]*$ ]] || ((long <= short)); then
    echo "11_append_instructions: BENCH_IR_SHORT and BENCH_IR_LONG must be integers, SHORT < LONG" >&2
    exit 2
fi
if ! command -v valgrind >/dev/null; then
    echo "11_append_instructions: skipped: valgrind is not installed (apt-get install valgrind; make bench installs it)"
    exit 0
fi

source "$EVENT_LOG_ROOT/test/cluster.sh"
bindir=$(dirname "$(command -v postgres)")
work=$(mktemp -d "$EVENT_LOG_TMP/instructions.XXXXXX")
chown postgres: "$work"
trap 'rm -rf "$work"' EXIT
data=$work/data

as_postgres "$bindir/initdb" -D "$data" -A trust -U postgres --no-sync --locale=C -E UTF8 \
    >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; exit 1; }
cat >>"$data/postgresql.conf" <<CONF
shared_preload_libraries = 'event_log'
synchronous_commit = off
shared_buffers = 256MB
wal_level = logical
CONF

# single FILE: run the statements of FILE, one per line, in a single-user
# backend on the database bench; fails on any ERROR.
single() {
    as_postgres "$bindir/postgres" --single -D "$data" bench <"$1" >"$work/out" 2>&1
    if grep -q 'ERROR' "$work/out"; then
        grep -m 3 'ERROR' "$work/out" >&2
        return 1
    fi
}

as_postgres "$bindir/postgres" --single -D "$data" postgres <<<"CREATE DATABASE bench" >/dev/null 2>&1
{
    echo "CREATE EXTENSION event_log"
    echo "SELECT event_log.create_stream('bench_stream', shards => 4)"
    # one line each: a single-user backend ends a statement at a newline
    echo "CREATE TABLE bench_plain (id bigserial PRIMARY KEY, shard int, seq bigint, key text, version bigint, type text, payload jsonb, metadata jsonb, event_id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE, recorded_at timestamptz DEFAULT now())"
    echo "CREATE INDEX ON bench_plain (key)"
} >"$work/setup.sql"
single "$work/setup.sql"

payload="jsonb_build_object('sku', 'sku-' || \$2, 'qty', \$3)"
declare -A PREPARE=(
    [plain]="INSERT INTO bench_plain (key, type, payload) VALUES (\$1, 'ItemAdded', $payload)"
    [returning]="INSERT INTO bench_plain (key, type, payload) VALUES (\$1, 'ItemAdded', $payload) RETURNING shard, seq, version"
    [stream]="INSERT INTO bench_stream (key, type, payload) VALUES (\$1, 'ItemAdded', $payload)"
    [append]="SELECT * FROM event_log.append('bench_stream', \$1, 'ItemAdded', $payload)"
)

# count PATH N: the instructions of a single-user backend that prepares
# PATH's statement and executes it N times.
count() {
    local path=$1 n=$2 file=$work/$1_$2.sql out=$work/callgrind.$1.$2
    {
        echo "PREPARE q(text, int, int) AS ${PREPARE[$path]}"
        awk -v n="$n" -v seed="$n" 'BEGIN { srand(seed)
            for (i = 0; i < n; i++)
                printf "EXECUTE q(%s, %d, %d)\n", "'\''cart-" int(1 + rand() * 10000) "'\''",
                       int(1 + rand() * 1000), int(1 + rand() * 5) }'
    } >"$file"
    as_postgres valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bindir/postgres" --single -D "$data" bench <"$file" >"$work/out" 2>"$work/valgrind.log"
    if grep -q 'ERROR' "$work/out"; then
        grep -m 3 'ERROR' "$work/out" >&2
        return 1
    fi
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/valgrind.log"
}

declare -A PER=()
for path in plain returning stream append; do
    a=$(count "$path" "$short")
    b=$(count "$path" "$long")
    PER[$path]=$(awk -v a="$a" -v b="$b" -v s="$short" -v l="$long" 'BEGIN { printf "%.0f", (b - a) / (l - s) }')
done

echo "PostgreSQL $(postgres --version | awk '{print $3}'), valgrind $(valgrind --version | sed 's/valgrind-//'), instructions per execution ($long minus $short executions), event_log preloaded, synchronous_commit=off"
ratio() { awk -v p="$1" -v s="$2" 'BEGIN { printf "%.2f", p / s }'; }
line() {
    printf '%-24s %8.0f instr  %-22s %8.0f instr  ratio %s\n' "$1" "$2" "$3" "$4" "$(ratio "$4" "$2")"
}
line "stream INSERT" "${PER[stream]}" "plain INSERT" "${PER[plain]}"
line "append()" "${PER[append]}" "plain INSERT RETURNING" "${PER[returning]}"
line "append()" "${PER[append]}" "plain INSERT" "${PER[plain]}"
line "append()" "${PER[append]}" "stream INSERT" "${PER[stream]}"
echo "(ratio = the second's instructions over the first's, read as a throughput ratio: higher is"
echo " better; no targets here: issue 13's are on throughput, which also pays the client, the"
echo " network and the commit, and 10_append.sh measures them)"
