-- ==========================================================================
--  event_log demo: an online shop's shopping carts, event-sourced.
--  Every change to a cart is an immutable event in a sharded stream.
-- ==========================================================================

CREATE EXTENSION event_log;
CREATE SCHEMA shop;

-- 0. The warehouse team will follow every event from outside the database,
--    through a logical replication slot served by the event_log output plugin.
--    A slot sees what is committed after it was created, so create it first.
SELECT 'slot created' AS shop_feed FROM pg_create_logical_replication_slot('shop_feed', 'event_log');

-- 1. A stream with 4 shards. A cart's key decides its shard, forever.
SELECT event_log.create_stream('shop.cart_events', shards => 4);
SELECT key, event_log.shard_for(key, 4) AS shard
FROM (VALUES ('cart-ann'), ('cart-dee'), ('cart-hal'), ('cart-cid')) AS carts(key);

-- 2. Appending is a plain INSERT (or COPY): the extension assigns the shard,
--    the offset (seq) inside the shard, the cart's version and an event_id.
INSERT INTO shop.cart_events (key, type, payload) VALUES
  ('cart-ann', 'ItemAdded',   '{"sku": "apple", "qty": 3, "price": 0.50}'),
  ('cart-hal', 'ItemAdded',   '{"sku": "bread", "qty": 1, "price": 2.20}'),
  ('cart-ann', 'ItemAdded',   '{"sku": "pear",  "qty": 2, "price": 0.80}'),
  ('cart-cid', 'ItemAdded',   '{"sku": "cheese", "qty": 1, "price": 6.00}'),
  ('cart-dee', 'ItemAdded',   '{"sku": "eggs",  "qty": 6, "price": 0.30}'),
  ('cart-ann', 'ItemRemoved', '{"sku": "apple"}');

SELECT shard, seq, key, version, type, payload FROM shop.cart_events ORDER BY shard, seq;

-- 3. Optimistic concurrency. A command handler loaded cart-ann at version 3
--    and checks out, saying which version it decided on:
SELECT * FROM event_log.append('shop.cart_events', 'cart-ann', 'CheckedOut',
                               '{"total": 1.60}', expected_version => 3);

--    A second handler that also loaded version 3 tries to add an item. It loses
--    the race and gets SQLSTATE EL001: reload the cart and decide again.
DO $$
BEGIN
  PERFORM event_log.append('shop.cart_events', 'cart-ann', 'ItemAdded',
                           '{"sku": "plum", "qty": 1}', expected_version => 3);
EXCEPTION WHEN SQLSTATE 'EL001' THEN
  RAISE NOTICE 'rejected: %', SQLERRM;
END $$;

-- 4. Idempotency: a client retrying after a timeout resends the same event_id;
--    the event is stored once and the retry gets the original position back.
SELECT * FROM event_log.append('shop.cart_events', 'cart-hal', 'ItemAdded', '{"sku": "milk", "qty": 2}',
                               event_id => '6f1c2a9e-4b7d-4c3e-9a51-0d2f8e7b6c41');
SELECT * FROM event_log.append('shop.cart_events', 'cart-hal', 'ItemAdded', '{"sku": "milk", "qty": 2}',
                               event_id => '6f1c2a9e-4b7d-4c3e-9a51-0d2f8e7b6c41');

-- 5. Replay one cart: its events in version order, the way an aggregate is loaded.
SELECT version, type, payload FROM event_log.replay('shop.cart_events', 'cart-ann');

--    Fold them into the cart's current contents.
SELECT e.payload ->> 'sku' AS sku,
       sum(CASE e.type WHEN 'ItemAdded' THEN (e.payload ->> 'qty')::int ELSE 0 END) AS qty
FROM event_log.replay('shop.cart_events', 'cart-ann') e
WHERE e.type IN ('ItemAdded', 'ItemRemoved')
GROUP BY 1
HAVING bool_and(e.type <> 'ItemRemoved');

-- 6. Read a shard by offset, the way a consumer polls: remember the last seq
--    seen and ask for what comes after it. Offsets follow commit order, so a
--    consumer that has seen seq N will never later find a new event <= N.
SELECT shard, seq, key, type FROM event_log.read('shop.cart_events', shard => 2, after_seq => 0);
SELECT shard, seq, key, type FROM event_log.read('shop.cart_events', shard => 2, after_seq => 1);

-- 7. Events are immutable: UPDATE, DELETE and TRUNCATE are refused for every
--    role, the table owner included, and so is DDL that would get around it.
\set ON_ERROR_STOP 0
UPDATE shop.cart_events SET payload = '{"total": 0}' WHERE type = 'CheckedOut';
DELETE FROM shop.cart_events WHERE key = 'cart-hal';
ALTER TABLE shop.cart_events DISABLE TRIGGER ALL;
\set ON_ERROR_STOP 1

