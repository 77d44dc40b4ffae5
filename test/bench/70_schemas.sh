#!/usr/bin/env bash
# 70_schemas.sh: appends checked against a 10-property JSON Schema, against
# the same appends to a stream without a schema (issue 17: at most 15% more
# cost, that is a ratio of events per second >= 0.87).
#
# Run by test/bench/run.sh (`make bench`).  Two streams of one shard; the
# payload has ten properties (strings with a pattern and lengths, numbers
# with bounds, an enum, a uuid and a date-time format, a nested array), and
# the schema requires and bounds all ten, with additionalProperties false.
# Each measurement is one INSERT ... SELECT of BENCH_BATCH events, the two
# streams alternating, median of 3, as events per second.
#
# Environment: BENCH_BATCH (default 50000).  Exits non-zero only if
# something fails.
set -euo pipefail
shopt -s inherit_errexit
BENCH_NAME=70_schemas
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

batch=${BENCH_BATCH:-50000}

fresh_db bench_schemas
sql -c "CREATE EXTENSION event_log"

schema='{
  "type": "object", "additionalProperties": false,
  "required": ["order_id", "customer", "email", "sku", "qty", "price",
               "currency", "status", "placed_at", "tags"],
  "properties": {
    "order_id":  {"type": "string", "format": "uuid"},
    "customer":  {"type": "string", "minLength": 1, "maxLength": 64},
    "email":     {"type": "string", "maxLength": 254},
    "sku":       {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
    "qty":       {"type": "integer", "minimum": 1, "maximum": 1000},
    "price":     {"type": "number", "exclusiveMinimum": 0},
    "currency":  {"enum": ["EUR", "USD", "GBP"]},
    "status":    {"type": "string", "enum": ["placed", "paid"]},
    "placed_at": {"type": "string", "format": "date-time"},
    "tags":      {"type": "array", "maxItems": 5, "items": {"type": "string"}}
  }
}'
payload="jsonb_build_object('order_id', '6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f60',
    'customer', 'customer-' || i, 'email', 'c' || i || '@example.com',
    'sku', 'ABC-' || i, 'qty', 1 + i % 9, 'price', 9.99 + i % 7,
    'currency', 'EUR', 'status', 'placed', 'placed_at', '2026-12-03T08:00:00Z',
    'tags', jsonb_build_array('a', 'b'))"

bulk_with_without sc "SELECT event_log.register_schema('sc', 'OrderPlaced', '$schema')" "$payload"
# the schema did hold (the last stream made had it): every event records its version
[[ $(sql -c "SELECT count(*) FROM sc WHERE metadata->>'schema_version' = '1'") == "$batch" ]]
report "append, 10-property schema" "$(median3 "${with[*]}")" "$(median3 "${without[*]}")" "ev/s" 0.87 \
    "with $(ints "${with[*]}") / without $(ints "${without[*]}") ev/s"

# Upcasting on read: read_all() of the whole stream (three times in one
# session) with event_log.upcast on against the same with it off, median of
# 3 each, alternating.  The type gets a version 2 and its upcaster, and as
# many events again appended at version 2: reading those is the check that
# there is nothing to do (target 0.90); reading the first ones upcasts every
# event (the cost of the upcaster's statement per event; no target).
read_eps() {
    local ms q="SELECT count(*) FROM event_log.read_all('sc', $2, max_count => $batch)"
    ms=$(sql -c "SET event_log.upcast = $1" -c "\\timing on" -c "$q" -c "$q" -c "$q" |
        awk '/^Time:/ { t += $2 } END { print t }')
    awk -v b="$batch" -v ms="$ms" 'BEGIN { printf "%.0f", 3 * b / ms * 1000 }'
}
read_pair() {
    on=() off=()
    for run in 1 2 3; do
        off+=("$(read_eps off "$1")")
        on+=("$(read_eps on "$1")")
    done
}
v2=$(sed 's/"tags"]/"tags", "channel"]/; s/"tags":      {/"channel": {"const": "web"}, "tags": {/' <<<"$schema")
sql -c "SELECT event_log.set_schema_compatibility('sc', 'OrderPlaced', 'NONE')" >/dev/null
sql -c "SELECT event_log.register_schema('sc', 'OrderPlaced', '$v2')" >/dev/null
sql -c "SELECT event_log.register_upcaster('sc', 'OrderPlaced', 1, \$\$payload || '{\"channel\": \"web\"}'\$\$)" >/dev/null
# the same number of events appended at version 2, after those at version 1
sql -c "INSERT INTO sc (key, type, payload)
        SELECT 'k' || (i % 1000), 'OrderPlaced', $payload || '{\"channel\": \"web\"}'
        FROM generate_series(1, $batch) i"
read_pair "'{$batch}'"
report "read_all, upcast on, at latest" "$(median3 "${on[*]}")" "$(median3 "${off[*]}")" "ev/s" 0.90 \
    "on $(ints "${on[*]}") / off $(ints "${off[*]}") ev/s"
[[ $(sql -c "SET event_log.upcast = on" -c "SELECT count(*) FROM event_log.read_all('sc', max_count => $batch)
        WHERE payload->>'channel' = 'web' AND metadata->>'schema_version' = '2'") == "$batch" ]]
read_pair NULL
report "read_all, upcast on, 1 step" "$(median3 "${on[*]}")" "$(median3 "${off[*]}")" "ev/s" 0 \
    "on $(ints "${on[*]}") / off $(ints "${off[*]}") ev/s"
sql -d postgres -c "DROP DATABASE bench_schemas"
print_summary "$BENCH_NAME (batch $batch)"
