# psycopg 3 or psycopg2: follow a stream with read(), shard by shard
import time


def follow(conn, stream, shards, last, handle):
    """Hand each event of stream to handle(shard, seq, key, type, payload), in seq
    order per shard, for ever. last: {shard: last seq processed}, 0 for a new
    reader; kept up to date."""
    while True:
        caught_up = True
        for shard in range(shards):
            with conn.cursor() as cur:
                cur.execute("SELECT seq, key, type, payload FROM event_log.read(%s, %s, %s, 100)",
                            (stream, shard, last[shard]))
                rows = cur.fetchall()
            for seq, key, type_, payload in rows:
                handle(shard, seq, key, type_, payload)
                last[shard] = seq
            # Save last[shard] here, ideally in the same transaction as handle()'s
            # effects; the commit also ends the transaction the read began (psycopg
            # 3 and psycopg2 are not autocommit by default).
            conn.commit()
            caught_up = caught_up and len(rows) < 100
        if caught_up:
            time.sleep(0.5)
