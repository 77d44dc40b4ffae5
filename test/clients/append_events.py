# psycopg 3 or psycopg2: append a command's events to one cart, all or none
import json


def append_command(conn, cart_id, loaded_version, events):
    """events: [{"type": ..., "payload": ..., "id": ... (optional)}]; commits."""
    with conn.cursor() as cur:
        cur.execute("""
            SELECT key, seq, version, duplicate
            FROM event_log.append_events(%s, %s,
                ARRAY(SELECT event_log.new_event(e->>'type', e->'payload',
                                                 event_id => (e->>'id')::uuid)
                      FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(e, n)
                      ORDER BY n),
                expected_version => %s)""",
            ("shop.cart_events", cart_id, json.dumps(events), loaded_version))
        rows = cur.fetchall()
    conn.commit()
    return rows
