-- CDC: the event_log logical decoding output plugin emits one JSON object
-- per committed event, in commit order, and nothing else.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
CREATE SCHEMA shop;
SELECT event_log.create_stream('shop.carts', 2);
SELECT event_log.create_stream('shop.orders', 1);
CREATE TABLE shop.not_a_stream (id int, note text);

SELECT 'created' FROM pg_create_logical_replication_slot('cdc', 'event_log');

-- Raw lines, with LSNs, xids, times and uuids masked.
CREATE FUNCTION mask(line text) RETURNS text LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(line,
    '"(lsn|commit_lsn)":"[0-9A-F]+/[0-9A-F]+"', '"\1":"LSN"', 'g'),
    '"(xid|begin|commit)":[0-9]+', '"\1":XID', 'g'),
    '"(recorded_at|commit_time)":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00"', '"\1":"TIME"', 'g'),
    '"event_id":"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"', '"event_id":"UUID"', 'g')
$$;

-- An event, with text that needs escaping and nested JSON.
INSERT INTO shop.carts (key, type, payload, metadata)
VALUES (E'cart "1"\n\\ é', 'ItemAdded', '{"sku": "a\"b", "qty": [1, 2.5, null], "ok": true}', '{"user": "ann"}');
SELECT mask(data) FROM pg_logical_slot_get_changes('cdc', NULL, NULL);

-- Inserts into other tables, rolled-back and savepoint-rolled-back appends,
-- and statements that change nothing in a stream produce nothing.
INSERT INTO shop.not_a_stream VALUES (1, 'x');
UPDATE shop.not_a_stream SET note = 'y';
DELETE FROM shop.not_a_stream;
BEGIN;
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-2', 'ItemAdded', '{}');
ROLLBACK;
BEGIN;
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-2', 'Kept', '{}');
SAVEPOINT sp;
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-2', 'RolledBack', '{}');
ROLLBACK TO SAVEPOINT sp;
COMMIT;
SELECT count(*) AS messages, string_agg(data::jsonb ->> 'type', ',') AS types
FROM pg_logical_slot_get_changes('cdc', NULL, NULL);

-- Every field, parsed back as JSON: one message per event, in commit order,
-- across streams and transactions.
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-3', 'ItemAdded', '{"n": 1}'), ('cart-3', 'ItemAdded', '{"n": 2}');
SELECT * FROM event_log.append('shop.orders', 'order-1', 'Placed', '{"total": 10}', '{"trace": "t-1"}');
BEGIN;
INSERT INTO shop.orders (key, type, payload) VALUES ('order-1', 'Paid', '{}');
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-3', 'CheckedOut', '{}');
COMMIT;
CREATE TEMP TABLE got AS
SELECT row_number() OVER () AS n, lsn, xid, data::jsonb AS d
FROM pg_logical_slot_get_changes('cdc', NULL, NULL);
SELECT n, d ->> 'stream' AS stream, d -> 'shard' AS shard, d -> 'seq' AS seq, d ->> 'key' AS key,
       d -> 'version' AS version, d ->> 'type' AS type, d -> 'payload' AS payload, d -> 'metadata' AS metadata
FROM got ORDER BY n;
-- The event's fields match the stored row; lsn/xid/commit_lsn match the slot's view.
SELECT count(*) AS events,
       bool_and(e.event_id = (g.d ->> 'event_id')::uuid) AS event_ids_match,
       bool_and(e.recorded_at = (g.d ->> 'recorded_at')::timestamptz) AS recorded_at_matches,
       bool_and((g.d ->> 'xid')::xid = g.xid) AS xids_match,
       bool_and((g.d ->> 'lsn')::pg_lsn < (g.d ->> 'commit_lsn')::pg_lsn) AS lsn_before_commit,
       bool_and((g.d ->> 'commit_time')::timestamptz >= e.recorded_at) AS committed_after_recorded
FROM got g
JOIN (SELECT 'shop.carts' AS stream, shard, seq, event_id, recorded_at FROM shop.carts
      UNION ALL SELECT 'shop.orders', shard, seq, event_id, recorded_at FROM shop.orders) e
  ON e.stream = g.d ->> 'stream' AND e.shard = (g.d ->> 'shard')::int AND e.seq = (g.d ->> 'seq')::bigint;
