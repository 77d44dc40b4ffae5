-- Upcasting on read (docs/schemas.md, "Upcasting on read"): readers ask for
-- the newest shape with the setting event_log.upcast, projections with
-- set_projection_upcast(); stored events never change.
CREATE EXTENSION event_log;
SET client_min_messages = warning;

-- A type at version 1 with events, then version 2 (cents instead of an
-- amount) with its upcaster, and one event written at version 2.
SELECT event_log.create_stream('pay', 2);
SELECT event_log.register_schema('pay', 'Paid', '{"type": "object", "required": ["amount"],
  "properties": {"amount": {"type": "number"}}}');
INSERT INTO pay (key, type, payload) VALUES
  ('a', 'Paid', '{"amount": 5}'), ('b', 'Paid', '{"amount": 7.25}'),
  ('a', 'Noted', '{"text": "no schema"}');
SELECT event_log.set_schema_compatibility('pay', 'Paid', 'NONE');
SELECT event_log.register_schema('pay', 'Paid', '{"type": "object", "required": ["cents"],
  "additionalProperties": false, "properties": {"cents": {"type": "integer"}}}');
SELECT event_log.register_upcaster('pay', 'Paid', 1,
  $$jsonb_build_object('cents', ((payload->>'amount')::numeric * 100)::int)$$);
INSERT INTO pay (key, type, payload) VALUES ('a', 'Paid', '{"cents": 300}');

-- Off (the default): every reader returns what is stored.
SHOW event_log.upcast;
SELECT seq, type, payload, metadata->'schema_version' AS v FROM event_log.replay('pay', 'a');

-- On: every reader returns version 2 payloads, and metadata says so; an
-- event already at version 2 and a type with no schema pass as they are.
SET event_log.upcast = on;
SELECT seq, type, payload, metadata->'schema_version' AS v FROM event_log.replay('pay', 'a');
SELECT shard, seq, payload, metadata->'schema_version' AS v FROM event_log.read('pay', 0)
UNION ALL
SELECT shard, seq, payload, metadata->'schema_version' FROM event_log.read('pay', 1)
ORDER BY 1, 2;
SELECT key, payload, metadata->'schema_version' AS v
FROM (SELECT * FROM event_log.read('pay', 0, types => '{Paid}')
      UNION ALL SELECT * FROM event_log.read('pay', 1, types => '{Paid}')) r
ORDER BY key, payload::text;
SELECT key, type, payload, metadata->'schema_version' AS v FROM event_log.read_all('pay') ORDER BY key, type, payload::text;
SELECT key, payload, metadata->'schema_version' AS v FROM event_log.read_by_time('pay', '-infinity') ORDER BY key, payload::text;
SELECT r.payload, r.metadata->'schema_version' AS v
FROM pay p, event_log.read_event('pay', p.event_id) r WHERE p.payload = '{"amount": 7.25}';
SELECT key, type, payload, metadata->'schema_version' AS v FROM event_log.poll('billing', 'pay', 10) ORDER BY key, type, payload::text;
-- The stored events are unchanged.
SELECT key, payload, metadata->'schema_version' AS v FROM pay ORDER BY key, payload::text;
-- upcast() agrees with the readers.
SELECT bool_and(r.payload = event_log.upcast('pay', p.type, p.payload, p.metadata)) AS same
FROM pay p JOIN event_log.read_all('pay') r USING (event_id);
RESET event_log.upcast;

-- A type without a schema has nothing to upcast to, whatever an appender
-- wrote as its schema_version (the append path reads it only for types with
-- a schema): such an event cannot stop an upcasting reader.
INSERT INTO pay (key, type, payload, metadata) VALUES
  ('e', 'Noted', '{}', '{"schema_version": "x"}'), ('e', 'Noted', '{}', '{"schema_version": 99}');
SET event_log.upcast = on;
SELECT payload, metadata FROM event_log.replay('pay', 'e');
RESET event_log.upcast;
-- A comment at the end of an expression ends at its line: it cannot turn
-- the statement around the expression into another one.
SELECT event_log.register_upcaster('pay', 'Paid', 1, $$payload) FROM pg_catalog.pg_class --$$);

-- A failing step is an error naming the event and the step, never the old
-- shape.  An event may name the version it was written for: these name
-- version 1, and the upcaster raises on the second.
INSERT INTO pay (key, type, payload, metadata) VALUES
  ('c', 'Paid', '{"amount": 5000}', '{"schema_version": 1}'),
  ('d', 'Paid', '{"amount": 1e30}', '{"schema_version": 1}');
