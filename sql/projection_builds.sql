-- Set-based builds: create_projection() and rebuild_projection() run each
-- handler once over a batch of events with distinct keys when every handler
-- provably touches only its own key's rows; the result is the same as
-- event by event.  event_log.projections.build_method says which way the
-- last build went, and why not set-based.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
SELECT event_log.create_stream('carts', 3);

-- 300 carts, 12 events each, interleaved with each other's (as a live shop
-- writes them): items added, some removed, some carts checked out half-way
-- and used again, a few keys appended to twice in a row.
INSERT INTO carts (key, type, payload)
SELECT 'cart-' || c,
       CASE WHEN step IN (4, 9) THEN 'ItemRemoved'
            WHEN step = 6 AND c % 4 = 0 THEN 'CheckedOut'
            ELSE 'ItemAdded' END,
       CASE WHEN step IN (4, 9) THEN jsonb_build_object('sku', 'sku-' || (c + step - 3) % 7, 'qty', 1)
            WHEN step = 6 AND c % 4 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('sku', 'sku-' || (c + step) % 7, 'qty', 1 + (c * step) % 3) END
FROM generate_series(0, 11) step, generate_series(1, 300) c
ORDER BY step, c;
INSERT INTO carts (key, type, payload)
SELECT 'cart-7', 'ItemAdded', jsonb_build_object('sku', 'sku-9', 'qty', 1)
FROM generate_series(1, 3);

-- The shop's cart_items: qualifies.
CREATE FUNCTION cart_handlers(target text) RETURNS jsonb LANGUAGE sql AS $f$
SELECT jsonb_build_object(
    'ItemAdded', format($$
        INSERT INTO %1$s AS c (cart, sku, qty)
        VALUES (e.key, e.payload->>'sku', (e.payload->>'qty')::int)
        ON CONFLICT (cart, sku) DO UPDATE SET qty = c.qty + excluded.qty $$, target),
    'ItemRemoved', format($$
        UPDATE %1$s SET qty = qty - (e.payload->>'qty')::int
         WHERE cart = e.key AND sku = e.payload->>'sku';
        DELETE FROM %1$s WHERE cart = e.key AND qty <= 0 $$, target),
    'CheckedOut', format($$ DELETE FROM %1$s WHERE e.key = cart $$, target))
$f$;
SELECT event_log.create_projection('cart_items', 'carts',
    columns  => 'cart text, sku text, qty int NOT NULL, PRIMARY KEY (cart, sku)',
    handlers => cart_handlers('cart_items'));
-- The same logic with a stable function in it: built event by event.
SELECT event_log.create_projection('cart_items_ref', 'carts',
    columns  => 'cart text, sku text, qty int NOT NULL, PRIMARY KEY (cart, sku)',
    handlers => cart_handlers('cart_items_ref') || jsonb_build_object('CheckedOut',
        'DELETE FROM cart_items_ref WHERE cart = e.key AND now() IS NOT NULL'));
SELECT projection, build_method FROM event_log.projections ORDER BY 1::text;
SELECT count(*) AS rows, sum(qty) AS items FROM cart_items;
SELECT count(*) AS differences
  FROM ((TABLE cart_items EXCEPT TABLE cart_items_ref)
        UNION ALL (TABLE cart_items_ref EXCEPT TABLE cart_items)) d;

-- Rebuilt with new logic, set-based again, still the same as event by event.
SELECT event_log.rebuild_projection('cart_items', handlers => cart_handlers('cart_items')
    || jsonb_build_object('CheckedOut', 'UPDATE cart_items SET qty = 0 WHERE cart = e.key'));
SELECT event_log.rebuild_projection('cart_items_ref', handlers => cart_handlers('cart_items_ref')
    || jsonb_build_object('CheckedOut',
        'UPDATE cart_items_ref SET qty = 0 WHERE cart = e.key AND clock_timestamp() IS NOT NULL'));
SELECT projection, build_method FROM event_log.projections ORDER BY 1::text;
SELECT count(*) AS differences
  FROM ((TABLE cart_items EXCEPT TABLE cart_items_ref)
        UNION ALL (TABLE cart_items_ref EXCEPT TABLE cart_items)) d;

