#!/usr/bin/env bash
# 75_erasure.sh: appends to a stream with two personal fields declared
# (encrypted at append with a key per data subject, docs/erasure.md),
# against the same appends to a stream without them (issue 20: measured and
# recorded; no target was set, the report's 0.00 only marks none).
#
# Run by test/bench/run.sh (`make bench`).  Two streams of one shard; the
# payload has a subject, a name and an e-mail (personal) and two plain
# fields; 1,000 subjects, so most appends find their subject's key.  Each
# measurement is one INSERT ... SELECT of BENCH_BATCH events, the two
# streams alternating, median of 3, as events per second.
#
# Environment: BENCH_BATCH (default 10000).  Exits non-zero only if
# something fails.
set -euo pipefail
shopt -s inherit_errexit
BENCH_NAME=75_erasure
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

batch=${BENCH_BATCH:-10000}

fresh_db bench_erasure
sql -c "CREATE EXTENSION event_log"

payload="jsonb_build_object('customer', 'customer-' || (i % 1000), 'name', 'Name ' || i,
    'email', 'c' || i || '@example.com', 'sku', 'ABC-' || i, 'qty', 1 + i % 9)"

bulk_with_without pe "SELECT event_log.declare_personal('pe', '{name,email}', 'customer')" "$payload"
# the fields were encrypted (the last stream made had them declared)
[[ $(sql -c "SELECT count(*) FROM pe WHERE payload->'email' ? '\$personal'") == "$batch" ]]
report "append, 2 personal fields" "$(median3 "${with[*]}")" "$(median3 "${without[*]}")" "ev/s" 0.00 \
    "with $(ints "${with[*]}") / without $(ints "${without[*]}") ev/s"
sql -d postgres -c "DROP DATABASE bench_erasure"
print_summary "$BENCH_NAME (batch $batch)"
