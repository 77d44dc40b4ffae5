-- Projections: read models kept from a stream, queried as views.
CREATE EXTENSION event_log;
CREATE SCHEMA shop;
SELECT event_log.create_stream('shop.carts', 4);

-- History that exists before the projection does.
INSERT INTO shop.carts (key, type, payload) VALUES
    ('cart-1', 'ItemAdded',   '{"sku": "apple", "qty": 2}'),
    ('cart-1', 'ItemAdded',   '{"sku": "pear",  "qty": 1}'),
    ('cart-2', 'ItemAdded',   '{"sku": "apple", "qty": 5}'),
    ('cart-1', 'ItemRemoved', '{"sku": "apple", "qty": 1}');

-- An inline projection: one row per cart and sku.  Handlers are SQL per
-- event type; they see the event as e and write to the view by its name.
SELECT event_log.create_projection('shop.cart_items', 'shop.carts',
    columns  => 'cart text, sku text, qty int NOT NULL CHECK (qty >= 0), PRIMARY KEY (cart, sku)',
    handlers => jsonb_build_object(
        'ItemAdded', $$
            INSERT INTO cart_items AS c (cart, sku, qty)
            VALUES (e.key, e.payload->>'sku', (e.payload->>'qty')::int)
            ON CONFLICT (cart, sku) DO UPDATE SET qty = c.qty + excluded.qty $$,
        'ItemRemoved', $$
            UPDATE cart_items SET qty = qty - (e.payload->>'qty')::int
             WHERE cart = e.key AND sku = e.payload->>'sku';
            DELETE FROM cart_items WHERE cart = e.key AND qty = 0 $$,
        'CheckedOut', $$
            DELETE FROM cart_items WHERE cart = e.key $$));

-- Built from history.
SELECT * FROM shop.cart_items ORDER BY cart, sku;
SELECT projection, stream, mode, build_table, generation, events
  FROM event_log.projections;

-- Appends of every kind update it in the same transaction.
BEGIN;
INSERT INTO shop.carts (key, type, payload)
VALUES ('cart-3', 'ItemAdded', '{"sku": "kiwi", "qty": 3}');
SELECT * FROM event_log.append('shop.carts', 'cart-2', 'CheckedOut', '{}');
SELECT * FROM shop.cart_items ORDER BY cart, sku;
ROLLBACK;
-- ... and roll back with it.
SELECT * FROM shop.cart_items ORDER BY cart, sku;

COPY shop.carts (key, type, payload) FROM stdin;
cart-3	ItemAdded	{"sku": "kiwi", "qty": 3}
cart-2	CheckedOut	{}
\.
INSERT INTO shop.carts (key, type, payload)
SELECT 'cart-4', 'ItemAdded', jsonb_build_object('sku', 'sku-' || i, 'qty', i)
  FROM generate_series(1, 3) i;
SELECT * FROM shop.cart_items ORDER BY cart, sku;

-- A handler error fails the append, names the projection, and changes
-- nothing: qty may not go below zero.
INSERT INTO shop.carts (key, type, payload) VALUES
    ('cart-5', 'ItemAdded',   '{"sku": "fig", "qty": 1}'),
    ('cart-1', 'ItemRemoved', '{"sku": "pear", "qty": 5}');
SELECT count(*) FROM shop.carts WHERE key = 'cart-5';