SET event_log.upcast = on;
SELECT payload FROM event_log.replay('pay', 'd');
SELECT count(*) FROM event_log.read_all('pay');
SELECT count(*) FROM event_log.poll('billing', 'pay', 10);
-- a version without an upcaster to it
SELECT event_log.set_schema_compatibility('pay', 'Paid', 'NONE');
SELECT event_log.register_schema('pay', 'Paid', '{"type": "object", "required": ["cents"],
  "properties": {"cents": {"type": "integer", "maximum": 100000}, "note": {"type": "string"}}}');
SELECT payload FROM event_log.replay('pay', 'b');
-- the setting is read at each call; off again, the events read as stored
RESET event_log.upcast;
SELECT payload FROM event_log.replay('pay', 'b');
-- a step whose result the latest version refuses: the chain's result is
-- checked against it ('c' is at version 1; the step from 2 was checked
-- only against events stored at 2)
SELECT event_log.register_upcaster('pay', 'Paid', 2, $$payload$$);
SET event_log.upcast = on;
SELECT payload FROM event_log.replay('pay', 'c');
SELECT payload, metadata->'schema_version' AS v FROM event_log.replay('pay', 'b');
SELECT payload, metadata->'schema_version' AS v FROM event_log.replay('pay', 'a');
RESET event_log.upcast;
-- conversation() too, across streams
SELECT event_log.track_conversations('pay');
SET event_log.correlation_id = 'conv-1';
INSERT INTO pay (key, type, payload, metadata) VALUES ('f', 'Paid', '{"amount": 2}', '{"schema_version": 1}');
RESET event_log.correlation_id;
SET event_log.upcast = on;
SELECT stream, payload, metadata->'schema_version' AS v FROM event_log.conversation('conv-1');
RESET event_log.upcast;
SELECT stream, payload, metadata->'schema_version' AS v FROM event_log.conversation('conv-1');

-- The expression runs as the stream's owner with pg_catalog as its path: a
-- reader whose schema comes first, with its own operators and functions,
-- changes nothing, and needs SELECT on the stream as for any read.
CREATE ROLE regress_upr_reader;
CREATE SCHEMA regress_upr_evil AUTHORIZATION regress_upr_reader;
SET ROLE regress_upr_reader;
SET event_log.upcast = on;
SELECT payload FROM event_log.replay('pay', 'b');
RESET ROLE;
GRANT SELECT ON pay TO regress_upr_reader;
SET ROLE regress_upr_reader;
CREATE FUNCTION regress_upr_evil.jsonb_build_object(text, integer) RETURNS jsonb
  LANGUAGE sql AS $$SELECT '{"evil": true}'::jsonb$$;
CREATE FUNCTION regress_upr_evil.mul(numeric, integer) RETURNS numeric
  LANGUAGE sql AS $$SELECT 666::numeric$$;
CREATE OPERATOR regress_upr_evil.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = regress_upr_evil.mul);
SET search_path = regress_upr_evil, pg_catalog, public;
SELECT payload, metadata->'schema_version' AS v FROM event_log.replay('pay', 'b');
RESET search_path;
RESET event_log.upcast;
RESET ROLE;

-- Projections: the choice is the projection's, in the catalog.  Handlers
-- written for version 3 only; the stored version-1 events reach them upcast
-- once upcast is set (and the projection rebuilt, by default).
SELECT event_log.create_stream('pay2');
SELECT event_log.register_schema('pay2', 'Paid', '{"type": "object", "required": ["amount"],
  "properties": {"amount": {"type": "number"}}}');
INSERT INTO pay2 (key, type, payload) VALUES ('a', 'Paid', '{"amount": 5}'), ('b', 'Paid', '{"amount": 7.25}');
SELECT event_log.set_schema_compatibility('pay2', 'Paid', 'NONE');
SELECT event_log.register_schema('pay2', 'Paid', '{"type": "object", "required": ["cents"],
  "properties": {"cents": {"type": "integer"}}}');
SELECT event_log.register_upcaster('pay2', 'Paid', 1,
  $$jsonb_build_object('cents', ((payload->>'amount')::numeric * 100)::int)$$);
