# psycopg 3: group "billing" invoices each order; effects and offsets commit together
import psycopg


def handle(conn, key, type_, payload):
    if type_ == "Placed":
        conn.execute("INSERT INTO invoices (order_key, n) VALUES (%s, %s)", (key, payload["n"]))


conn = psycopg.connect()  # PGHOST, PGDATABASE, ... from the environment; not autocommit

while True:
    with conn.transaction():  # commits at the end of the block, rolls back on an exception
        rows = conn.execute(
            "SELECT shard, seq, key, type, payload FROM event_log.poll(%s, %s, 1000, wait => '30s')",
            ("billing", "shop.orders")).fetchall()
        last = {}
        for shard, seq, key, type_, payload in rows:
            handle(conn, key, type_, payload)  # same transaction: exactly-once effects
            last[shard] = seq
        for shard, seq in last.items():
            conn.execute("SELECT event_log.commit_offset(%s, %s, %s, %s)",
                         ("billing", "shop.orders", shard, seq))