-- Aggregate state: a reducer folds each key's events into a jsonb state,
-- stored with the version it reflects.
SELECT event_log.create_projection('shop.cart_state', 'shop.carts',
    reducer => $$
        CASE e.type
        WHEN 'ItemAdded' THEN jsonb_set(state, ARRAY['items', e.payload->>'sku'],
            to_jsonb(coalesce((state #>> ARRAY['items', e.payload->>'sku'])::int, 0)
                     + (e.payload->>'qty')::int))
        WHEN 'ItemRemoved' THEN jsonb_set(state, ARRAY['items', e.payload->>'sku'],
            to_jsonb((state #>> ARRAY['items', e.payload->>'sku'])::int
                     - (e.payload->>'qty')::int))
        WHEN 'CheckedOut' THEN state || '{"checked_out": true}'
        ELSE state
        END $$,
    initial => '{"items": {}, "checked_out": false}');
SELECT key, version, state FROM shop.cart_state ORDER BY key;

-- A command handler loads state and version in one indexed read, then
-- appends with that version as expected_version.
SELECT version AS v FROM shop.cart_state WHERE key = 'cart-1' \gset
SELECT version FROM event_log.append('shop.carts', 'cart-1', 'CheckedOut', '{}',
                                     expected_version => :v);
SELECT key, version, state FROM shop.cart_state WHERE key = 'cart-1';
-- The same command, retried with the old version, conflicts.
SELECT version FROM event_log.append('shop.carts', 'cart-1', 'CheckedOut', '{}',
                                     expected_version => :v);

-- Rebuild with new logic: from now on a removal deletes the line outright.
-- History is replayed into a new build table and the view swapped to it.
SELECT event_log.rebuild_projection('shop.cart_items',
    handlers => jsonb_build_object(
        'ItemAdded', $$
            INSERT INTO cart_items AS c (cart, sku, qty)
            VALUES (e.key, e.payload->>'sku', (e.payload->>'qty')::int)
            ON CONFLICT (cart, sku) DO UPDATE SET qty = c.qty + excluded.qty $$,
        'ItemRemoved', $$
            DELETE FROM cart_items WHERE cart = e.key AND sku = e.payload->>'sku' $$,
        'CheckedOut', $$
            DELETE FROM cart_items WHERE cart = e.key $$));
SELECT * FROM shop.cart_items ORDER BY cart, sku;
SELECT build_table, generation, events, rebuilt_at IS NOT NULL AS rebuilt
  FROM event_log.projections WHERE projection = 'shop.cart_items'::regclass;
SELECT count(*) AS old_build_tables FROM pg_class WHERE relname = 'cart_items$1';
-- The new logic applies to new events too.
INSERT INTO shop.carts (key, type, payload)
VALUES ('cart-4', 'ItemRemoved', '{"sku": "sku-2", "qty": 1}');
SELECT * FROM shop.cart_items WHERE cart = 'cart-4' ORDER BY sku;

-- A rebuild may add columns at the end.
SELECT event_log.rebuild_projection('shop.cart_items',
    columns => 'cart text, sku text, qty int NOT NULL, added_at timestamptz, PRIMARY KEY (cart, sku)',
    handlers => jsonb_build_object(
        'ItemAdded', $$
            INSERT INTO cart_items AS c (cart, sku, qty, added_at)
            VALUES (e.key, e.payload->>'sku', (e.payload->>'qty')::int, e.recorded_at)
            ON CONFLICT (cart, sku) DO UPDATE SET qty = c.qty + excluded.qty $$,
        'CheckedOut', $$ DELETE FROM cart_items WHERE cart = e.key $$));
SELECT cart, sku, qty, added_at IS NOT NULL AS has_added_at
  FROM shop.cart_items ORDER BY cart, sku;
-- ... but not drop or change them.
SELECT event_log.rebuild_projection('shop.cart_items',
    columns => 'cart text, sku text, PRIMARY KEY (cart, sku)',
    handlers => '{"ItemAdded": "INSERT INTO cart_items VALUES (e.key, e.payload->>''sku'') ON CONFLICT DO NOTHING"}');
SELECT generation FROM event_log.projections WHERE projection = 'shop.cart_items'::regclass;

-- An async projection follows the log after commit, from a checkpoint per
-- shard; event_log.run_projections() catches it up.
SELECT event_log.create_projection('shop.sku_sales', 'shop.carts',
    columns  => 'sku text PRIMARY KEY, added bigint NOT NULL',
    handlers => jsonb_build_object(
        'ItemAdded', $$
            INSERT INTO sku_sales AS s VALUES (e.payload->>'sku', (e.payload->>'qty')::int)
            ON CONFLICT (sku) DO UPDATE SET added = s.added + excluded.added $$,
        'Refunded', $$
            UPDATE sku_sales SET added = added - (e.payload->>'qty')::int
             WHERE sku = e.payload->>'sku' $$),
    mode => 'async');
SELECT * FROM shop.sku_sales ORDER BY sku;
INSERT INTO shop.carts (key, type, payload) VALUES
    ('cart-6', 'ItemAdded', '{"sku": "apple", "qty": 10}'),
    ('cart-7', 'ItemAdded', '{"sku": "plum", "qty": 1}');
SELECT * FROM shop.sku_sales WHERE sku IN ('apple', 'plum') ORDER BY sku;
SELECT sum(lag_events) AS lag, bool_or(lag_time > interval '0') AS behind
  FROM event_log.projection_lag WHERE projection = 'shop.sku_sales'::regclass;
SELECT event_log.run_projections();
SELECT * FROM shop.sku_sales WHERE sku IN ('apple', 'plum') ORDER BY sku;
SELECT sum(lag_events) AS lag, bool_or(lag_time > interval '0') AS behind
  FROM event_log.projection_lag WHERE projection = 'shop.sku_sales'::regclass;
SELECT event_log.run_projections();

-- A failing async handler stops its shard at that event, records the
-- error, and resumes from it once fixed.
INSERT INTO shop.carts (key, type, payload) VALUES
    ('cart-8', 'ItemAdded', '{"sku": "melon", "qty": 3}'),
    ('cart-8', 'Refunded',  '{"sku": "melon", "qty": "all"}'),
    ('cart-8', 'ItemAdded', '{"sku": "melon", "qty": 2}');
SELECT event_log.run_projections();
SELECT shard, applied_seq, lag_events, error, error_seq IS NOT NULL AS has_seq
  FROM event_log.projection_lag
 WHERE projection = 'shop.sku_sales'::regclass AND error IS NOT NULL;
SELECT * FROM shop.sku_sales WHERE sku = 'melon';
SELECT event_log.alter_projection('shop.sku_sales',
    handlers => jsonb_build_object(
        'ItemAdded', $$
            INSERT INTO sku_sales AS s VALUES (e.payload->>'sku', (e.payload->>'qty')::int)
            ON CONFLICT (sku) DO UPDATE SET added = s.added + excluded.added $$,
        'Refunded', $$
            UPDATE sku_sales
               SET added = CASE WHEN e.payload->>'qty' = 'all' THEN 0
                                ELSE added - (e.payload->>'qty')::int END
             WHERE sku = e.payload->>'sku' $$));
SELECT event_log.run_projections();
SELECT * FROM shop.sku_sales WHERE sku = 'melon';
SELECT count(*) AS errors FROM event_log.projection_lag WHERE error IS NOT NULL;

-- Rebuilding an async projection resets its checkpoints to what it replayed.
-- It returns the number of events replayed: every event of the stream,
-- also those of types no handler takes (CheckedOut here).
SELECT event_log.rebuild_projection('shop.sku_sales') = count(*) AS replayed_all,
       count(*) FILTER (WHERE type NOT IN ('ItemAdded', 'Refunded')) > 0 AS some_unhandled
  FROM shop.carts;
SELECT sum(lag_events) AS lag FROM event_log.projection_lag
 WHERE projection = 'shop.sku_sales'::regclass;

-- Handlers run sandboxed: as the projection's owner, with settings they
-- change undone afterwards; a handler may call PL/pgSQL with the whole
-- event, and may append (here, a gift for big lines), which runs the same
-- handler inside itself, without mixing up the two events or whose rights
-- the appender has afterwards.
CREATE FUNCTION shop.big_line(e event_log.event) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'nowhere', false);
    RETURN (e.payload->>'qty')::int >= 10;
END $$;
SELECT event_log.create_projection('shop.big_lines', 'shop.carts',
    columns  => 'cart text, sku text, PRIMARY KEY (cart, sku)',
    handlers => jsonb_build_object('ItemAdded', $$
        SELECT event_log.append('shop.carts', e.key, 'ItemAdded', '{"sku": "gift", "qty": 1}')
         WHERE shop.big_line(e);
        INSERT INTO big_lines SELECT e.key, e.payload->>'sku' WHERE shop.big_line(e)
        ON CONFLICT DO NOTHING $$));
CREATE ROLE el_buyer;
GRANT USAGE ON SCHEMA shop TO el_buyer;
GRANT INSERT ON shop.carts TO el_buyer;
SET ROLE el_buyer;
SHOW search_path;
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-10', 'ItemAdded', '{"sku": "melon", "qty": 12}');
SELECT current_user;
SHOW search_path;
RESET ROLE;
SELECT * FROM shop.big_lines;
SELECT key, version, type, payload->>'sku' AS sku FROM shop.carts WHERE key = 'cart-10' ORDER BY version;
SELECT event_log.drop_projection('shop.big_lines');
DROP FUNCTION shop.big_line(event_log.event);
REVOKE ALL ON shop.carts FROM el_buyer;
REVOKE ALL ON SCHEMA shop FROM el_buyer;
DROP ROLE el_buyer;

-- What belongs to a projection is guarded like a stream.
DROP VIEW shop.cart_items;
DROP TABLE shop."cart_items$3" CASCADE;
-- (terse: the trigger's name holds the view's oid)
\set VERBOSITY terse
DO $$
BEGIN
    EXECUTE format('ALTER TABLE shop.carts DISABLE TRIGGER %I',
                   'event_log_projection_' || 'shop.cart_items'::regclass::oid);
END $$;
DO $$
BEGIN
    EXECUTE format('DROP TRIGGER %I ON shop.carts',
                   'event_log_projection_' || 'shop.cart_items'::regclass::oid);
END $$;
\set VERBOSITY default
SELECT event_log.drop_stream('shop.carts');

-- Bad input: clear errors, nothing created.
SELECT event_log.create_projection(NULL, 'shop.carts', 'a int', '{"X": "SELECT 1"}');
SELECT event_log.create_projection('shop.p', NULL, 'a int', '{"X": "SELECT 1"}');
SELECT event_log.create_projection('shop.p', 'shop.cart_items', 'a int', '{"X": "SELECT 1"}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '{"X": "SELECT 1"}', mode => 'lazy');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', NULL);
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '["SELECT 1"]');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '{}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '{"X": 1}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '{"": "SELECT 1"}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int); DROP TABLE shop.carts; --', '{"X": "SELECT 1"}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '{"X": "SELEC 1"}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '{"X": "DROP TABLE shop.carts"}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '{"X": "INSERT INTO p VALUES (e.nope)"}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'key text', '{"X": "SELECT e.key FROM p e"}');
SELECT event_log.create_projection('shop.p', 'shop.carts', 'a int', '{"X": "SELECT 1"}', reducer => 'state');
SELECT event_log.create_projection('shop.p', 'shop.carts', reducer => 'state); DROP TABLE shop.carts; SELECT (1');
SELECT event_log.create_projection('shop.p', 'shop.carts', reducer => ' ');
SELECT event_log.create_projection('shop.p', 'shop.carts', reducer => '/* nothing */');
SELECT event_log.create_projection('shop.p', 'shop.carts', reducer => '-- nothing');
-- A reducer is checked as its handler runs it: with standard_conforming_strings
-- on, whatever the session says ('\' is one backslash, and the comment after
-- the string is a comment).
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT event_log.create_projection('shop.bs', 'shop.carts', reducer => $r$to_jsonb('\'::text) -- note$r$);
RESET standard_conforming_strings;
RESET escape_string_warning;
SELECT key, state FROM shop.bs ORDER BY key LIMIT 1;
SELECT event_log.drop_projection('shop.bs');
SELECT event_log.create_projection('shop.p', 'shop.carts', '', '{"X": "SELECT 1"}');
SELECT event_log.create_projection('shop.p', 'shop.carts', '  ', '{"X": "SELECT 1"}');
SELECT event_log.create_projection('shop.cart_items', 'shop.carts', 'a int', '{"X": "SELECT 1"}');
SELECT event_log.create_projection('event_log.p', 'shop.carts', 'a int', '{"X": "SELECT 1"}');
SELECT event_log.create_projection('shop.' || repeat('p', 62), 'shop.carts', 'a int', '{"X": "SELECT 1"}');
SELECT event_log.rebuild_projection('shop.nope');
SELECT event_log.rebuild_projection('shop.carts');
SELECT event_log.rebuild_projection('shop.cart_state', handlers => '{"X": "SELECT 1"}');
SELECT event_log.run_projections(max_events => 0);
SELECT event_log.run_projections('shop.cart_items');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT event_log.rebuild_projection('shop.cart_items');
ROLLBACK;
SELECT count(*) AS projections FROM event_log.projections;
SELECT count(*) AS stray_relations FROM pg_class WHERE relname LIKE 'p%' AND relnamespace = 'shop'::regnamespace;

-- Privileges: handlers run as the projection's owner, so an appender needs
-- no rights on the read model; managing a projection takes ownership.
CREATE ROLE el_clerk;
GRANT USAGE ON SCHEMA shop TO el_clerk;
GRANT INSERT ON shop.carts TO el_clerk;
SET ROLE el_clerk;
INSERT INTO shop.carts (key, type, payload) VALUES ('cart-9', 'ItemAdded', '{"sku": "lime", "qty": 1}');
SELECT * FROM shop.cart_items WHERE cart = 'cart-9';
SELECT event_log.rebuild_projection('shop.cart_items');
SELECT event_log.drop_projection('shop.cart_items');
RESET ROLE;
SELECT cart, sku, qty FROM shop.cart_items WHERE cart = 'cart-9';
CREATE ROLE el_analyst;
GRANT USAGE, CREATE ON SCHEMA shop TO el_analyst;
GRANT SELECT ON shop.carts TO el_analyst;
SET ROLE el_analyst;
SELECT event_log.create_projection('shop.lines', 'shop.carts', 'n bigint', '{"*": "UPDATE lines SET n = n + 1"}');
SELECT event_log.create_projection('shop.lines', 'shop.carts', 'key text PRIMARY KEY',
    '{"ItemAdded": "INSERT INTO lines VALUES (e.key) ON CONFLICT DO NOTHING"}', mode => 'async');
SELECT count(*) FROM shop.lines;
SELECT event_log.drop_projection('shop.lines');
RESET ROLE;

-- Dropping projections removes their view, build table and trigger; then
-- the stream can go.
SELECT event_log.drop_projection('shop.cart_items');
SELECT event_log.drop_projection('shop.cart_state');
SELECT event_log.drop_projection('shop.sku_sales');
SELECT count(*) AS checkpoints_left FROM event_log.projection_offsets;
SELECT count(*) AS relations FROM pg_class WHERE relnamespace = 'shop'::regnamespace AND relkind IN ('r', 'v');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'shop.carts'::regclass ORDER BY tgname;
SELECT event_log.drop_stream('shop.carts') > 0 AS dropped;
DROP SCHEMA shop CASCADE;
DROP ROLE el_clerk;
DROP ROLE el_analyst;
DROP EXTENSION event_log;
