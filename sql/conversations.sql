-- Correlation and causation: metadata from the session on every append
-- path, track_conversations() and conversation().
CREATE EXTENSION event_log;
CREATE SCHEMA cv;
SELECT event_log.create_stream('cv.orders', 2);
SELECT event_log.create_stream('cv.payments');
SELECT event_log.create_stream('cv.untracked');

-- Unset (the default), nothing is added.
SHOW event_log.correlation_id;
INSERT INTO cv.orders (key, type, payload) VALUES ('o1', 'Drafted', '{}');

-- Set, every append path adds what the event does not give itself.
SET event_log.correlation_id = 'c-1';
SET event_log.causation_id = 'cmd-1';
INSERT INTO cv.orders (key, type, payload) VALUES ('o1', 'Placed', '{"n": 1}');
COPY cv.orders (key, type, payload, metadata) FROM stdin;
o2	Placed	{}	{"user": "ann"}
\.
SELECT version FROM event_log.append('cv.payments', 'p1', 'Charged', '{}');
SELECT version FROM event_log.append_events('cv.orders', 'o1',
       ARRAY[event_log.new_event('Paid', '{}')]);
SELECT key, version FROM event_log.append_events('cv.payments',
       ARRAY[event_log.new_event('Settled', '{}', key => 'p1')]);
-- What the event gives wins; a JSON null counts as given; metadata that
-- is not an object is left as it is.
INSERT INTO cv.orders (key, type, payload, metadata)
VALUES ('o2', 'Noted', '{}', '{"correlation_id": "c-2", "causation_id": null}'),
       ('o2', 'Listed', '{}', '[1, 2]');
SELECT version FROM event_log.append('cv.untracked', 'u1', 'Logged', '{}',
       metadata => '{"causation_id": "other"}');
RESET event_log.causation_id;
SELECT version FROM event_log.append('cv.untracked', 'u1', 'Logged', '{}');
RESET event_log.correlation_id;
SELECT key, version, type, metadata FROM cv.orders ORDER BY key, version;
SELECT key, version, type, metadata FROM cv.payments ORDER BY key, version;
SELECT key, version, type, metadata FROM cv.untracked ORDER BY key, version;

-- SET LOCAL, for one command handler's transaction.
BEGIN;
SET LOCAL event_log.correlation_id = 'c-3';
INSERT INTO cv.orders (key, type, payload) VALUES ('o4', 'Placed', '{}');
COMMIT;
SHOW event_log.correlation_id;
SELECT metadata FROM cv.orders WHERE key = 'o4';

-- The added ids count against event_log.max_payload_size.
SET event_log.max_payload_size = '1kB';
SET event_log.correlation_id = 'c-4';
INSERT INTO cv.orders (key, type, payload, metadata)
VALUES ('o4', 'Big', '{}', jsonb_build_object('pad', repeat('x', 1000)));
RESET event_log.max_payload_size;
RESET event_log.correlation_id;

-- Settings: too long is refused, and changes nothing.
SET event_log.correlation_id = 'c-5';
SELECT set_config('event_log.correlation_id', repeat('x', 257), false);
SHOW event_log.correlation_id;
RESET event_log.correlation_id;

-- Tracking: an index on metadata ->> 'correlation_id', partial; calling
-- again returns the same index.
SELECT event_log.track_conversations('cv.orders');
SELECT event_log.track_conversations('cv.orders');
SELECT event_log.track_conversations('cv.payments');
SELECT pg_get_indexdef('cv.orders_correlation_id_idx'::regclass);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM cv.orders
WHERE metadata ? 'correlation_id' AND (metadata ->> 'correlation_id') = 'c-1';
RESET enable_seqscan;

-- A conversation, across the tracked streams, in recorded order; each
-- shard's events (so each key's) in seq order.
SELECT stream, shard, seq, key, version, type FROM event_log.conversation('c-1');
-- An untracked stream is searched when named.
SELECT stream, key, type FROM event_log.conversation('c-1', ARRAY['cv.untracked', 'cv.payments']::regclass[]);
SELECT stream, key, type FROM event_log.conversation('c-2');
SELECT count(*) FROM event_log.conversation('nobody');
SELECT count(*) FROM event_log.conversation('c-1', '{}');

-- Bad input: an error, and nothing read or created.
SELECT * FROM event_log.conversation(NULL);
SELECT * FROM event_log.conversation('');
SELECT * FROM event_log.conversation(repeat('x', 257));
SELECT * FROM event_log.conversation('c-1', ARRAY['pg_class']::regclass[]);
SELECT * FROM event_log.conversation('c-1', ARRAY[NULL]::regclass[]);
SELECT * FROM event_log.conversation('c-1', '{{cv.orders}}'::regclass[]);
SELECT event_log.track_conversations(NULL);
SELECT event_log.track_conversations('pg_class');

