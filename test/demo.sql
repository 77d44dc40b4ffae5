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