-- An error in a set-based build is the error the event-by-event build
-- raises, for the same event: the failed group of chunks is rolled back and
-- the rest of the stream replayed event by event.  Nothing changes.
SELECT event_log.rebuild_projection('cart_items', handlers => cart_handlers('cart_items')
    || jsonb_build_object('ItemAdded', $$
        INSERT INTO cart_items (cart, sku, qty)
        VALUES (e.key, e.payload->>'sku',
                1 / CASE WHEN e.key = 'cart-150' AND e.version = 6 THEN 0 ELSE 1 END)
        ON CONFLICT (cart, sku) DO NOTHING $$));
SELECT event_log.rebuild_projection('cart_items_ref', handlers => cart_handlers('cart_items_ref')
    || jsonb_build_object('ItemAdded', $$
        INSERT INTO cart_items_ref (cart, sku, qty)
        VALUES (e.key, e.payload->>'sku',
                1 / CASE WHEN e.key = 'cart-150' AND e.version = 6 THEN 0 ELSE 1 END)
        ON CONFLICT (cart, sku) DO NOTHING RETURNING 1 $$));
SELECT projection, generation, build_method FROM event_log.projections ORDER BY 1::text;
SELECT shard, seq FROM carts WHERE key = 'cart-150' AND version = 6;

-- What keeps a build event by event: each of these is built correctly, and
-- build_method names the reason.
SELECT event_log.drop_projection('cart_items');
SELECT event_log.drop_projection('cart_items_ref');
CREATE FUNCTION try(handler text, columns text DEFAULT 'cart text PRIMARY KEY, n int')
RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    result text;
BEGIN
    PERFORM event_log.create_projection('p', 'carts', columns => columns,
        handlers => jsonb_build_object('*', handler));
    SELECT build_method INTO result FROM event_log.projections;
    PERFORM event_log.drop_projection('p');
    RETURN result;
EXCEPTION WHEN OTHERS THEN
    RETURN 'error: ' || SQLERRM;
END
$f$;
SELECT try($$ INSERT INTO p VALUES (e.key, 1) ON CONFLICT (cart) DO UPDATE SET n = p.n + 1 $$);
SELECT try($$ INSERT INTO p VALUES (e.key, 1) ON CONFLICT DO NOTHING $$);
SELECT try($$ INSERT INTO p VALUES (e.key || '', 1) ON CONFLICT (cart) DO NOTHING $$);
SELECT try($$ INSERT INTO p VALUES (e.key, 1) ON CONFLICT (cart) DO UPDATE SET n = e.version $$);
SELECT try($$ INSERT INTO p VALUES (e.key, 1) ON CONFLICT (cart) DO UPDATE SET cart = p.cart $$);
SELECT try($$ INSERT INTO p SELECT e.key, 1 ON CONFLICT (cart) DO NOTHING $$);
SELECT try($$ INSERT INTO p VALUES (e.key, 1), (e.key || '-2', 1) ON CONFLICT (cart) DO NOTHING $$);
SELECT try($$ INSERT INTO p VALUES (e.key, (SELECT count(*) FROM p)) ON CONFLICT (cart) DO NOTHING $$);
SELECT try($$ INSERT INTO p VALUES (e.key, 1) ON CONFLICT (cart) DO NOTHING RETURNING n $$);
SELECT try($$ INSERT INTO p VALUES (e.key, length(e::text)) ON CONFLICT (cart) DO NOTHING $$);
SELECT try($$ UPDATE p SET n = 1 WHERE cart = e.key || '' $$);
SELECT try($$ UPDATE p SET n = 1 WHERE cart = e.key OR n = 2 $$);
SELECT try($$ UPDATE p SET cart = e.key WHERE cart = e.key $$);
SELECT try($$ DELETE FROM p WHERE cart = e.key AND n < random() $$);
SELECT try($$ SELECT 1 $$);
SELECT try($$ INSERT INTO p VALUES (e.key, e.seq * 10 + e.shard) ON CONFLICT (cart) DO NOTHING $$,
           'cart text PRIMARY KEY, n bigint UNIQUE');