-- Commit order: each message's commit_lsn is >= the previous one's.
SELECT bool_and(ok) AS in_commit_order FROM (
  SELECT (d ->> 'commit_lsn')::pg_lsn >= lag((d ->> 'commit_lsn')::pg_lsn, 1, '0/0') OVER (ORDER BY n) AS ok
  FROM got) s;

-- include-transaction adds begin and commit messages with the event count;
-- transactions without events are not announced.
INSERT INTO shop.not_a_stream VALUES (2);
INSERT INTO shop.orders (key, type, payload) VALUES ('order-2', 'Placed', '{}'), ('order-2', 'Paid', '{}');
SELECT mask(data) FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'include-transaction', 'on');

-- streams limits the output to the named streams; types to the named types.
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-4', 'ItemAdded', '{}');
SELECT data::jsonb ->> 'stream' AS stream, data::jsonb ->> 'type' AS type
FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.carts');
SELECT data::jsonb ->> 'stream' AS stream, data::jsonb ->> 'type' AS type
FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.orders, shop.carts', 'types', 'Paid,ItemAdded');

-- The stream's name is quoted only where SQL needs it, whatever the
-- session's quote_all_identifiers: consumers match on it.
SET quote_all_identifiers = on;
SELECT data::jsonb ->> 'stream' AS stream, data::jsonb ->> 'type' AS type
FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.carts');
RESET quote_all_identifiers;

-- Bad options are refused with a clear error.
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.nope');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'carts');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.not_a_stream');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', '');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'include-transaction', 'sometimes');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'format-version', '2');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'include-transaction', 'on', 'include-transaction', 'off');

-- streams takes names as SQL writes them: double quotes keep case, commas,
-- dots and blanks inside a name; unquoted names are folded to lower case.
-- Names are never looked up through search_path, so a table of the same
-- name first on the path changes nothing.
SELECT event_log.create_stream('shop."Cart Events"');
SELECT event_log.create_stream('shop."a,b"');
SELECT event_log.create_stream('shop."x.y z"');
SELECT event_log.create_stream('shop."say ""hi"""');
CREATE SCHEMA decoy;
SELECT event_log.create_stream('decoy.carts');
SET search_path = decoy, public;
INSERT INTO shop."Cart Events" (key, type, payload) VALUES ('c', 'Quoted', '{}');
INSERT INTO shop."a,b" (key, type, payload) VALUES ('c', 'Comma', '{}');
INSERT INTO shop."x.y z" (key, type, payload) VALUES ('c', 'DotSpace', '{}');
INSERT INTO shop."say ""hi""" (key, type, payload) VALUES ('c', 'DoubleQuote', '{}');
INSERT INTO decoy.carts (key, type, payload) VALUES ('c', 'Decoy', '{}');
SELECT data::jsonb ->> 'stream' AS stream, data::jsonb ->> 'type' AS type
FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop."a,b", shop."x.y z" ,SHOP."Cart Events"');
SELECT data::jsonb ->> 'stream' AS stream, data::jsonb ->> 'type' AS type
FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop."say ""hi"""');
-- The "stream" field of a message, given back as the option, selects that
-- stream and nothing else.
SELECT s.stream, count(*) AS events, bool_and(c.data::jsonb ->> 'stream' = s.stream) AS only_it
FROM (SELECT DISTINCT data::jsonb ->> 'stream' AS stream
      FROM pg_logical_slot_peek_changes('cdc', NULL, NULL)) s,
     LATERAL pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', s.stream) c
GROUP BY s.stream ORDER BY s.stream COLLATE "C";
-- Three-part names may name the current database.
SELECT count(*) FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams',
  quote_ident(current_database()) || '.shop."a,b"');
RESET search_path;

