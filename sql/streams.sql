-- Streams: creating them, appending with plain INSERT and COPY, reading.
CREATE EXTENSION event_log;
SET client_min_messages = warning;

-- A stream is a table with a fixed column set; shards default to 1.
SELECT event_log.create_stream('orders');
SELECT event_log.create_stream('carts', 4);
CREATE SCHEMA shop;
SELECT event_log.create_stream('shop."Cart Events"', 2);
SELECT stream, shards FROM event_log.streams ORDER BY stream::text;
\d carts

-- The key-to-shard function is part of the format: these values never change.
SELECT k, event_log.shard_for(k, 4) AS of_4, event_log.shard_for(k, 16) AS of_16
FROM (VALUES ('cart-1'), ('cart-2'), ('cart-3'), (''), ('ünïcødé')) AS v(k);

-- Plain INSERT is an append: shard, seq, version, event_id, recorded_at are assigned.
BEGIN;
INSERT INTO carts (key, type, payload) VALUES
  ('cart-1', 'ItemAdded', '{"sku": "apple", "qty": 2}'),
  ('cart-2', 'ItemAdded', '{"sku": "pear", "qty": 1}'),
  ('cart-1', 'ItemRemoved', '{"sku": "apple"}'),
  ('cart-3', 'ItemAdded', '{"sku": "fig", "qty": 5}'),
  ('cart-1', 'CheckedOut', '{}');
SELECT shard, seq, key, version, type, payload,
       event_id IS NOT NULL AS has_id, recorded_at = now() AS recorded_now
FROM carts ORDER BY shard, seq;
COMMIT;

-- Every key lives in the shard shard_for() names.
SELECT count(*) AS misplaced FROM carts WHERE shard <> event_log.shard_for(key, 4);

-- COPY appends too, with metadata and a caller-chosen event_id.
COPY carts (key, type, payload, metadata, event_id) FROM stdin;
cart-2	ItemAdded	{"sku": "kiwi", "qty": 3}	{"user": "ann"}	00000000-0000-4000-8000-000000000001
cart-4	ItemAdded	{"sku": "plum", "qty": 1}	\N	00000000-0000-4000-8000-000000000002
\.
SELECT shard, seq, key, version, metadata, event_id FROM carts
WHERE event_id::text LIKE '00000000-%' ORDER BY event_id;

-- seq is dense from 1 in every shard; version is dense from 1 for every key.
SELECT shard, count(*) AS events, min(seq), max(seq) FROM carts GROUP BY shard ORDER BY shard;
SELECT key, array_agg(version ORDER BY version) AS versions FROM carts GROUP BY key ORDER BY key;

-- read(): a shard's events after an offset, in seq order, up to max_count.
SELECT shard, seq, key, version, type FROM event_log.read('carts', event_log.shard_for('cart-1', 4));
SELECT shard, seq, key, version FROM event_log.read('carts', event_log.shard_for('cart-1', 4), after_seq => 1, max_count => 1);
SELECT count(*) FROM event_log.read('carts', 0, max_count => 0);

-- replay(): one key's events in version order, optionally after a version.
SELECT version, type, payload FROM event_log.replay('carts', 'cart-1');
SELECT version, type FROM event_log.replay('carts', 'cart-1', after_version => 2);
SELECT count(*) FROM event_log.replay('carts', 'no-such-cart');

-- read() and replay() return event_log.event rows.
SELECT pg_typeof(e) FROM event_log.read('carts', 0) e LIMIT 1;

-- Streams may grow extra columns and indexes; the contract columns stay.
ALTER TABLE carts ADD COLUMN tenant text;
CREATE INDEX carts_sku ON carts ((payload ->> 'sku'));
INSERT INTO carts (key, type, payload, tenant) VALUES ('cart-4', 'CheckedOut', '{}', 'acme');
SELECT key, version, tenant FROM carts WHERE key = 'cart-4' ORDER BY version;
SELECT version, type FROM event_log.replay('carts', 'cart-4');

-- Renaming a stream keeps it a stream (the registry holds its OID).
ALTER TABLE orders RENAME TO purchase_orders;
SELECT * FROM event_log.append('purchase_orders', 'po-1', 'Placed', '{}');
SELECT stream FROM event_log.streams ORDER BY stream::text;

