# psycopg 3: append an order's event as part of a request's conversation
import json


def place_order(conn, request_id, command_id, order_id, order):
    """Appends OrderPlaced with correlation_id request_id and causation_id command_id in
    its metadata, commits, returns its version. conn: autocommit or idle (in a transaction,
    the block would be a savepoint, and the ids would last until that transaction ends)."""
    with conn.transaction():  # set_config(..., true): the ids end with this transaction
        conn.execute("SELECT set_config('event_log.correlation_id', %s, true)", (request_id,))
        conn.execute("SELECT set_config('event_log.causation_id', %s, true)", (command_id,))
        row = conn.execute("SELECT version FROM event_log.append(%s, %s, %s, %s)",
                           ("shop.orders", order_id, "OrderPlaced", json.dumps(order))).fetchone()
    return row[0]