--    A correction is a new event.
INSERT INTO shop.cart_events (key, type, payload)
VALUES ('cart-hal', 'ItemRemoved', '{"sku": "bread", "reason": "out of stock"}');
SELECT shard, seq, key, version, type FROM shop.cart_events ORDER BY shard, seq;

-- 8. CDC: every committed event is one JSON line in the slot, in commit order.
--    Rolled-back appends and the refused UPDATE/DELETE above left nothing.
SELECT data FROM pg_logical_slot_peek_changes('shop_feed', NULL, NULL) LIMIT 1;
SELECT d ->> 'stream' AS stream, d -> 'shard' AS shard, d -> 'seq' AS seq, d ->> 'key' AS key, d ->> 'type' AS type
FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('shop_feed', NULL, NULL)) s;

--    A consumer outside the database uses the replication protocol, here
--    pg_recvlogical; a Kafka producer would use key = "key", partition = "shard".
\! pg_recvlogical -d shop -S shop_feed --start -o types=CheckedOut -f - --endpos "$(psql -XAt -d shop -c 'SELECT pg_current_wal_lsn()')"

SELECT pg_drop_replication_slot('shop_feed');

-- 9. Consumer groups: an "abandoned cart mailer" reads the cart events at
--    least once, remembers per shard where it stopped, and resumes there.
--    Its first poll creates the group at the start of every shard.
SELECT shard, seq, key, type FROM event_log.poll('abandoned_cart_mailer', 'shop.cart_events', max_count => 5);

--    Nothing moves until it commits.  A real mailer sends its mails, then
--    commits the last seq it handled in each shard, in the same transaction
--    as its own bookkeeping; here one statement does both for a batch.
WITH batch AS (SELECT * FROM event_log.poll('abandoned_cart_mailer', 'shop.cart_events', max_count => 5))
SELECT shard, string_agg(key || ' ' || type, ', ' ORDER BY seq) AS handled, max(seq) AS up_to,
       (SELECT true FROM event_log.commit_offset('abandoned_cart_mailer', 'shop.cart_events', shard, max(seq))) AS committed
FROM batch GROUP BY shard ORDER BY shard;

--    How far behind is it?
SELECT shard, committed_seq, log_end, lag_events FROM event_log.consumer_lag
WHERE group_name = 'abandoned_cart_mailer' ORDER BY shard;

--    A new cart is left behind; the mailer (after a restart, say) resumes
--    after its committed offsets: the rest of the old events, then the new one.
INSERT INTO shop.cart_events (key, type, payload) VALUES ('cart-eve', 'ItemAdded', '{"sku": "jam", "qty": 1}');
SELECT shard, seq, key, type FROM event_log.poll('abandoned_cart_mailer', 'shop.cart_events');

--    A blocking poll waits (here up to 1 s) for new events instead of spinning;
--    consumers outside the database can LISTEN on the stream's channel.
SELECT event_log.commit_offset('abandoned_cart_mailer', 'shop.cart_events', shard, max(seq))
FROM event_log.poll('abandoned_cart_mailer', 'shop.cart_events') GROUP BY shard;
SELECT count(*) AS new_events FROM event_log.poll('abandoned_cart_mailer', 'shop.cart_events', wait => '1 second');
SELECT event_log.channel('shop.cart_events') LIKE 'event_log_%' AS has_channel;

-- 10. Read models. cart_items is a projection: a view kept from the stream by
--     handlers written in SQL, one per event type, that see the event as e and
--     write to the view by its name. It is built from history, then kept
--     inline: in the same transaction as every append.
SELECT event_log.create_projection('shop.cart_items', 'shop.cart_events',
  columns  => 'cart text, sku text, qty int NOT NULL, price numeric, PRIMARY KEY (cart, sku)',
  handlers => jsonb_build_object(
    'ItemAdded',   $$INSERT INTO cart_items AS c
                     VALUES (e.key, e.payload->>'sku', (e.payload->>'qty')::int, (e.payload->>'price')::numeric)
                     ON CONFLICT (cart, sku) DO UPDATE SET qty = c.qty + excluded.qty$$,
    'ItemRemoved', $$DELETE FROM cart_items WHERE cart = e.key AND sku = e.payload->>'sku'$$,
    'CheckedOut',  $$DELETE FROM cart_items WHERE cart = e.key$$));
SELECT * FROM shop.cart_items ORDER BY cart, sku;

INSERT INTO shop.cart_events (key, type, payload)
VALUES ('cart-dee', 'ItemAdded', '{"sku": "milk", "qty": 2, "price": 1.10}');
SELECT * FROM shop.cart_items WHERE cart = 'cart-dee' ORDER BY sku;