-- drop_stream() is the one way to remove a stream; it records what went.
SELECT event_log.drop_stream('purchase_orders');
SELECT event_log.drop_stream('shop."Cart Events"');
SELECT stream, shards, events, dropped_by FROM event_log.dropped_streams ORDER BY stream;
SELECT stream FROM event_log.streams;
SELECT event_log.drop_stream('carts');
DROP SCHEMA shop;

-- drop_stream(..., cascade => true): the stream goes with its projections
-- (inline, async, state; another role's too) and consumer groups, in one
-- transaction.
CREATE SCHEMA td;
CREATE ROLE regress_el_td;
GRANT USAGE, CREATE ON SCHEMA td TO regress_el_td;
SELECT event_log.create_stream('td.orders', 2);
INSERT INTO td.orders (key, type, payload)
SELECT 'order-' || i, 'Placed', jsonb_build_object('n', i) FROM generate_series(1, 6) i;
GRANT SELECT ON td.orders TO regress_el_td;
SELECT event_log.create_projection('td.order_list', 'td.orders',
    columns  => 'key text PRIMARY KEY',
    handlers => jsonb_build_object('Placed', 'INSERT INTO order_list VALUES (e.key)'));
SELECT event_log.create_projection('td.order_state', 'td.orders',
    reducer => $$jsonb_build_object('n', coalesce((state->>'n')::int, 0) + 1)$$);
SET ROLE regress_el_td;
SELECT event_log.create_projection('td.order_keys', 'td.orders',
    columns  => 'key text PRIMARY KEY',
    handlers => jsonb_build_object('*', 'INSERT INTO order_keys VALUES (e.key) ON CONFLICT DO NOTHING'),
    mode     => 'async');
RESET ROLE;
CREATE VIEW td.first_orders AS SELECT * FROM td.order_list WHERE key < 'order-3';
SELECT count(*) FROM event_log.poll('mailer', 'td.orders', max_count => 10);
SELECT event_log.commit_offset('mailer', 'td.orders', 0, 1);
SELECT projection, mode FROM event_log.projections ORDER BY projection::text;
SELECT (SELECT count(*) FROM event_log.projection_offsets) AS checkpoints,
       (SELECT count(*) FROM event_log.consumer_groups) AS groups,
       (SELECT count(*) FROM event_log.consumer_offsets) AS offsets,
       (SELECT count(*) FROM event_log.consumer_members) AS members;
-- Without cascade (or with cascade => false) it is refused, as before.
SELECT event_log.drop_stream('td.orders');
SELECT event_log.drop_stream('td.orders', cascade => false);
-- cascade must be given; only the stream's owner may drop it.
SELECT event_log.drop_stream('td.orders', NULL);
SET ROLE regress_el_td;
SELECT event_log.drop_stream('td.orders', cascade => true);
RESET ROLE;
-- DROP TABLE ... CASCADE and DROP SCHEMA ... CASCADE say what to call.
DROP TABLE td.orders CASCADE;
DROP SCHEMA td CASCADE;
-- All or nothing: rolled back, everything is still there.
BEGIN;
SELECT event_log.drop_stream('td.orders', cascade => true);
ROLLBACK;
SELECT count(*) AS projections FROM event_log.projections;
SELECT count(*) FROM td.order_keys;
-- The view another object depends on stays, with its build table, no longer
-- a projection (a NOTICE says so); everything else goes.
SET client_min_messages = notice;
SELECT event_log.drop_stream('td.orders', cascade => true);
SET client_min_messages = warning;
SELECT stream, shards, events, dropped_by = current_user AS by_me
FROM event_log.dropped_streams WHERE stream = 'td.orders';
SELECT (SELECT count(*) FROM event_log.projections) AS projections,
       (SELECT count(*) FROM event_log.projection_offsets) AS checkpoints,
       (SELECT count(*) FROM event_log.consumer_groups) AS groups,
       (SELECT count(*) FROM event_log.consumer_offsets) AS offsets,
       (SELECT count(*) FROM event_log.consumer_members) AS members,
       (SELECT count(*) FROM event_log.streams) AS streams,
       (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'event_log%') AS triggers;
SELECT relname, relkind FROM pg_class
WHERE relnamespace = 'td'::regnamespace AND relkind IN ('r', 'v') ORDER BY relname;
SELECT count(*) FROM td.first_orders;
DROP SCHEMA td CASCADE;
DROP ROLE regress_el_td;
DROP EXTENSION event_log;