-- Roles: a reader of orders only, an appender of payments only, each with
-- hostile operators first on its search_path.
CREATE ROLE regress_cv_reader;
CREATE ROLE regress_cv_appender;
GRANT USAGE ON SCHEMA cv TO regress_cv_reader, regress_cv_appender;
GRANT SELECT ON cv.orders TO regress_cv_reader;
GRANT INSERT ON cv.payments TO regress_cv_appender;
CREATE SCHEMA cv_evil;
GRANT USAGE ON SCHEMA cv_evil TO PUBLIC;
CREATE FUNCTION cv_evil.field(a jsonb, b text) RETURNS text
LANGUAGE plpgsql AS $$ BEGIN RAISE WARNING 'hostile ->> ran as %', current_user; RETURN 'c-1'; END $$;
CREATE OPERATOR cv_evil.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = cv_evil.field);
CREATE FUNCTION cv_evil.has(a jsonb, b text) RETURNS bool
LANGUAGE plpgsql AS $$ BEGIN RAISE WARNING 'hostile ? ran as %', current_user; RETURN true; END $$;
CREATE OPERATOR cv_evil.? (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = cv_evil.has);
CREATE FUNCTION cv_evil.eq(a text, b text) RETURNS bool
LANGUAGE plpgsql AS $$ BEGIN RAISE WARNING 'hostile = ran as %', current_user; RETURN true; END $$;
CREATE OPERATOR cv_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = cv_evil.eq);

SET ROLE regress_cv_reader;
SET search_path = cv_evil, pg_catalog;
-- Only the streams it may read: payments' events are not shown.
SELECT stream, key, type FROM event_log.conversation('c-1');
SELECT stream, key FROM event_log.conversation('c-1', ARRAY['cv.payments']::regclass[]);
SELECT event_log.track_conversations('cv.untracked');
SET ROLE regress_cv_appender;
SET event_log.correlation_id = 'c-9';
SELECT version FROM event_log.append('cv.payments', 'p9', 'Charged', '{}');
SELECT count(*) FROM event_log.conversation('c-9');
SELECT * FROM event_log.conversation('c-9', ARRAY['cv.payments']::regclass[]);
RESET event_log.correlation_id;
RESET ROLE;
RESET search_path;
SELECT metadata FROM cv.payments WHERE key = 'p9';

-- Row-level security applies to the reader, on every call.
ALTER TABLE cv.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_o2 ON cv.orders FOR SELECT TO regress_cv_reader USING (key = 'o2');
SET ROLE regress_cv_reader;
SELECT stream, key, type FROM event_log.conversation('c-1');
SET row_security = off;
SELECT stream, key, type FROM event_log.conversation('c-1');
RESET row_security;
RESET ROLE;
REVOKE SELECT ON cv.orders FROM regress_cv_reader;
SET ROLE regress_cv_reader;
SELECT count(*) FROM event_log.conversation('c-1');
RESET ROLE;
ALTER TABLE cv.orders DISABLE ROW LEVEL SECURITY;
GRANT SELECT ON cv.orders TO regress_cv_reader;

-- A tracked stream the reader has SELECT on, in a schema it has no USAGE
-- on, is one it may not read: left out, not an error for every
-- conversation() the reader makes without `streams`.
CREATE SCHEMA cv_private;
SELECT event_log.create_stream('cv_private.hidden');
SELECT event_log.track_conversations('cv_private.hidden');
INSERT INTO cv_private.hidden (key, type, payload, metadata)
  VALUES ('h1', 'Secret', '{}', '{"correlation_id": "c-1"}');
GRANT SELECT ON cv_private.hidden TO PUBLIC;
SET ROLE regress_cv_reader;
SELECT stream, key, type FROM event_log.conversation('c-1');
SELECT stream, key FROM event_log.conversation('c-1', ARRAY['cv_private.hidden']::regclass[]);
RESET ROLE;
SELECT stream, key, type FROM event_log.conversation('c-1') WHERE stream = 'cv_private.hidden'::regclass;
SELECT event_log.drop_stream('cv_private.hidden');
DROP SCHEMA cv_private;

SELECT event_log.drop_stream('cv.orders');
SELECT event_log.drop_stream('cv.payments');
SELECT event_log.drop_stream('cv.untracked');
DROP SCHEMA cv, cv_evil CASCADE;
DROP ROLE regress_cv_reader, regress_cv_appender;
DROP EXTENSION event_log;