SELECT try($$ INSERT INTO p VALUES (e.key, 1) $$, 'cart text, n int');
SELECT try($$ INSERT INTO p (n, cart) VALUES (e.seq * 10 + e.shard, e.key) $$,
           'n bigint PRIMARY KEY, cart text');
SELECT try($$ INSERT INTO p (n, cart) VALUES (e.version, e.key) ON CONFLICT (n, cart) DO NOTHING $$,
           'n int, cart text, PRIMARY KEY (n, cart)');
SELECT try($$ INSERT INTO p (n, cart) VALUES (e.version, e.key) ON CONFLICT (n, cart) DO NOTHING $$,
           'n int, cart text, PRIMARY KEY (cart, n)');

-- An ON CONFLICT target that no unique index matches fails as it does event
-- by event, though the set-based build runs it as a plain INSERT, nothing
-- here conflicts, and every batch is full (no event goes event by event).
SELECT event_log.create_stream('even', 1);
INSERT INTO even (key, type, payload)
SELECT 'k' || k, 'E', '{}' FROM generate_series(1, 3) v, generate_series(1, 100) k
ORDER BY v, k;
SELECT event_log.create_projection('even_p', 'even', columns => 'k text, v int, PRIMARY KEY (k, v)',
    handlers => jsonb_build_object('E', $$
        INSERT INTO even_p VALUES (e.key, e.version) ON CONFLICT (k) DO NOTHING $$));
SELECT event_log.drop_stream('even');
SELECT try($$ INSERT INTO p VALUES (e.key, 1) ON CONFLICT (cart) DO NOTHING $$,
           'cart bpchar PRIMARY KEY, n int');
CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
SELECT try($$ INSERT INTO p VALUES (e.key, 1) ON CONFLICT (cart) DO NOTHING $$,
           'cart text COLLATE nocase PRIMARY KEY, n int');
SELECT try($$ INSERT INTO p VALUES (e.key, 1) ON CONFLICT (cart) DO NOTHING $$,
           'cart text PRIMARY KEY, n int, EXCLUDE USING btree (cart COLLATE nocase WITH =)');
DROP COLLATION nocase;

-- Few keys make small batches (a batch holds one event per key), which are
-- applied event by event, in a handful of subtransactions.
SELECT event_log.create_stream('pairs', 1);
INSERT INTO pairs (key, type, payload)
SELECT 'k' || i % 2, 'Added', '{}' FROM generate_series(1, 2000) i;
SELECT event_log.create_projection('pair_counts', 'pairs',
    columns  => 'k text PRIMARY KEY, n int NOT NULL',
    handlers => jsonb_build_object('Added', $$
        INSERT INTO pair_counts AS c VALUES (e.key, 1)
        ON CONFLICT (k) DO UPDATE SET n = c.n + 1 $$));
SELECT pg_current_xact_id() AS before \gset
SELECT event_log.rebuild_projection('pair_counts');
SELECT pg_current_xact_id()::text::bigint - :'before'::text::bigint < 10 AS few_transaction_ids;
SELECT build_method FROM event_log.projections WHERE projection = 'pair_counts'::regclass;
SELECT * FROM pair_counts ORDER BY k;
SELECT event_log.drop_projection('pair_counts');
SELECT event_log.drop_stream('pairs');

-- A long stream with many keys: the build reads it in chunks, sorts each by
-- key and applies it by ranges of keys, and runs INSERT ... ON CONFLICT as a
-- plain INSERT until one conflicts.  'lines' never conflicts; 'totals'
-- conflicts only near the end of the stream.  Both equal their
-- event-by-event twins (made so by a stable function).
SELECT event_log.create_stream('orders', 1);
INSERT INTO orders (key, type, payload)
SELECT 'order-' || o, 'Line', jsonb_build_object('line', step, 'qty', 1 + (o + step) % 5)
FROM generate_series(1, 50) step, generate_series(1, 1500) o
ORDER BY step, o;
CREATE FUNCTION order_handlers(target text, tag text) RETURNS jsonb LANGUAGE sql AS $f$
SELECT jsonb_build_object('Line', format($$
    INSERT INTO %1$s AS t (o, line, qty)
    VALUES (e.key, (e.payload->>'line')::int %% %2$s, (e.payload->>'qty')::int)
    ON CONFLICT (o, line) DO UPDATE SET qty = t.qty + excluded.qty %3$s $$,
    target, CASE WHEN target LIKE 'totals%' THEN '48' ELSE '1000' END, tag))
