-- append_events(): several events in one call, all or none; duplicate
-- flags; read_event() by event_id.
CREATE EXTENSION event_log;
SELECT event_log.create_stream('orders', 4);

-- A command that produces two events: one key, one expected_version check.
SELECT key, shard, seq, version, event_id, duplicate
  FROM event_log.append_events('orders', 'order-1', ARRAY[
       event_log.new_event('OrderPlaced', '{"total": 30}',
                           event_id => '00000000-0000-4000-8000-0000000000a1'),
       event_log.new_event('PaymentRequested', '{"amount": 30}', '{"user": "ann"}',
                           '00000000-0000-4000-8000-0000000000a2')],
       expected_version => 0);
SELECT seq, key, version, type, payload, metadata FROM event_log.replay('orders', 'order-1');

-- The same command retried: every event is a duplicate, nothing appended,
-- the version check is not made again (as with append()).
SELECT key, seq, version, duplicate
  FROM event_log.append_events('orders', 'order-1', ARRAY[
       event_log.new_event('OrderPlaced', '{"total": 30}',
                           event_id => '00000000-0000-4000-8000-0000000000a1'),
       event_log.new_event('PaymentRequested', '{"amount": 30}',
                           event_id => '00000000-0000-4000-8000-0000000000a2')],
       expected_version => 0);

-- A stale expected version: EL001, nothing appended.
SELECT * FROM event_log.append_events('orders', 'order-1', ARRAY[
       event_log.new_event('OrderShipped', '{}'),
       event_log.new_event('OrderClosed', '{}')], expected_version => 1);
