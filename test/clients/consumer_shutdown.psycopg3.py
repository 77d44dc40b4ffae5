# psycopg 3: group "audit" auto-commits, and commits its last batch when it stops (SIGTERM)
import signal

import psycopg

stopping = False


def stop(signum, frame):
    global stopping
    stopping = True  # the loop ends when the waiting poll returns (5 s at most)


def handle(type_, payload):
    print(type_, payload, flush=True)


signal.signal(signal.SIGTERM, stop)
# autocommit=True: each poll commits when it returns, and so does commit_polled().
# Without it, psycopg 3 would run the whole loop in one transaction: no offset
# would be seen to move until the end, and a waiting poll would keep it open.
conn = psycopg.connect(autocommit=True)  # PGHOST, PGDATABASE, ... from the environment

try:
    while not stopping:
        rows = conn.execute(
            "SELECT shard, seq, type, payload FROM event_log.poll(%s, %s, 1000,"
            " wait => '5s', auto_commit => true)", ("audit", "shop.orders")).fetchall()
        for shard, seq, type_, payload in rows:
            handle(type_, payload)
finally:
    # What the next poll would have committed: the last batch, now processed.
    conn.execute("SELECT event_log.commit_polled(%s, %s)", ("audit", "shop.orders"))
    conn.close()