-- Created in a session with event_log.upcast on, a projection upcasts from
-- its first build on; the handler reads cents only.
SET event_log.upcast = on;
SELECT event_log.create_projection('totals', 'pay2',
  columns => 'key text PRIMARY KEY, cents bigint NOT NULL, versions text NOT NULL',
  handlers => jsonb_build_object('Paid', $$
    INSERT INTO totals AS t VALUES (e.key, (e.payload->>'cents')::bigint, e.metadata->>'schema_version')
    ON CONFLICT (key) DO UPDATE SET cents = t.cents + excluded.cents,
      versions = t.versions || ',' || excluded.versions $$));
RESET event_log.upcast;
SELECT projection, upcast, build_method FROM event_log.projections;
SELECT * FROM totals ORDER BY key;
-- live (inline) processing of an old-version event gives what a rebuild gives
INSERT INTO pay2 (key, type, payload, metadata) VALUES ('a', 'Paid', '{"amount": 1}', '{"schema_version": 1}');
INSERT INTO pay2 (key, type, payload) VALUES ('b', 'Paid', '{"cents": 25}');
SELECT * FROM totals ORDER BY key;
CREATE TEMP TABLE live AS SELECT * FROM totals;
SELECT event_log.rebuild_projection('totals');
SELECT count(*) AS differ FROM (SELECT * FROM totals EXCEPT SELECT * FROM live) d;
-- async, created without it (so its build fails on the old shape), then
-- set with set_projection_upcast(), which rebuilds it by default
SELECT event_log.create_projection('async_totals', 'pay2', mode => 'async',
  columns => 'key text PRIMARY KEY, cents bigint NOT NULL',
  handlers => jsonb_build_object('Paid', $$
    INSERT INTO async_totals AS t VALUES (e.key, (e.payload->>'cents')::bigint)
    ON CONFLICT (key) DO UPDATE SET cents = t.cents + excluded.cents $$));
SELECT event_log.create_projection('async_totals', 'pay2', mode => 'async',
  columns => 'key text PRIMARY KEY, cents bigint NOT NULL',
  handlers => jsonb_build_object('Paid', $$
    INSERT INTO async_totals AS t VALUES (e.key, coalesce((e.payload->>'cents')::bigint, -1))
    ON CONFLICT (key) DO UPDATE SET cents = t.cents + excluded.cents $$));
SELECT * FROM async_totals ORDER BY key;
SELECT event_log.set_projection_upcast('async_totals', true);
SELECT * FROM async_totals ORDER BY key;
-- the worker's runs (run_projections()) upcast too
INSERT INTO pay2 (key, type, payload, metadata) VALUES ('b', 'Paid', '{"amount": 2}', '{"schema_version": 1}');
SELECT event_log.run_projections('async_totals');
SELECT * FROM async_totals ORDER BY key;
-- inline: an upcaster failing under the projection fails the append, and
-- nothing is appended
INSERT INTO pay2 (key, type, payload, metadata) VALUES ('z', 'Paid', '{"amount": 1e30}', '{"schema_version": 1}');
SELECT count(*) FROM pay2 WHERE key = 'z';
-- off again, without a rebuild: from the next event on
SELECT event_log.set_projection_upcast('totals', false, false) IS NULL AS no_rebuild;
SELECT upcast FROM event_log.projections WHERE projection = 'totals'::regclass;
-- (the inline projection, now seeing stored shapes, would refuse it)
SELECT event_log.drop_projection('totals');
-- async: it stops the shard at that event, with the error recorded
INSERT INTO pay2 (key, type, payload, metadata) VALUES ('z', 'Paid', '{"amount": 1e30}', '{"schema_version": 1}');
SELECT event_log.run_projections('async_totals');
SELECT shard, error_seq, error FROM event_log.projection_offsets WHERE projection = 'async_totals'::regclass;
SELECT * FROM async_totals ORDER BY key;
-- bad input
SELECT event_log.set_projection_upcast('no_such', true);
SELECT event_log.set_projection_upcast('pay2', true);
SELECT event_log.set_projection_upcast(NULL, true);
SELECT event_log.set_projection_upcast('async_totals', NULL);
SELECT event_log.set_projection_upcast('async_totals', true, NULL);
SET ROLE regress_upr_reader;
SELECT event_log.set_projection_upcast('async_totals', false);
RESET ROLE;
SELECT event_log.drop_projection('async_totals');
SELECT event_log.drop_stream('pay2');
SELECT event_log.drop_stream('pay');
DROP SCHEMA regress_upr_evil CASCADE;
DROP ROLE regress_upr_reader;
DROP EXTENSION event_log;