\echo :LAST_ERROR_SQLSTATE
-- A duplicate among new events: the new ones need the expected version.
SELECT * FROM event_log.append_events('orders', 'order-1', ARRAY[
       event_log.new_event('OrderPlaced', '{}', event_id => '00000000-0000-4000-8000-0000000000a1'),
       event_log.new_event('OrderShipped', '{}')], expected_version => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT key, seq, version, duplicate FROM event_log.append_events('orders', 'order-1', ARRAY[
       event_log.new_event('OrderPlaced', '{}', event_id => '00000000-0000-4000-8000-0000000000a1'),
       event_log.new_event('OrderShipped', '{}')], expected_version => 2);
-- The key of an event may be given, if it is the call's.
SELECT key, version FROM event_log.append_events('orders', 'order-1',
       ARRAY[event_log.new_event('OrderClosed', '{}', key => 'order-1')]);

-- Several keys in one call, in the order given; an event_id repeated in the
-- call is a duplicate of its first occurrence.
SELECT key, shard, seq, version, duplicate
  FROM event_log.append_events('orders', ARRAY[
       event_log.new_event('OrderPlaced', '{}', key => 'order-2',
                           event_id => '00000000-0000-4000-8000-0000000000b1'),
       event_log.new_event('OrderPlaced', '{}', key => 'order-3'),
       event_log.new_event('OrderPlaced', '{}', key => 'order-2',
                           event_id => '00000000-0000-4000-8000-0000000000b1'),
       event_log.new_event('OrderShipped', '{}', key => 'order-2'),
       event_log.new_event('OrderPlaced', '{}', key => 'order-1',
                           event_id => '00000000-0000-4000-8000-0000000000a1')]);
SELECT count(*) AS events FROM orders;

-- All or nothing: a bad event anywhere, or a failing one, appends nothing.
SELECT * FROM event_log.append_events('orders', ARRAY[
       event_log.new_event('OrderPlaced', '{}', key => 'order-4'),
       event_log.new_event('', '{}', key => 'order-5')]);
SELECT * FROM event_log.append_events('orders', ARRAY[
       event_log.new_event('OrderPlaced', '{}', key => 'order-4'),
       event_log.new_event('OrderPlaced', '{}', key => 'order-5',
                           event_id => '00000000-0000-4000-8000-0000000000a1')]);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS events, count(*) FILTER (WHERE key IN ('order-4', 'order-5')) AS new_keys
  FROM orders;

-- Bad input: clear errors, nothing appended.
SELECT * FROM event_log.append_events('orders', 'order-9', ARRAY[]::event_log.new_event[]);
SELECT * FROM event_log.append_events('orders', 'order-9', NULL);
SELECT * FROM event_log.append_events(NULL, 'order-9', ARRAY[event_log.new_event('X', '{}')]);
SELECT * FROM event_log.append_events('orders', NULL::text, ARRAY[event_log.new_event('X', '{}')]);
SELECT * FROM event_log.append_events('orders', 'order-9', ARRAY[NULL::event_log.new_event]);
SELECT * FROM event_log.append_events('orders', 'order-9',
       ARRAY[[event_log.new_event('X', '{}')], [event_log.new_event('Y', '{}')]]);
SELECT * FROM event_log.append_events('orders', 'order-9', ARRAY[event_log.new_event(NULL, '{}')]);
SELECT * FROM event_log.append_events('orders', 'order-9', ARRAY[event_log.new_event('X', NULL)]);
SELECT * FROM event_log.append_events('orders', 'order-9',
       ARRAY[event_log.new_event('X', '{}'), event_log.new_event('X', '{}', key => 'order-8')]);
SELECT * FROM event_log.append_events('orders', ARRAY[event_log.new_event('X', '{}')]);
SELECT * FROM event_log.append_events('orders', '', ARRAY[event_log.new_event('X', '{}')]);
SELECT * FROM event_log.append_events('orders', 'order-9', ARRAY[event_log.new_event('X', '{}')],
       expected_version => -1);
SELECT * FROM event_log.append_events('orders', 'order-9',
       ARRAY[event_log.new_event(repeat('t', 257), '{}')]);
SELECT * FROM event_log.append_events('orders', ARRAY[
       event_log.new_event('X', '{}', key => 'order-8', event_id => '00000000-0000-4000-8000-0000000000c1'),
       event_log.new_event('X', '{}', key => 'order-9', event_id => '00000000-0000-4000-8000-0000000000c1')]);
SELECT * FROM event_log.append_events('pg_class', 'k', ARRAY[event_log.new_event('X', '{}')]);
SELECT count(*) AS events FROM orders;

-- Inside a transaction, a failed call leaves the earlier work alone.
BEGIN;
SELECT key, version FROM event_log.append_events('orders', 'order-6',
       ARRAY[event_log.new_event('OrderPlaced', '{}')]);
SAVEPOINT s;
SELECT * FROM event_log.append_events('orders', 'order-6',
       ARRAY[event_log.new_event('OrderShipped', '{}')], expected_version => 0);
ROLLBACK TO SAVEPOINT s;
SELECT key, version FROM event_log.append_events('orders', 'order-6',
       ARRAY[event_log.new_event('OrderShipped', '{}')], expected_version => 1);
COMMIT;

-- read_event(): the event with this event_id, or no row.
SELECT shard, seq, key, version, type, payload, metadata, event_id
  FROM event_log.read_event('orders', '00000000-0000-4000-8000-0000000000a2');
SELECT count(*) FROM event_log.read_event('orders', '00000000-0000-4000-8000-0000000000ff');
SELECT * FROM event_log.read_event('orders', NULL);
SELECT * FROM event_log.read_event('pg_class', '00000000-0000-4000-8000-0000000000a2');

-- Privileges: append_events() needs INSERT, read_event() SELECT, checked on
-- every call; row-level security applies to read_event() as to read().
CREATE ROLE regress_ae_appender;
CREATE ROLE regress_ae_reader;
GRANT INSERT ON orders TO regress_ae_appender;
GRANT SELECT ON orders TO regress_ae_reader;
SET ROLE regress_ae_appender;
SELECT key, version, duplicate FROM event_log.append_events('orders', 'order-7',
       ARRAY[event_log.new_event('OrderPlaced', '{}', event_id => '00000000-0000-4000-8000-0000000000d1')]);
SELECT * FROM event_log.read_event('orders', '00000000-0000-4000-8000-0000000000d1');
SET ROLE regress_ae_reader;
SELECT key, version FROM event_log.read_event('orders', '00000000-0000-4000-8000-0000000000d1');
SELECT * FROM event_log.append_events('orders', 'order-7', ARRAY[event_log.new_event('X', '{}')]);
RESET ROLE;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY not_seven ON orders FOR SELECT USING (key <> 'order-7');
SET ROLE regress_ae_reader;
SELECT count(*) AS hidden FROM event_log.read_event('orders', '00000000-0000-4000-8000-0000000000d1');
SELECT key FROM event_log.read_event('orders', '00000000-0000-4000-8000-0000000000a2');
RESET ROLE;
REVOKE SELECT ON orders FROM regress_ae_reader;
SET ROLE regress_ae_reader;
SELECT * FROM event_log.read_event('orders', '00000000-0000-4000-8000-0000000000a2');
RESET ROLE;

DROP POLICY not_seven ON orders;
SELECT event_log.drop_stream('orders');
DROP ROLE regress_ae_appender, regress_ae_reader;
DROP EXTENSION event_log;
