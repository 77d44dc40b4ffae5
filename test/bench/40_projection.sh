#!/usr/bin/env bash
# 40_projection.sh: projections against their physical limits, as ratios.
#
# Run by test/bench/run.sh (`make bench`).  Two measurements:
#   1. rebuild_projection() of the shop's cart_items projection over a stream
#      of BENCH_PROJ_EVENTS events (carts adding and removing items, 30% of
#      them checked out), in events/s, against the set-based limit: one
#      INSERT ... SELECT ... GROUP BY producing the same table (checked by
#      comparing the two).  Median of 3 runs each, alternating.
#                                          target >= 0.50 (and >= 200k ev/s)
#   2. one client appending one event per transaction to a stream with the
#      inline cart_items projection, against the same stream without it.
#      Two rounds of BENCH_SECONDS/2 each, alternating.       target >= 0.60
#
# Environment: BENCH_PROJ_EVENTS (default 1000000, a multiple of 10),
# BENCH_SECONDS (default 15), BENCH_SYNC_COMMIT (default off, as in
# 10_append.sh).  Exits non-zero only if something fails to run.
set -euo pipefail
shopt -s inherit_errexit

events=${BENCH_PROJ_EVENTS:-1000000}
secs=${BENCH_SECONDS:-15}
sync_commit=${BENCH_SYNC_COMMIT:-off}
if ! [[ $events =~ ^[1-9][0-9]*0$ && $secs =~ ^[1-9][0-9]*$ ]]; then
    echo "40_projection: BENCH_PROJ_EVENTS must be a positive multiple of 10," \
        "BENCH_SECONDS a positive integer" >&2
    exit 2
fi
carts=$((events / 10))
round_secs=$(((secs + 1) / 2))

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"
admin_db=${PGDATABASE:-postgres}
db=event_log_bench_projection
work=$(mktemp -d /tmp/event_log_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

fresh_db "$db"
export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c synchronous_commit=$sync_commit"

# The cart_items handlers, as a user would write them.
handlers="jsonb_build_object(
    'ItemAdded', \$h\$
        INSERT INTO cart_items AS c (cart, sku, qty)
        VALUES (e.key, e.payload->>'sku', (e.payload->>'qty')::int)
        ON CONFLICT (cart, sku) DO UPDATE SET qty = c.qty + excluded.qty \$h\$,
    'ItemRemoved', \$h\$
        UPDATE cart_items SET qty = qty - (e.payload->>'qty')::int
         WHERE cart = e.key AND sku = e.payload->>'sku';
        DELETE FROM cart_items WHERE cart = e.key AND sku = e.payload->>'sku' AND qty <= 0 \$h\$,
    'CheckedOut', \$h\$
        DELETE FROM cart_items WHERE cart = e.key \$h\$)"

# Each cart has 10 events, interleaved with the other carts': seven items
# added, one of the first removed, one more added, then checkout (30% of
# carts) or one more item.
sql >/dev/null <<SQL
CREATE EXTENSION event_log;
SELECT event_log.create_stream('carts', 4);
INSERT INTO carts (key, type, payload)
SELECT 'cart-' || c,
       CASE WHEN step = 7 THEN 'ItemRemoved'
            WHEN step = 9 AND c % 10 < 3 THEN 'CheckedOut'
            ELSE 'ItemAdded' END,
       CASE WHEN step = 7 THEN jsonb_build_object('sku', 'sku-' || (c * 7) % 100, 'qty', 1)
            WHEN step = 9 AND c % 10 < 3 THEN '{}'::jsonb
            ELSE jsonb_build_object('sku', 'sku-' || (c * 7 + step) % 100,
                                    'qty', 1 + (c + step) % 3) END
FROM generate_series(0, 9) step, generate_series(1, $carts) c
ORDER BY step, c;
SELECT event_log.create_projection('cart_items', 'carts',
    columns  => 'cart text, sku text, qty int NOT NULL, PRIMARY KEY (cart, sku)',
    handlers => $handlers,
    mode     => 'async');
CREATE TABLE limit_items (cart text, sku text, qty int NOT NULL, PRIMARY KEY (cart, sku));
VACUUM ANALYZE carts;
SQL

