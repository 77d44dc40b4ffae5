#!/usr/bin/env bash
# Run the benchmarks test/bench/*.sh (all but this file, in name order, or
# just the ones named as arguments) against one throwaway cluster.
# Each runs as its own bash process with PGHOST PGPORT PGUSER PGDATABASE,
# PATH (PostgreSQL bin first, for pgbench), EVENT_LOG_TMP, EVENT_LOG_DATA,
# EVENT_LOG_HAS_OPL and EVENT_LOG_ROOT (the repo) exported; it may source
# "$EVENT_LOG_ROOT/test/cluster.sh" to call cluster_restart.
# BENCH_PRELOAD=1 starts the cluster with event_log in
# shared_preload_libraries (the shard's end in shared memory, the background
# worker), as a production server with the worker runs.
# Exits 1 if any benchmark failed.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EVENT_LOG_ROOT=$(cd "$BENCH_DIR/../.." && pwd)
export EVENT_LOG_ROOT

if (($#)); then
    benches=("$@")
else
    benches=()
    for f in "$BENCH_DIR"/*.sh; do    # glob order is name order
        [[ -f $f && $(basename "$f") != run.sh ]] && benches+=("$f")
    done
fi
if ((${#benches[@]} == 0)); then
    echo "bench: no benchmarks in $BENCH_DIR"
    exit 0
fi

source "$EVENT_LOG_ROOT/test/cluster.sh"
trap cluster_stop EXIT
trap 'exit 130' INT TERM
if [[ ${BENCH_PRELOAD:-0} == 1 ]]; then
    cluster_start "shared_preload_libraries = 'event_log'"
    echo "bench: event_log in shared_preload_libraries"
else
    cluster_start
fi

failed=()
for f in "${benches[@]}"; do
    echo "==== $(basename "$f")"
    bash "$f" || failed+=("$(basename "$f")")
done

if ((${#failed[@]})); then
    echo "bench: FAILED: ${failed[*]}"
    exit 1
fi
echo "bench: ${#benches[@]} benchmark(s) done"