-- Names that cannot be read, or that name no stream, are refused.
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop."Cart Events');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.carts,,shop.orders');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.carts shop.orders');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.a,b');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.Cart Events');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'nowhere.carts');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'otherdb.shop.carts');
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.' || repeat('x', 64));
SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'streams', 'shop.carts', 'streams', 'shop.orders');
SELECT event_log.drop_stream(s::regclass) FROM unnest(ARRAY['shop."Cart Events"', 'shop."a,b"', 'shop."x.y z"',
  'shop."say ""hi"""', 'decoy.carts']) s;
DROP SCHEMA decoy;
SELECT count(*) FROM pg_logical_slot_get_changes('cdc', NULL, NULL);

-- A prepared transaction appears once, at COMMIT PREPARED.
BEGIN;
INSERT INTO shop.orders (key, type, payload) VALUES ('order-3', 'Prepared', '{}');
PREPARE TRANSACTION 'cdc_p1';
SELECT count(*) AS before_commit FROM pg_logical_slot_get_changes('cdc', NULL, NULL);
COMMIT PREPARED 'cdc_p1';
SELECT data::jsonb ->> 'type' AS type FROM pg_logical_slot_get_changes('cdc', NULL, NULL);

-- Renaming a stream and dropping one: events keep the name they had when
-- written, and decoding goes on.
INSERT INTO shop.orders (key, type, payload) VALUES ('order-4', 'BeforeRename', '{}');
ALTER TABLE shop.orders RENAME TO purchases;
INSERT INTO shop.purchases (key, type, payload) VALUES ('order-4', 'AfterRename', '{}');
SELECT event_log.drop_stream('shop.purchases');
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-5', 'AfterDrop', '{}');
SELECT data::jsonb ->> 'stream' AS stream, data::jsonb ->> 'type' AS type
FROM pg_logical_slot_get_changes('cdc', NULL, NULL);

-- A payload large enough to be stored out of line (TOAST) comes out whole,
-- and a stream created in the same transaction as its first events is seen.
BEGIN;
SELECT event_log.create_stream('shop.new_in_txn');
INSERT INTO shop.new_in_txn (key, type, payload) VALUES ('k', 'SameTransaction', '{}');
COMMIT;
INSERT INTO shop.carts (key, type, payload)
SELECT 'cart-6', 'Large', jsonb_build_object('blob', string_agg(md5(i::text), '')) FROM generate_series(1, 3000) i;
SELECT data::jsonb ->> 'stream' AS stream, data::jsonb ->> 'type' AS type,
       length(data::jsonb -> 'payload' ->> 'blob') AS blob_length,
       (data::jsonb -> 'payload') = (SELECT payload FROM shop.carts WHERE key = 'cart-6') AS payload_matches
FROM pg_logical_slot_get_changes('cdc', NULL, NULL);
SELECT event_log.drop_stream('shop.new_in_txn');

-- A big transaction is many small messages, not one big one.
INSERT INTO shop.carts (key, type, payload)
SELECT 'bulk-' || (i % 100), 'Bulk', jsonb_build_object('i', i) FROM generate_series(1, 20000) i;
SELECT count(*) AS messages, max(length(data)) < 400 AS all_small
FROM pg_logical_slot_get_changes('cdc', NULL, NULL);

-- types is a list as SQL writes one: blanks around a type are ignored, and
-- a type that holds a comma, a double quote or outer blanks is quoted.
INSERT INTO shop.carts (key, type, payload) VALUES
  ('cart-t', 'Order, placed', '{}'), ('cart-t', ' Padded ', '{}'),
  ('cart-t', 'Padded', '{}'), ('cart-t', 'say "hi"', '{}');
SELECT data::jsonb ->> 'type' AS type
FROM pg_logical_slot_peek_changes('cdc', NULL, NULL, 'types', '"Order, placed", " Padded "');
SELECT data::jsonb ->> 'type' AS type
FROM pg_logical_slot_get_changes('cdc', NULL, NULL, 'types', 'Padded , "say ""hi"""');

SELECT pg_drop_replication_slot('cdc');
SELECT event_log.drop_stream('shop.carts');
DROP SCHEMA shop CASCADE;
DROP FUNCTION mask(text);
DROP EXTENSION event_log;
