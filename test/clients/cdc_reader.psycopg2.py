# psycopg2: print the events of public.carts from slot carts_feed, confirming as it goes
import json
import psycopg2
import psycopg2.extras

conn = psycopg2.connect("", connection_factory=psycopg2.extras.LogicalReplicationConnection)
cur = conn.cursor()
cur.start_replication(slot_name="carts_feed", decode=True,
                      options={"streams": "public.carts", "include-transaction": "on"})


def consume(msg):
    line = json.loads(msg.payload)
    if "commit" in line:
        # The transaction's events are processed: confirm up to its end, and
        # send that now (force=True). Without force, psycopg2 sends feedback
        # only every status_interval (10 s), and never if the reader stops
        # first: the slot then stays behind and sends those events again.
        msg.cursor.send_feedback(flush_lsn=msg.data_start, force=True)
    elif "begin" not in line:
        print(line["stream"], line["shard"], line["seq"], line["key"], line["type"], flush=True)


cur.consume_stream(consume)
