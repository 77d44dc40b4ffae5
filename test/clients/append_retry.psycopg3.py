# psycopg 3: add an item to cart-7, unless it is checked out
import json
import psycopg

STREAM, CART = "shop.cart_events", "cart-7"
item = {"sku": "fig", "qty": 1}

conn = psycopg.connect()  # PGHOST, PGDATABASE, ... from the environment; not autocommit

for attempt in range(1, 6):
    try:
        # One transaction: load, decide, append; it commits at the end of the block.
        with conn.transaction():
            events = conn.execute("SELECT version, type FROM event_log.replay(%s, %s)",
                                  (STREAM, CART)).fetchall()
            loaded_version = events[-1][0] if events else 0
            if any(type_ == "CheckedOut" for _, type_ in events):
                raise SystemExit(f"{CART} is checked out")
            shard, seq, version = conn.execute(
                "SELECT * FROM event_log.append(%s, %s, %s, %s, expected_version => %s)",
                (STREAM, CART, "ItemAdded", json.dumps(item), loaded_version)).fetchone()
        print(f"{CART}: appended version {version}")
        break
    except psycopg.Error as e:
        if e.sqlstate != "EL001" or attempt == 5:
            raise
        print(f"{CART}: version conflict, retrying ({e.diag.message_detail})")
