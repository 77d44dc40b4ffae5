#!/usr/bin/env bash
# demo_reader.sh SECONDS: a reader for the demo's rebuild step.  Queries
# shop.cart_items over and over for SECONDS seconds, one line per answer.
end=$((SECONDS + $1))
while ((SECONDS < end)); do
    psql -XAt -d shop -c "SELECT count(*) || ' rows, ' || coalesce(sum(qty), 0) || ' items' FROM shop.cart_items"
done
