# psycopg2: add an item to cart-7, unless it is checked out
import json
import psycopg2

STREAM, CART = "shop.cart_events", "cart-7"
item = {"sku": "fig", "qty": 1}

conn = psycopg2.connect("")  # PGHOST, PGDATABASE, ... from the environment

for attempt in range(1, 6):
    try:
        # One transaction: load, decide, append; "with conn" commits it at the
        # end of the block, or rolls it back on an exception.
        with conn, conn.cursor() as cur:
            cur.execute("SELECT version, type FROM event_log.replay(%s, %s)", (STREAM, CART))
            events = cur.fetchall()
            loaded_version = events[-1][0] if events else 0
            if any(type_ == "CheckedOut" for _, type_ in events):
                raise SystemExit(f"{CART} is checked out")
            cur.execute("SELECT * FROM event_log.append(%s, %s, %s, %s, expected_version => %s)",
                        (STREAM, CART, "ItemAdded", json.dumps(item), loaded_version))
            shard, seq, version = cur.fetchone()
        print(f"{CART}: appended version {version}")
        break
    except psycopg2.Error as e:
        if e.pgcode != "EL001" or attempt == 5:
            raise
        print(f"{CART}: version conflict, retrying ({e.diag.message_detail})")