-- 11. Aggregate state: each cart folded by a reducer (state, event -> state),
--     stored with the version it reflects. A command handler loads a cart in
--     one indexed read, then appends with that version as expected_version.
SELECT event_log.create_projection('shop.cart_state', 'shop.cart_events',
  reducer => $$CASE e.type
                 WHEN 'ItemAdded' THEN jsonb_set(state, ARRAY['items', e.payload->>'sku'],
                   to_jsonb(coalesce((state #>> ARRAY['items', e.payload->>'sku'])::int, 0) + (e.payload->>'qty')::int))
                 WHEN 'ItemRemoved' THEN state #- ARRAY['items', e.payload->>'sku']
                 ELSE jsonb_set(state, '{status}', to_jsonb(e.type))
               END$$,
  initial => '{"items": {}, "status": "open"}');
SELECT key, version, state FROM shop.cart_state ORDER BY key;
SELECT version AS dee_version FROM shop.cart_state WHERE key = 'cart-dee' \gset
SELECT * FROM event_log.append('shop.cart_events', 'cart-dee', 'CheckedOut', '{}',
                               expected_version => :dee_version);
SELECT key, version, state FROM shop.cart_state WHERE key = 'cart-dee';

-- 12. An async projection follows the log after commit, from a checkpoint per
--     shard: units sold per sku. Its lag is a view; run_projections() (or the
--     background worker) catches it up, never skipping an event.
SELECT event_log.create_projection('shop.sku_units', 'shop.cart_events',
  columns  => 'sku text PRIMARY KEY, units bigint NOT NULL',
  handlers => jsonb_build_object('ItemAdded',
    $$INSERT INTO sku_units AS u VALUES (e.payload->>'sku', (e.payload->>'qty')::int)
      ON CONFLICT (sku) DO UPDATE SET units = u.units + excluded.units$$),
  mode => 'async');

--     A busy afternoon: 2,000 more carts, 20,000 events in one INSERT. Each
--     cart adds items (two of the first), removes the first, and a quarter
--     of the carts check out.
INSERT INTO shop.cart_events (key, type, payload)
SELECT 'cart-' || c,
       CASE WHEN step = 7 THEN 'ItemRemoved'
            WHEN step = 9 AND c % 4 = 0 THEN 'CheckedOut' ELSE 'ItemAdded' END,
       CASE WHEN step = 7 THEN jsonb_build_object('sku', 'sku-' || c % 50)
            WHEN step = 9 AND c % 4 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('sku', 'sku-' || (c + step) % 50,
                                    'qty', CASE step WHEN 0 THEN 2 ELSE 1 END, 'price', 1.00) END
FROM generate_series(0, 9) step, generate_series(1, 2000) c
ORDER BY step, c;
SELECT sum(lag_events) AS events_behind FROM event_log.projection_lag;
SELECT event_log.run_projections(max_events => 100000);
SELECT sum(lag_events) AS events_behind FROM event_log.projection_lag;
SELECT * FROM shop.sku_units ORDER BY units DESC, sku LIMIT 3;

-- 13. New logic, applied to history. The shop decides a removal takes away
--     one unit instead of the whole line. rebuild_projection() replays the
--     stream into a new table with the new handlers while readers go on
--     querying the old one, then swaps the view in one transaction. A reader
--     querying the whole time sees the old complete contents, then the new,
--     never an empty or half-built view.
\! bash "$EVENT_LOG_ROOT/test/demo_reader.sh" 2 > "$EVENT_LOG_TMP/reader.log" 2>&1 &
SELECT pg_sleep(0.3);
SELECT event_log.rebuild_projection('shop.cart_items',
  handlers => jsonb_build_object(
    'ItemAdded',   $$INSERT INTO cart_items AS c
                     VALUES (e.key, e.payload->>'sku', (e.payload->>'qty')::int, (e.payload->>'price')::numeric)
                     ON CONFLICT (cart, sku) DO UPDATE SET qty = c.qty + excluded.qty$$,
    'ItemRemoved', $$UPDATE cart_items SET qty = qty - 1 WHERE cart = e.key AND sku = e.payload->>'sku';
                     DELETE FROM cart_items WHERE cart = e.key AND sku = e.payload->>'sku' AND qty <= 0$$,
    'CheckedOut',  $$DELETE FROM cart_items WHERE cart = e.key$$)) AS events_replayed;
SELECT pg_sleep(2.5);
--     What the reader saw, in order (each distinct answer once):
\! awk '$0 != last { n[++k] = $0; last = $0 } { c[k]++ } END { for (i = 1; i <= k; i++) print "   reader: " n[i] "  (" c[i] " answers)" }' "$EVENT_LOG_TMP/reader.log"
SELECT * FROM shop.cart_items WHERE cart = 'cart-1' ORDER BY sku;
--     build_method: how the last build replayed the log.  cart_items' handlers
--     touch only their own cart's rows, so it ran each one once per batch.
SELECT projection, mode, build_table, generation, events, build_method
  FROM event_log.projections ORDER BY projection;