$f$;
SELECT event_log.create_projection(name, 'orders',
           columns  => 'o text, line int, qty int NOT NULL, PRIMARY KEY (o, line)',
           handlers => order_handlers(name, tag))
  FROM (VALUES ('lines', ''), ('lines_ref', 'WHERE now() IS NOT NULL'),
               ('totals', ''), ('totals_ref', 'WHERE now() IS NOT NULL')) v(name, tag);
SELECT projection, build_method FROM event_log.projections
 WHERE projection::text IN ('lines', 'totals') ORDER BY 1::text;
SELECT (SELECT count(*) FROM lines) AS lines, (SELECT sum(qty) FROM lines) AS line_qty,
       (SELECT count(*) FROM totals) AS totals, (SELECT sum(qty) FROM totals) AS total_qty;
SELECT count(*) AS differences
  FROM ((TABLE lines EXCEPT TABLE lines_ref) UNION ALL (TABLE lines_ref EXCEPT TABLE lines)
        UNION ALL (TABLE totals EXCEPT TABLE totals_ref)
        UNION ALL (TABLE totals_ref EXCEPT TABLE totals)) d;
SELECT count(event_log.drop_projection(p))
  FROM unnest('{lines,lines_ref,totals,totals_ref}'::text[]) p;
SELECT event_log.drop_stream('orders');

-- A few busy keys among many quiet ones: the busy keys' later events,
-- too few per range for a batch, are put off to the end of the chunk and
-- applied rank by rank over all ranges.  Same result as event by event.
SELECT event_log.create_stream('busy', 1);
INSERT INTO busy (key, type, payload)
SELECT CASE WHEN i % 4 = 0 THEN 'busy-' || i % 3 ELSE 'quiet-' || i % 900 END,
       'Hit', jsonb_build_object('n', i % 7)
FROM generate_series(1, 4000) i;
SELECT event_log.create_projection(name, 'busy',
           columns  => 'k text PRIMARY KEY, hits int NOT NULL, total int NOT NULL',
           handlers => jsonb_build_object('Hit', format($$
               INSERT INTO %1$s AS t VALUES (e.key, 1, (e.payload->>'n')::int)
               ON CONFLICT (k) DO UPDATE SET hits = t.hits + 1, total = t.total + excluded.total
               %2$s $$, name, tag)))
  FROM (VALUES ('hits', ''), ('hits_ref', 'WHERE now() IS NOT NULL')) v(name, tag);
SELECT projection, build_method FROM event_log.projections WHERE projection = 'hits'::regclass;
SELECT k, hits, total FROM hits WHERE k LIKE 'busy-%' ORDER BY k;
SELECT count(*) AS differences
  FROM ((TABLE hits EXCEPT TABLE hits_ref) UNION ALL (TABLE hits_ref EXCEPT TABLE hits)) d;
SELECT event_log.drop_projection('hits');
SELECT event_log.drop_projection('hits_ref');
SELECT event_log.drop_stream('busy');

-- A state projection (reducer) reads its previous state in a subquery:
-- built event by event.
SELECT event_log.create_projection('cart_state', 'carts',
    reducer => $$ jsonb_set(state, '{n}', (coalesce((state->>'n')::int, 0) + 1)::text::jsonb) $$,
    initial => '{}');
SELECT build_method FROM event_log.projections WHERE projection = 'cart_state'::regclass;
SELECT key, version, state FROM cart_state WHERE key IN ('cart-7', 'cart-150') ORDER BY key;
SELECT count(*) FROM cart_state s
  JOIN (SELECT key, max(version) AS v, count(*) AS n FROM carts GROUP BY key) c USING (key)
 WHERE s.version = c.v AND (s.state->>'n')::int = c.n;

SELECT event_log.drop_projection('cart_state');
SELECT event_log.drop_stream('carts');
DROP EXTENSION event_log;
