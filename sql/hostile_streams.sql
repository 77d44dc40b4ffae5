-- Hostile roles against streams: nothing the extension runs on a role's
-- behalf, or with other rights than the caller's, resolves an operator or a
-- function through the caller's search_path.
--
-- Three non-superuser roles (a stream's owner, an appender with INSERT only,
-- a reader with SELECT only) each put a schema of their own first on their
-- search_path, ahead of pg_catalog, holding a version of every operator and
-- function the stream, append, read and guard code uses.  Each hostile
-- version warns that it ran and, if it finds itself running as a superuser,
-- makes its role superuser.  The roles then use every entry point: none of
-- the hostile versions may run, and nobody may become superuser.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
CREATE ROLE regress_hs_owner;
CREATE ROLE regress_hs_appender;
CREATE ROLE regress_hs_reader;
CREATE SCHEMA hs AUTHORIZATION regress_hs_owner;
GRANT USAGE ON SCHEMA hs TO regress_hs_appender, regress_hs_reader;
CREATE SCHEMA evil_owner AUTHORIZATION regress_hs_owner;
CREATE SCHEMA evil_appender AUTHORIZATION regress_hs_appender;
CREATE SCHEMA evil_reader AUTHORIZATION regress_hs_reader;

-- Where the hostile versions record that they ran (the WARNING they raise
-- shows as well, even when the statement later fails and the row goes).
CREATE TABLE public.regress_hs_ran (what text, ran_as text);
GRANT INSERT ON public.regress_hs_ran TO PUBLIC;

