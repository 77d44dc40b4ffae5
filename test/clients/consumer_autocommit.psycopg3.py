# psycopg 3: group "audit", each poll committing what the previous one returned
import psycopg


def handle(type_, payload):
    print(type_, payload, flush=True)


# autocommit=True: each poll is a transaction of its own and commits when it
# returns. psycopg 3 is not autocommit by default: its first poll would open a
# transaction that nothing ever commits, so no offset would ever move.
conn = psycopg.connect(autocommit=True)  # PGHOST, PGDATABASE, ... from the environment

while True:
    rows = conn.execute(
        "SELECT shard, seq, type, payload FROM event_log.poll(%s, %s, 1000,"
        " wait => '30s', auto_commit => true)",
        ("audit", "shop.orders")).fetchall()
    for shard, seq, type_, payload in rows:
        handle(type_, payload)  # done before the next poll: at least once
