# psycopg 3 or psycopg2: follow a whole stream with read_all() and a position
import time


def follow_all(conn, stream, after, handle, save_position):
    """Hand each event of stream to handle(key, type, payload), for ever. after: the
    position save_position() last saved, None for a new reader; save_position(position)
    runs in the transaction of handle()'s effects."""
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT key, type, payload, position FROM event_log.read_all(%s, %s, 100)",
                        (stream, after))
            rows = cur.fetchall()
        for key, type_, payload, position in rows:
            handle(key, type_, payload)
            after = position
        save_position(after)
        # Commits the position with handle()'s effects, and ends the transaction the
        # read began (psycopg 3 and psycopg2 are not autocommit by default).
        conn.commit()
        if len(rows) < 100:
            time.sleep(0.5)
