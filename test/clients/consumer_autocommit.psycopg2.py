# psycopg2: group "audit", each poll committing what the previous one returned
import psycopg2


def handle(type_, payload):
    print(type_, payload, flush=True)


conn = psycopg2.connect("")  # PGHOST, PGDATABASE, ... from the environment
# Each poll a transaction of its own, committed when it returns; psycopg2 is
# not autocommit by default, and then no offset would ever move.
conn.autocommit = True
cur = conn.cursor()

while True:
    cur.execute(
        "SELECT shard, seq, type, payload FROM event_log.poll(%s, %s, 1000,"
        " wait => '30s', auto_commit => true)",
        ("audit", "shop.orders"))
    for shard, seq, type_, payload in cur.fetchall():
        handle(type_, payload)  # done before the next poll: at least once