# rebuild_once / limit_once: seconds for one run, timed inside the session.
rebuild_once() {
    sql <<SQL
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
SELECT event_log.rebuild_projection('cart_items') AS n \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) || ' ' || :n;
SQL
}
limit_once() {
    sql <<SQL
TRUNCATE limit_items;
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
INSERT INTO limit_items (cart, sku, qty)
SELECT key, payload->>'sku',
       sum(CASE type WHEN 'ItemAdded' THEN 1 ELSE -1 END * (payload->>'qty')::int)
  FROM carts
 WHERE type IN ('ItemAdded', 'ItemRemoved')
   AND key NOT IN (SELECT key FROM carts WHERE type = 'CheckedOut')
 GROUP BY 1, 2
HAVING sum(CASE type WHEN 'ItemAdded' THEN 1 ELSE -1 END * (payload->>'qty')::int) > 0;
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
}

server=$(sql -c 'SHOW server_version')
echo "PostgreSQL $server, $(nproc) CPUs, $events events ($carts carts)," \
    "${secs}s per append path (2 rounds of ${round_secs}s), synchronous_commit=$sync_commit"

rebuild_times="" limit_times=""
for r in 1 2 3; do
    if ((r % 2)); then
        read -r t n <<<"$(rebuild_once)"
        limit_times+="$(limit_once) "
    else
        limit_times+="$(limit_once) "
        read -r t n <<<"$(rebuild_once)"
    fi
    if [[ $n != "$events" ]]; then
        echo "40_projection: rebuild replayed $n events, expected $events" >&2
        exit 1
    fi
    rebuild_times+="$t "
done
diff=$(sql -c "SELECT count(*) FROM ((TABLE cart_items EXCEPT TABLE limit_items)
                                     UNION ALL (TABLE limit_items EXCEPT TABLE cart_items)) d")
if [[ $diff != 0 ]]; then
    echo "40_projection: the rebuilt projection and the set-based table differ in $diff rows" >&2
    exit 1
fi
rebuild_rate=$(awk -v e="$events" -v t="$(median3 "$rebuild_times")" 'BEGIN { printf "%.1f", e / t }')
report "rebuild of $events events" "$rebuild_rate" \
    "$(awk -v e="$events" -v t="$(median3 "$limit_times")" 'BEGIN { printf "%.1f", e / t }')" \
    ev/s 0.50 "seconds: rebuild ${rebuild_times% }, GROUP BY ${limit_times% }"
if awk -v r="$rebuild_rate" 'BEGIN { exit !(r < 200000) }'; then
    echo "rebuild rate below 200000 ev/s: MISSED"
    missed=$((missed + 1))
fi

# Inline projection overhead: streams with and without cart_items.
sql >/dev/null <<SQL
SELECT event_log.create_stream('plain_carts', 1);
SELECT event_log.create_stream('projected_carts', 1);
SELECT event_log.create_projection('cart_lines', 'projected_carts',
    columns  => 'cart text, sku text, qty int NOT NULL, PRIMARY KEY (cart, sku)',
    handlers => replace(($handlers)::text, 'cart_items', 'cart_lines')::jsonb);
SQL
for s in plain_carts projected_carts; do
    cat >"$work/$s.sql" <<EOF
\\set k random(1, 10000)
\\set sku random(1, 100)
\\set qty random(1, 3)
INSERT INTO $s (key, type, payload)
VALUES ('cart-' || :k, 'ItemAdded', jsonb_build_object('sku', 'sku-' || :sku, 'qty', CAST(:qty AS int)));
EOF
done
declare -A ROUNDS=()
append_round() {
    local out tps
    sql -c CHECKPOINT
    out=$(pgbench -n -M prepared -f "$work/$1.sql" -c 1 -T "$round_secs" 2>&1) || {
        echo "$out" >&2
        return 1
    }
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    ROUNDS[$1]+="$tps "
}
append_round projected_carts
append_round plain_carts
append_round plain_carts
append_round projected_carts
lines=$(sql -c "SELECT (SELECT count(*) FROM cart_lines) > 0")
if [[ $lines != t ]]; then
    echo "40_projection: the inline projection stayed empty" >&2
    exit 1
fi
report "append, inline projection" "$(mean "${ROUNDS[projected_carts]}")" \
    "$(mean "${ROUNDS[plain_carts]}")" tps 0.60 \
    "rounds (tps): with $(ints "${ROUNDS[projected_carts]}"), without $(ints "${ROUNDS[plain_carts]}")"

print_summary "PostgreSQL $server, $(nproc) CPUs, BENCH_PROJ_EVENTS=$events, BENCH_SECONDS=$secs, synchronous_commit=$sync_commit"
sql -d "$admin_db" -c "DROP DATABASE $db"