-- Run by each role: creates the traps in its own schema, owned by it.
CREATE FUNCTION public.regress_hs_make_traps(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  op record;
  n int := 0;
BEGIN
  EXECUTE format($f$
    CREATE FUNCTION %1$I.trap(what text) RETURNS void LANGUAGE plpgsql AS $b$
    BEGIN
      RAISE WARNING 'hostile %% ran as %%', what, current_user;
      INSERT INTO public.regress_hs_ran VALUES (what, current_user);
      IF (SELECT rolsuper FROM pg_catalog.pg_roles
          WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
        ALTER ROLE %2$I SUPERUSER;
      END IF;
    END $b$$f$, s, current_user);

  -- Operators: each with the exact argument types, so that it beats
  -- pg_catalog's binary-coercible one, and the same result.
  FOR op IN SELECT * FROM (VALUES
      ('=', 'int4', 'int4'), ('=', 'int8', 'int8'), ('=', 'text', 'text'),
      ('=', 'name', 'name'), ('=', 'oid', 'oid'), ('=', 'uuid', 'uuid'),
      ('=', 'regclass', 'regclass'), ('=', 'regclass', 'oid'),
      ('=', 'oid', 'regclass'), ('=', 'regproc', 'oid'),
      ('<>', 'int4', 'int4'), ('<>', 'oid', 'oid'),
      ('>', 'int4', 'int4'), ('>', 'int8', 'int8'), ('>=', 'int8', 'int8'),
      ('<', 'int8', 'int8'), ('<=', 'int8', 'int8'),
      ('+', 'int8', 'int8'), ('+', 'int4', 'int4'), ('-', 'int8', 'int8')) v(name, l, r)
  LOOP
    n := n + 1;
    EXECUTE format($f$
      CREATE FUNCTION %1$I.op%2$s(a %3$s, b %4$s) RETURNS %5$s LANGUAGE plpgsql AS $b$
      BEGIN
        PERFORM %1$I.trap('operator %6$s(%3$s, %4$s)');
        RETURN a OPERATOR(pg_catalog.%6$s) b;
      END $b$$f$, s, n, op.l, op.r,
      CASE WHEN op.name IN ('+', '-') THEN op.l ELSE 'bool' END, op.name);
    EXECUTE format('CREATE OPERATOR %1$I.%2$s (LEFTARG = %3$s, RIGHTARG = %4$s, FUNCTION = %1$I.op%5$s)',
                   s, op.name, op.l, op.r, n);
  END LOOP;

  -- Functions and aggregates the extension's SQL calls, or might.
  EXECUTE format($f$
    CREATE FUNCTION %1$I.count_step(c int8) RETURNS int8 LANGUAGE plpgsql AS $b$
    BEGIN PERFORM %1$I.trap('count(*)'); RETURN c OPERATOR(pg_catalog.+) 1; END $b$;
    CREATE AGGREGATE %1$I.count(*) (SFUNC = %1$I.count_step, STYPE = int8, INITCOND = '0');
    CREATE FUNCTION %1$I.sa_step(acc text, x text, d text) RETURNS text LANGUAGE plpgsql AS $b$
    BEGIN PERFORM %1$I.trap('string_agg'); RETURN acc OPERATOR(pg_catalog.||) x; END $b$;
    CREATE AGGREGATE %1$I.string_agg(text, text) (SFUNC = %1$I.sa_step, STYPE = text);
    CREATE FUNCTION %1$I.pg_event_trigger_dropped_objects(
        OUT classid oid, OUT objid oid, OUT objsubid int4, OUT original bool,
        OUT normal bool, OUT is_temporary bool, OUT object_type text,
        OUT schema_name text, OUT object_name text, OUT object_identity text,
        OUT address_names text[], OUT address_args text[])
      RETURNS SETOF record LANGUAGE plpgsql AS $b$
    BEGIN PERFORM %1$I.trap('pg_event_trigger_dropped_objects()'); END $b$;
    CREATE FUNCTION %1$I.now() RETURNS timestamptz LANGUAGE plpgsql AS $b$
    BEGIN PERFORM %1$I.trap('now()'); RETURN pg_catalog.now(); END $b$;
    CREATE FUNCTION %1$I.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $b$
    BEGIN PERFORM %1$I.trap('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $b$;
    CREATE FUNCTION %1$I.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS $b$
    BEGIN PERFORM %1$I.trap('gen_random_uuid()'); RETURN pg_catalog.gen_random_uuid(); END $b$;
    CREATE FUNCTION %1$I.text(regclass) RETURNS text LANGUAGE plpgsql AS $b$
    BEGIN PERFORM %1$I.trap('text(regclass)'); RETURN $1::pg_catalog.text; END $b$;
    CREATE FUNCTION %1$I.format_type(oid, int4) RETURNS text LANGUAGE plpgsql AS $b$
    BEGIN PERFORM %1$I.trap('format_type()'); RETURN pg_catalog.format_type($1, $2); END $b$;
    $f$, s);
END $fn$;

SET ROLE regress_hs_owner;
SELECT public.regress_hs_make_traps('evil_owner');
SET ROLE regress_hs_appender;
SELECT public.regress_hs_make_traps('evil_appender');
SET ROLE regress_hs_reader;
SELECT public.regress_hs_make_traps('evil_reader');

-- The traps work: SQL that does not qualify its operators falls into them.
-- Run as the role itself, a trap only warns ...
SET search_path = evil_reader, pg_catalog;
SELECT 1 = 1 AS unqualified;
-- ... run as a superuser, it makes the role superuser (undone at once).
RESET ROLE;
SELECT 1 = 1 AS unqualified;
RESET search_path;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'regress_hs_reader';
ALTER ROLE regress_hs_reader NOSUPERUSER;
SELECT what, ran_as FROM regress_hs_ran;
DELETE FROM regress_hs_ran;

-- The owner creates a stream, appends to it by INSERT, COPY and append(),
-- changes it in allowed and refused ways, all with its traps first.
SET ROLE regress_hs_owner;
SET search_path = evil_owner, pg_catalog, public;
SELECT event_log.create_stream('hs.s', 2);
GRANT INSERT ON hs.s TO regress_hs_appender;
GRANT SELECT ON hs.s TO regress_hs_reader;
INSERT INTO hs.s (key, type, payload) VALUES ('k1', 'Opened', '{}');
COPY hs.s (key, type, payload) FROM stdin;
k2	Opened	{}
k1	Noted	{"n": 1}
\.
SELECT shard, seq, version FROM event_log.append('hs.s', 'k1', 'Noted', '{}', expected_version => 2);
SELECT key, version FROM event_log.replay('hs.s', 'k1');
ALTER TABLE hs.s ADD COLUMN note text;
ALTER TABLE hs.s ALTER COLUMN seq SET DEFAULT 1;
ALTER TABLE hs.s DISABLE TRIGGER ALL;
DROP TABLE hs.s;
UPDATE hs.s SET type = 'x';
SELECT event_log.create_stream('hs.scratch');
SELECT event_log.create_stream('hs."Odd ""name"", with.dots; --"', 3);
INSERT INTO hs."Odd ""name"", with.dots; --" (key, type, payload) VALUES ('k', 'Opened', '{}');
SELECT shard, seq, version FROM event_log.append('hs."Odd ""name"", with.dots; --"', 'k', 'Noted', '{}');
SELECT key, version FROM event_log.replay('hs."Odd ""name"", with.dots; --"', 'k');
SELECT event_log.drop_stream('hs."Odd ""name"", with.dots; --"');

-- The reader reads and replays, and polls: that creates a consumer group,
-- after which every appending transaction's commit looks groups up as the
-- extension's owner.
SET ROLE regress_hs_reader;
SET search_path = evil_reader, pg_catalog, public;
SELECT shard, seq, key, version, type FROM event_log.read('hs.s', event_log.shard_for('k1', 2));
SELECT key, version, type FROM event_log.replay('hs.s', 'k1', 1);
SELECT key, version FROM event_log.poll('g', 'hs.s', 10) ORDER BY key, version;
SELECT event_log.shard_for('k1', 2);
SELECT key, version, type FROM event_log.read_event('hs.s',
       (SELECT event_id FROM hs.s WHERE key OPERATOR(pg_catalog.=) 'k2'));
SELECT * FROM event_log.append_events('hs.s', 'k1', ARRAY[event_log.new_event('Noted', '{}')]);
\echo :LAST_ERROR_SQLSTATE

-- The appender appends, with and without expected versions and event_ids,
-- and fails in the ways it may fail.
SET ROLE regress_hs_appender;
SET search_path = evil_appender, pg_catalog, public;
INSERT INTO hs.s (key, type, payload) VALUES ('k3', 'Opened', '{}');
COPY hs.s (key, type, payload, event_id) FROM stdin;
k3	Noted	{}	00000000-0000-4000-8000-000000000001
\.
SELECT shard, seq, version FROM event_log.append('hs.s', 'k3', 'Noted', '{}', expected_version => 2,
       event_id => '00000000-0000-4000-8000-000000000002');
SELECT shard, seq, version FROM event_log.append('hs.s', 'k3', 'Noted', '{}',
       event_id => '00000000-0000-4000-8000-000000000002');
SELECT shard, seq, version FROM event_log.append('hs.s', 'k3', 'Noted', '{}', expected_version => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT key, shard, seq, version, duplicate FROM event_log.append_events('hs.s', 'k3', ARRAY[
       event_log.new_event('Noted', '{}', event_id => '00000000-0000-4000-8000-000000000003'),
       event_log.new_event('Noted', '{}')], expected_version => 3);
SELECT key, shard, seq, version, duplicate FROM event_log.append_events('hs.s', ARRAY[
       event_log.new_event('Noted', '{}', key => 'k3', event_id => '00000000-0000-4000-8000-000000000003'),
       event_log.new_event('Opened', '{}', key => 'k6'),
       event_log.new_event('Opened', '{}', key => 'k7')]);
SELECT * FROM event_log.append_events('hs.s', 'k3', ARRAY[event_log.new_event('Noted', '{}')],
       expected_version => 3);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM event_log.read_event('hs.s', '00000000-0000-4000-8000-000000000003');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT shard, seq, version FROM event_log.append('hs.s', 'k4', 'Opened', '{}');
INSERT INTO hs.s (key, type, payload) VALUES ('k4', 'Noted', '{}');
COMMIT;
SELECT * FROM event_log.read('hs.s', 0);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO hs.s (key, type, payload, seq) VALUES ('k3', 'Forged', '{}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT event_log.drop_stream('hs.s');
\echo :LAST_ERROR_SQLSTATE

-- A superuser whose search_path starts with a schema a hostile role owns:
-- appends, reads, DDL (the event triggers run as the superuser) and drops.
RESET ROLE;
SET search_path = evil_appender, pg_catalog, public;
INSERT INTO hs.s (key, type, payload) VALUES ('k5', 'Opened', '{}');
SELECT shard, seq, version FROM event_log.append('hs.s', 'k5', 'Noted', '{}', expected_version => 1);
SELECT pg_catalog.count(*) FROM event_log.read('hs.s', event_log.shard_for('k5', 2));
SELECT key, version FROM event_log.replay('hs.s', 'k5');
SELECT key, version, duplicate FROM event_log.append_events('hs.s', 'k5',
       ARRAY[event_log.new_event('Noted', '{}'), event_log.new_event('Noted', '{}')],
       expected_version => 2);
SELECT key, version, duplicate FROM event_log.append_events('hs.s',
       ARRAY[event_log.new_event('Noted', '{}', key => 'k5'),
             event_log.new_event('Noted', '{}', key => 'k8')]);
SELECT key, version, type FROM event_log.read_event('hs.s', '00000000-0000-4000-8000-000000000003');
ALTER TABLE hs.s ADD COLUMN note2 text;
ALTER TABLE hs.s ALTER COLUMN recorded_at SET DEFAULT pg_catalog.now();
DROP TABLE hs.s;
SELECT event_log.drop_stream('hs.scratch');

-- The owner drops its stream, which also drops its consumer group as the
-- extension's owner.
SET ROLE regress_hs_owner;
SET search_path = evil_owner, pg_catalog, public;
SELECT event_log.drop_stream('hs.s');

-- Nothing hostile ran, and nobody became superuser.
RESET ROLE;
RESET search_path;
SELECT what, ran_as FROM regress_hs_ran;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'regress_hs%' ORDER BY rolname;
SELECT stream, shards, events, dropped_by FROM event_log.dropped_streams ORDER BY stream;
SELECT count(*) AS groups_left FROM event_log.consumer_groups;

DROP SCHEMA hs, evil_owner, evil_appender, evil_reader CASCADE;
DROP TABLE regress_hs_ran;
DROP FUNCTION regress_hs_make_traps(text);
DROP ROLE regress_hs_owner, regress_hs_appender, regress_hs_reader;
DROP EXTENSION event_log;
