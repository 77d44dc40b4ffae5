# psycopg2: group "billing" invoices each order; effects and offsets commit together
import psycopg2


def handle(cur, key, type_, payload):
    if type_ == "Placed":
        cur.execute("INSERT INTO invoices (order_key, n) VALUES (%s, %s)", (key, payload["n"]))


conn = psycopg2.connect("")  # PGHOST, PGDATABASE, ... from the environment

while True:
    with conn, conn.cursor() as cur:  # "with conn" commits, or rolls back on an exception
        cur.execute(
            "SELECT shard, seq, key, type, payload FROM event_log.poll(%s, %s, 1000, wait => '30s')",
            ("billing", "shop.orders"))
        last = {}
        for shard, seq, key, type_, payload in cur.fetchall():
            handle(cur, key, type_, payload)  # same transaction: exactly-once effects
            last[shard] = seq
        for shard, seq in last.items():
            cur.execute("SELECT event_log.commit_offset(%s, %s, %s, %s)",
                        ("billing", "shop.orders", shard, seq))
